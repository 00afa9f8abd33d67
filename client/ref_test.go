package client

import (
	"strings"
	"testing"
)

const testDigest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

func TestParseReference(t *testing.T) {
	tests := []struct {
		in   string
		want Reference
		err  string
	}{
		{in: "127.0.0.1:5000/sarai/audio-core:int8", want: Reference{Registry: "127.0.0.1:5000", Repository: "sarai/audio-core", Tag: "int8"}},
		{in: "registry.lan/m", want: Reference{Registry: "registry.lan", Repository: "m"}},
		{in: "localhost:5000/m@" + testDigest, want: Reference{Registry: "localhost:5000", Repository: "m", Digest: testDigest}},
		{in: "localhost:5000/m:v1@" + testDigest, want: Reference{Registry: "localhost:5000", Repository: "m", Tag: "v1", Digest: testDigest}},
		{in: "s3://bucket/prefix/sarai/audio:int8", want: Reference{S3: true, Registry: "bucket", Prefix: "prefix", Repository: "sarai/audio", Tag: "int8"}},
		{in: "s3://bucket/prefix", err: "want s3://"},
		{in: "audio-core:int8", err: "want host"},
		{in: "http://h/m:t", err: "without a URL scheme"},
		{in: "h:5000/UPPER:t", err: "reference"},
		{in: "h/m:t@sha256:abc", err: "digest"},
		{in: "h/m:t x", err: "whitespace"},
		{in: "h/m:" + strings.Repeat("t", 200), err: "reference"},
	}
	for _, tt := range tests {
		got, err := ParseReference(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseReference(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		if again, err := ParseReference(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", got.String(), again, err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for in, want := range map[string]bool{
		"127.0.0.1:5000": true, "localhost": true, "[::1]:80": true, "127.1.2.3": true,
		"registry.lan:5000": false, "10.0.0.1:5000": false, "0.0.0.0:5000": false,
	} {
		if got := IsLoopback(in); got != want {
			t.Errorf("IsLoopback(%q) = %v", in, got)
		}
	}
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"127.0.0.1:5000/a/b:t", "h/m@" + testDigest, "s3://b/p/r:t", "h/m:t@sha256:00", "[::1]:5000/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			return
		}
		again, err := ParseReference(r.String())
		if err != nil || again != r {
			t.Fatalf("%q parsed to %+v, which formats as %q and parses to %+v, %v", s, r, r.String(), again, err)
		}
	})
}
