package modelfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelctl/modelctl/modelfile/gguf"
	"github.com/modelctl/modelctl/modelfile/safetensors"
)

// Detect says which format path holds, from its content: a directory, GGUF
// (magic "GGUF"), safetensors (a plausible header length and '{'), a
// safetensors index (a JSON object with a weight_map), or ONNX (a protobuf
// ModelProto starting with ir_version). A file whose content matches none
// but whose name ends in .onnx is FormatONNX, so that the ONNX parser says
// what is wrong with it. Anything else is an error wrapping
// ErrUnknownFormat that names the formats understood and --format raw.
func Detect(path string) (Format, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("detect model format: %w", err)
	}
	if st.IsDir() {
		return FormatDirectory, nil
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("detect model format: %s is not a regular file or a directory (%s)", path, st.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("detect model format: %w", err)
	}
	defer f.Close()
	format, err := sniff(f, st.Size())
	if err != nil {
		return "", fmt.Errorf("detect model format of %s: %w", path, err)
	}
	if format == "" && strings.EqualFold(filepath.Ext(path), ".onnx") {
		format = FormatONNX
	}
	if format == "" {
		return "", fmt.Errorf("%s: %w: modelctl reads %s; to push it as a plain file, give --format raw", path, ErrUnknownFormat, Understood)
	}
	return format, nil
}

// sniff reads the first bytes of a file; "" means no format matched.
func sniff(r io.ReaderAt, size int64) (Format, error) {
	var buf [32]byte
	n, err := r.ReadAt(buf[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	head := buf[:n]
	switch {
	case len(head) >= 4 && string(head[:4]) == gguf.Magic:
		return FormatGGUF, nil
	case safetensors.Sniff(head, size):
		return FormatSafetensors, nil
	case safetensors.SniffIndex(head) && size <= safetensors.MaxIndex:
		if _, err := safetensors.ParseIndex(io.NewSectionReader(r, 0, size)); err == nil {
			return FormatSafetensorsIndex, nil
		}
	case sniffONNX(head):
		return FormatONNX, nil
	}
	return "", nil
}

// sniffONNX recognises the start every ONNX writer produces: field 1
// (ir_version, a small varint) followed by another ModelProto field.
func sniffONNX(head []byte) bool {
	if len(head) < 3 || head[0] != 0x08 || head[1] == 0 || head[1] > 0x7f {
		return false
	}
	switch head[2] {
	case 0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72: // fields 2-8 and 14
		return true
	case 0xa2, 0xca: // fields 20 and 25 (two-byte tags)
		return len(head) > 3 && head[3] == 0x01
	}
	return false
}

// RequireONNX refuses, naming what path is, a model that is not ONNX: for
// the commands that work on ONNX graphs only (quantize, bench). A file
// whose content is no format modelctl knows is left to the ONNX reader,
// whose error says where the graph is broken.
func RequireONNX(what, path string) error {
	f, err := Detect(path)
	if err != nil || f == FormatONNX {
		return nil
	}
	return fmt.Errorf("%s: %s is a %s model; %s works on ONNX models only (push, pull, sync and verify take every format)", what, path, f, what)
}
