package pin

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/manifests"
)

func TestSplitModelPath(t *testing.T) {
	tests := []struct {
		goos, in  string
		vol, rest string
		wantErr   string
	}{
		{"linux", "models/onnx/a.onnx", "", "models/onnx/a.onnx", ""},
		{"linux", `models\onnx\a.onnx`, "", "models/onnx/a.onnx", ""},
		{"linux", "./models//onnx/../onnx/a.onnx", "", "models/onnx/a.onnx", ""},
		{"linux", "/srv/models/a.onnx", "", "/srv/models/a.onnx", ""},
		{"linux", `C:\models\a.onnx`, "", "", "Windows drive path"},
		{"linux", "models/", "", "", "names a directory"},
		{"linux", "", "", "", "empty"},
		{"linux", "a\x00b", "", "", "control characters"},
		{"windows", `C:\models\onnx\a.onnx`, "C:", "/models/onnx/a.onnx", ""},
		{"windows", `c:/models/a.onnx`, "C:", "/models/a.onnx", ""},
		{"windows", `C:models\a.onnx`, "", "", "relative to the current directory of drive C:"},
		{"windows", `\\server\share\models\a.onnx`, "//server/share", "/models/a.onnx", ""},
		{"windows", `\\server\share`, "", "", "want \\\\server\\share\\path"},
		{"windows", `models\onnx\a.onnx`, "", "models/onnx/a.onnx", ""},
		{"windows", `\models\a.onnx`, "", "/models/a.onnx", ""},
		{"darwin", "models/a.onnx", "", "models/a.onnx", ""},
	}
	for _, tt := range tests {
		t.Run(tt.goos+" "+tt.in, func(t *testing.T) {
			vol, rest, err := splitModelPath(tt.goos, tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if vol != tt.vol || rest != tt.rest {
				t.Errorf("= %q %q, want %q %q", vol, rest, tt.vol, tt.rest)
			}
		})
	}
}

// TestLocalPath checks the filepath form on the system the test runs on.
func TestLocalPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"models/onnx/a.onnx", filepath.Join("models", "onnx", "a.onnx")},
		{`models\onnx\a.onnx`, filepath.Join("models", "onnx", "a.onnx")},
	}
	if runtime.GOOS == "windows" {
		tests = append(tests, struct{ in, want string }{`C:\m\a.onnx`, `C:\m\a.onnx`}, struct{ in, want string }{"c:/m/a.onnx", `C:\m\a.onnx`})
	} else {
		tests = append(tests, struct{ in, want string }{"/srv/m/a.onnx", "/srv/m/a.onnx"})
	}
	for _, tt := range tests {
		got, err := LocalPath(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("LocalPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestInstallRoot(t *testing.T) {
	files := []manifests.File{{Path: "a_int8.onnx"}, {Path: "a_int8.onnx.data"}, {Path: "onnx/b.onnx"}}
	tests := []struct {
		goos, modelPath, root, file, wantErr string
	}{
		{"linux", "models/onnx/a_int8.onnx", "models/onnx", "a_int8.onnx", ""},
		{"linux", "a_int8.onnx", ".", "a_int8.onnx", ""},
		{"linux", "/srv/a_int8.onnx", "/srv", "a_int8.onnx", ""},
		{"linux", `models\onnx\a_int8.onnx`, "models/onnx", "a_int8.onnx", ""},
		{"linux", "models/onnx/b.onnx", "models", "onnx/b.onnx", ""},
		{"linux", "models/xa_int8.onnx", "", "", "names no file of the artifact"},
		{"linux", "models/A_INT8.onnx", "", "", "names no file"},
		{"windows", `C:\models\A_INT8.onnx`, "C:/models", "a_int8.onnx", ""},
		{"windows", `D:\a_int8.onnx`, "D:/", "a_int8.onnx", ""},
		{"windows", `\\srv\share\m\onnx\b.onnx`, "//srv/share/m", "onnx/b.onnx", ""},
	}
	for _, tt := range tests {
		t.Run(tt.goos+" "+tt.modelPath, func(t *testing.T) {
			root, f, err := installRoot(tt.goos, tt.modelPath, files)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if root != tt.root || f.Path != tt.file {
				t.Errorf("= %q %q, want %q %q", root, f.Path, tt.root, tt.file)
			}
		})
	}
}
