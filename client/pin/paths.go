package pin

import (
	"fmt"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/modelctl/modelctl/manifests"
)

// LocalPath turns a config's model_path into a path of this system. One
// config may serve Windows and Linux hosts, so '\' and '/' both separate
// directories everywhere; a drive letter (C:\models\x.onnx) or a UNC share
// (\\server\share\x.onnx) is accepted on Windows and refused elsewhere,
// where it cannot name anything. Relative paths stay relative: they are
// relative to the working directory, as the application reads them.
func LocalPath(p string) (string, error) {
	vol, rest, err := splitModelPath(runtime.GOOS, p)
	if err != nil {
		return "", err
	}
	return filepath.FromSlash(vol + rest), nil
}

// splitModelPath parses p with the rules of goos into a volume (a drive
// "C:" or a share "//server/share", Windows only) and a cleaned,
// slash-separated rest. It is pure so that both systems' rules are tested
// on either.
func splitModelPath(goos, p string) (vol, rest string, err error) {
	if strings.TrimSpace(p) == "" {
		return "", "", fmt.Errorf("model_path is empty")
	}
	if strings.ContainsFunc(p, isControl) {
		return "", "", fmt.Errorf("model_path %q contains control characters", p)
	}
	s := strings.ReplaceAll(p, `\`, "/")
	switch {
	case len(s) >= 2 && s[1] == ':' && isLetter(s[0]):
		if goos != "windows" {
			return "", "", fmt.Errorf("model_path %q is a Windows drive path: on %s use a relative or /absolute path", p, goos)
		}
		vol, s = strings.ToUpper(s[:1])+":", s[2:]
		if !strings.HasPrefix(s, "/") {
			return "", "", fmt.Errorf("model_path %q is relative to the current directory of drive %s: write %s\\%s", p, vol, vol, strings.ReplaceAll(s, "/", `\`))
		}
	case strings.HasPrefix(s, "//") && goos == "windows":
		parts := strings.SplitN(strings.TrimPrefix(s, "//"), "/", 3)
		if len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return "", "", fmt.Errorf("model_path %q: want \\\\server\\share\\path", p)
		}
		vol, s = "//"+parts[0]+"/"+parts[1], "/"+parts[2]
	}
	rest = path.Clean(s)
	if rest == "." || rest == "/" || strings.HasSuffix(s, "/") {
		return "", "", fmt.Errorf("model_path %q names a directory, not the model file", p)
	}
	return vol, rest, nil
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

// installRoot finds the file of the artifact that model_path names and
// returns the directory the artifact installs into: model_path less that
// file's path in the artifact. An artifact holding onnx/model.onnx pinned
// at models/onnx/model.onnx installs into models. The longest match wins.
func installRoot(goos, modelPath string, files []manifests.File) (root string, file manifests.File, err error) {
	vol, rest, err := splitModelPath(goos, modelPath)
	if err != nil {
		return "", manifests.File{}, err
	}
	eq := func(a, b string) bool { return a == b }
	if goos == "windows" || goos == "darwin" {
		eq = strings.EqualFold // case-insensitive filesystems by default
	}
	best := -1
	for i, f := range files {
		if len(f.Path) > len(rest) {
			continue
		}
		tail := rest[len(rest)-len(f.Path):]
		head := rest[:len(rest)-len(f.Path)]
		if !eq(tail, f.Path) || (head != "" && !strings.HasSuffix(head, "/")) {
			continue
		}
		if best < 0 || len(f.Path) > len(files[best].Path) {
			best = i
		}
	}
	if best < 0 {
		var names []string
		for _, f := range files {
			names = append(names, f.Path)
		}
		return "", manifests.File{}, fmt.Errorf("model_path %q names no file of the artifact (it holds %s): make model_path end with one of them", modelPath, strings.Join(names, ", "))
	}
	head := strings.TrimSuffix(rest[:len(rest)-len(files[best].Path)], "/")
	switch {
	case head == "" && strings.HasPrefix(rest, "/"):
		head = "/"
	case head == "":
		head = "."
	}
	return vol + head, files[best], nil
}
