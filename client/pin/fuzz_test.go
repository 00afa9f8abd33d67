package pin

import (
	"strings"
	"testing"
)

// FuzzSetPin feeds arbitrary config text and section keys to SetPin. An
// edit must either be refused with the config unchanged, or leave a file
// that parses, holds the new pin in the section, decodes to the original
// with only the pin changed (checked again here), and differs from the
// original by at most the two pin lines, changed or added.
func FuzzSetPin(f *testing.F) {
	f.Add([]byte("audio_omni:\n  name: \"Qwen\"\n  model_path: \"models/a.onnx\"\n  artifact: \"h:5000/r:t\"\n  artifact_digest: \"sha256:00\"   # pin\n"), "audio_omni")
	f.Add([]byte("m:\n  model_path: a.onnx\n"), "m")
	f.Add([]byte("models:\n  asr:\n    model_path: m/asr.onnx\n    artifact:\n"), "models.asr")
	f.Add([]byte("m:\r\n  model_path: 'C:\\m\\a.onnx'\r\n"), "m")
	f.Add([]byte("m: {model_path: a}\n"), "m")
	f.Add([]byte("- m:\n    model_path: a\n"), "m")
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		before := string(c.Bytes())
		if err := c.SetPin(key, testRef, testDig); err != nil {
			if string(c.Bytes()) != before {
				t.Fatalf("refused edit changed the config")
			}
			return
		}
		after := c.Bytes()
		if _, err := Parse(after); err != nil {
			t.Fatalf("edited config does not parse: %v\n%s", err, after)
		}
		s, err := c.Section(key)
		if err != nil {
			t.Fatalf("section gone after edit: %v", err)
		}
		if s.Artifact != testRef || s.Digest != testDig {
			t.Fatalf("section after edit = %+v", s)
		}
		if err := checkEdit([]byte(before), after, key, map[string]string{KeyArtifact: testRef, KeyDigest: testDig.String()}); err != nil {
			t.Fatalf("edit changed more than the pin: %v\nbefore:\n%s\nafter:\n%s", err, before, after)
		}
		oldLines, newLines := strings.Split(before, "\n"), strings.Split(string(after), "\n")
		if d := len(newLines) - len(oldLines); d < 0 || d > 2 {
			t.Fatalf("edit changed the line count by %d", d)
		}
		// Every old line but at most two survives, in order.
		j, missing := 0, 0
		for _, l := range oldLines {
			for j < len(newLines) && newLines[j] != l {
				j++
			}
			if j == len(newLines) {
				missing++
				j = 0
				continue
			}
			j++
		}
		if missing > 2 {
			t.Fatalf("edit rewrote %d lines:\nbefore:\n%s\nafter:\n%s", missing, before, after)
		}
	})
}
