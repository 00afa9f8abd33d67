package pin

import (
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

const (
	testRef = "127.0.0.1:5000/sarai/audio-core:int8"
	testDig = digest.Digest("sha256:9f2c000000000000000000000000000000000000000000000000000000000001")
)

func TestSetPin(t *testing.T) {
	tests := []struct {
		name, key, in, want string
	}{
		{
			name: "replace in place, comments and blank lines kept",
			key:  "audio_omni",
			in: `# Sarai config
server:
  port: 8080   # http

audio_omni:
  name: "Qwen3-Omni-3B-INT8"
  model_path: "models/onnx/agi_audio_core_int8.onnx"
  artifact: "old.lan:5000/sarai/audio-core:int8"
  artifact_digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"      # written by modelctl pin / sync --update

vision: {model_path: x.onnx}
`,
			want: `# Sarai config
server:
  port: 8080   # http

audio_omni:
  name: "Qwen3-Omni-3B-INT8"
  model_path: "models/onnx/agi_audio_core_int8.onnx"
  artifact: "127.0.0.1:5000/sarai/audio-core:int8"
  artifact_digest: "sha256:9f2c000000000000000000000000000000000000000000000000000000000001"      # written by modelctl pin / sync --update

vision: {model_path: x.onnx}
`,
		},
		{
			name: "added after model_path with the section's quoting and indent",
			key:  "audio_omni",
			in: `audio_omni:
    name: 'Qwen'
    model_path: 'models/a.onnx'  # the graph
    threads: 4
other: 1
`,
			want: `audio_omni:
    name: 'Qwen'
    model_path: 'models/a.onnx'  # the graph
    artifact: '127.0.0.1:5000/sarai/audio-core:int8'
    artifact_digest: 'sha256:9f2c000000000000000000000000000000000000000000000000000000000001'
    threads: 4
other: 1
`,
		},
		{
			name: "plain values stay plain, no final newline",
			key:  "m",
			in:   "m:\n  model_path: a.onnx\n  artifact: x/y:z\n  artifact_digest: sha256:00",
			want: "m:\n  model_path: a.onnx\n  artifact: 127.0.0.1:5000/sarai/audio-core:int8\n  artifact_digest: sha256:9f2c000000000000000000000000000000000000000000000000000000000001",
		},
		{
			name: "empty values filled after the colon, comment kept",
			key:  "m",
			in:   "m:\n  model_path: a.onnx\n  artifact:\n  artifact_digest:   # pin\n",
			want: "m:\n  model_path: a.onnx\n  artifact: 127.0.0.1:5000/sarai/audio-core:int8\n  artifact_digest: sha256:9f2c000000000000000000000000000000000000000000000000000000000001 # pin\n",
		},
		{
			name: "CRLF file keeps CRLF",
			key:  "m",
			in:   "m:\r\n  model_path: \"C:\\\\models\\\\a.onnx\"\r\nz: 1\r\n",
			want: "m:\r\n  model_path: \"C:\\\\models\\\\a.onnx\"\r\n  artifact: \"127.0.0.1:5000/sarai/audio-core:int8\"\r\n  artifact_digest: \"sha256:9f2c000000000000000000000000000000000000000000000000000000000001\"\r\nz: 1\r\n",
		},
		{
			name: "nested section by dotted key, last in file",
			key:  "models.asr",
			in:   "models:\n  asr:\n    model_path: m/asr.onnx\n",
			want: "models:\n  asr:\n    model_path: m/asr.onnx\n    artifact: 127.0.0.1:5000/sarai/audio-core:int8\n    artifact_digest: sha256:9f2c000000000000000000000000000000000000000000000000000000000001\n",
		},
		{
			name: "sequence item section",
			key:  "m",
			in:   "m:\n  model_path: a.onnx\n  tags: [a, b]\n",
			want: "m:\n  model_path: a.onnx\n  artifact: 127.0.0.1:5000/sarai/audio-core:int8\n  artifact_digest: sha256:9f2c000000000000000000000000000000000000000000000000000000000001\n  tags: [a, b]\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.SetPin(tt.key, testRef, testDig); err != nil {
				t.Fatal(err)
			}
			if got := string(c.Bytes()); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			s, err := c.Section(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if s.Artifact != testRef || s.Digest != testDig {
				t.Errorf("section after edit = %+v", s)
			}
			// A second pin of the same values changes nothing.
			before := string(c.Bytes())
			if err := c.SetPin(tt.key, testRef, testDig); err != nil {
				t.Fatal(err)
			}
			if string(c.Bytes()) != before {
				t.Errorf("second pin changed the file:\n%s", c.Bytes())
			}
		})
	}
}

func TestSetPinRefused(t *testing.T) {
	tests := []struct {
		name, key, in, wantErr string
	}{
		{"missing section", "nope", "m:\n  model_path: a\n", `no section "nope"`},
		{"flow section", "m", "m: {model_path: a.onnx}\n", "flow style"},
		{"scalar section", "m", "m: 3\n", "not a mapping"},
		{"block scalar value", "m", "m:\n  model_path: a\n  artifact: |\n    x/y:z\n", "block scalar"},
		{"multi-line quoted value", "m", "m:\n  model_path: a\n  artifact: \"x/y\n    :z\"\n", "several lines"},
		{"anchor shared with another section", "m", "m: &base\n  model_path: a\nn: *base\n", "change more than"},
		{"not a mapping document", "m", "- a\n- b\n", "not a YAML mapping"},
		{"mapping value", "m", "m:\n  model_path: a\n  artifact:\n    x: y\n", "not a plain value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if err == nil {
				before := string(c.Bytes())
				err = c.SetPin(tt.key, testRef, testDig)
				if string(c.Bytes()) != before {
					t.Errorf("a refused edit changed the config:\n%s", c.Bytes())
				}
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestSections(t *testing.T) {
	c, err := Parse([]byte(`server: {port: 1}
audio:
  name: A
  model_path: m/a.onnx
  artifact: h:1/r:t
  artifact_digest: sha256:9f2c000000000000000000000000000000000000000000000000000000000001
models:
  vision:
    model_path: m/v.onnx
    artifact: h:1/v:t
plain:
  model_path: m/p.onnx
`))
	if err != nil {
		t.Fatal(err)
	}
	secs, err := c.Sections()
	if err != nil {
		t.Fatal(err)
	}
	want := []Section{
		{Key: "audio", Name: "A", ModelPath: "m/a.onnx", Artifact: "h:1/r:t", Digest: testDig},
		{Key: "models.vision", ModelPath: "m/v.onnx", Artifact: "h:1/v:t"},
	}
	if len(secs) != len(want) {
		t.Fatalf("sections = %+v", secs)
	}
	for i := range want {
		if secs[i] != want[i] {
			t.Errorf("section %d = %+v, want %+v", i, secs[i], want[i])
		}
	}
	if _, err := Parse([]byte("a:\n  artifact_digest: sha256:zz\n")); err != nil {
		t.Fatal(err)
	}
	bad, _ := Parse([]byte("a:\n  artifact_digest: sha256:zz\n"))
	if _, err := bad.Sections(); err == nil || !strings.Contains(err.Error(), "artifact_digest") {
		t.Errorf("bad digest: err = %v", err)
	}
}
