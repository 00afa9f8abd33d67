package manifests

import (
	"errors"
	"path"
	"strings"
	"testing"
)

// FuzzParseManifest checks that no input panics and that whatever is
// accepted only names files strictly inside the install directory.
func FuzzParseManifest(f *testing.F) {
	a, err := Pack(sampleFiles(), PackOptions{Name: "seed"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(a.Manifest)
	f.Add([]byte(`{"schemaVersion":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		for _, file := range m.Files {
			assertInside(t, file.Path)
		}
		_, _ = ParseConfig(data, &m.Manifest)
	})
}

// FuzzValidatePath checks that every accepted path stays inside the target.
func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{"model.onnx", "a/b/c", "../x", "/abs", `a\b`, "C:x", "a/./b", ".modelctl/x", "nul"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidatePath(p) == nil {
			assertInside(t, p)
		}
	})
}

func assertInside(t *testing.T, p string) {
	t.Helper()
	joined := path.Join("/target", p)
	if !strings.HasPrefix(joined, "/target/") || joined == "/target/" {
		t.Fatalf("accepted path %q resolves to %q", p, joined)
	}
	if strings.ContainsAny(p, "\\:\x00") || path.IsAbs(p) {
		t.Fatalf("accepted path %q has a separator trick", p)
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." || e == "." || e == "" {
			t.Fatalf("accepted path %q has element %q", p, e)
		}
	}
}
