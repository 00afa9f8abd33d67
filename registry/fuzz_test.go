package registry

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

// FuzzParseContentRange: no input panics, and an accepted range is
// non-negative and ordered.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"0-99", "bytes 0-99/100", "bytes=5-5", "100-99", "-1-2", "9223372036854775807-9223372036854775807", "a-b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, err := parseContentRange(s)
		if err != nil {
			if !errors.Is(err, errBadRange) {
				t.Fatalf("parseContentRange(%q): error %v is not errBadRange", s, err)
			}
			return
		}
		if start < 0 || end < start {
			t.Fatalf("parseContentRange(%q) = %d-%d: not an ordered non-negative range", s, start, end)
		}
	})
}

// FuzzParseRange: an honoured, satisfiable range lies inside the blob and
// is not empty, whatever the header and size.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=-10", "bytes=10-", "bytes=0-0,5-6", "bytes=-0", "bytes=5-1", "items=0-1", "bytes=-9223372036854775808", "bytes=9223372036854775806-9223372036854775807"} {
		f.Add(s, int64(100))
	}
	f.Add("bytes=0-", int64(0))
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			return // sizes come from the store, never negative
		}
		off, n, ok, satisfiable := parseRange(h, size)
		if !ok || !satisfiable {
			if off != 0 || n != 0 {
				t.Fatalf("parseRange(%q, %d) refused but returned %d+%d", h, size, off, n)
			}
			return
		}
		if off < 0 || n <= 0 || off > size-n {
			t.Fatalf("parseRange(%q, %d) = offset %d length %d: outside the blob", h, size, off, n)
		}
	})
}

// FuzzPutManifest pushes arbitrary bytes as a manifest through the store:
// nothing panics, refusals are typed, and what is accepted reads back
// byte-identical under the digest of its bytes.
func FuzzPutManifest(f *testing.F) {
	ctx := context.Background()
	drv, err := filesystem.New(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	store := storage.NewStore(drv)
	cfg := []byte("{}")
	cfgDigest := digest.SHA256.FromBytes(cfg)
	if _, err := store.PutBlob(ctx, "fuzz/repo", cfgDigest, bytes.NewReader(cfg)); err != nil {
		f.Fatal(err)
	}
	valid := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + cfgDigest.String() + `","size":2},"layers":[]}`
	f.Add("application/vnd.oci.image.manifest.v1+json", []byte(valid))
	f.Add("", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	f.Add("application/vnd.oci.image.manifest.v1+json", []byte(`{"config":{"digest":"sha256:../../etc","size":1},"subject":{"digest":"sha256:`+string(bytes.Repeat([]byte("a"), 64))+`"}}`))
	f.Add("application/json", []byte(`{"mediaType":"x","subject":{"digest":"sha512:..%2f","size":-1}}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		info, err := store.PutManifest(ctx, storage.PutManifestRequest{Name: "fuzz/repo", Reference: "t", ContentType: contentType, Body: body, User: "fuzz"})
		if err != nil {
			if !errors.Is(err, storage.ErrManifestInvalid) && !errors.Is(err, storage.ErrManifestBlob) && !errors.Is(err, storage.ErrManifestTooLarge) {
				t.Fatalf("PutManifest: untyped refusal %v", err)
			}
			return
		}
		if want := digest.SHA256.FromBytes(body); info.Digest != want {
			t.Fatalf("stored as %s, bytes hash to %s", info.Digest, want)
		}
		_, got, err := store.GetManifest(ctx, "fuzz/repo", info.Digest.String())
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, body))
		}
	})
}

// TestParseRangeFuzzFindings pins what fuzzing found: a suffix range of an
// empty blob was answered 206 with "Content-Range: bytes 0--1/0".
func TestParseRangeFuzzFindings(t *testing.T) {
	for _, tc := range []struct {
		h               string
		size, off, n    int64
		ok, satisfiable bool
	}{
		{"bytes=-1", 0, 0, 0, true, false},
		{"bytes=-5", 3, 0, 3, true, true},
		{"bytes=-0", 10, 0, 0, true, false},
	} {
		off, n, ok, sat := parseRange(tc.h, tc.size)
		if off != tc.off || n != tc.n || ok != tc.ok || sat != tc.satisfiable {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v, %v; want %d, %d, %v, %v", tc.h, tc.size, off, n, ok, sat, tc.off, tc.n, tc.ok, tc.satisfiable)
		}
	}
}
