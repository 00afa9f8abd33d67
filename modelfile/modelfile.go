// Package modelfile is the format layer between a path on disk and an
// artifact: it recognises what a path holds from its content, checks it, and
// says which files make up the model, what kind each one is, and what facts
// its headers state.
//
//	m, err := modelfile.Open(ctx, "models/llm/solar.gguf", modelfile.Options{})
//	// m.Format == FormatGGUF; m.Files == [{Path: "solar.gguf", Kind: KindWeight, ...}]
//	// m.Annotations()[manifests.AnnotationGGUFFileType] == "Q4_K_M"
//
// Formats (Detect reads content, never trusts the name):
//
//   - ONNX: a protobuf ModelProto. Open delegates to quantize/onnx (pure
//     Go, no cgo): the graph plus every external data file its tensors
//     reference, each with the size the graph needs (File.MinSize).
//   - GGUF (versions 2 and 3): one file, or a gguf-split set opened from
//     any of its splits (PREFIX-0000i-of-0000n.gguf); the header, metadata
//     and tensor table of each are checked by package gguf.
//   - safetensors: one file, or a sharded set. A set is opened from its
//     index (model.safetensors.index.json) or from any of its shards (the
//     index next to it that maps the shard is found): every shard the index
//     names must exist and hold the tensors the index maps to it.
//   - a directory: every regular file under it, relative paths kept, with
//     a kind per file (weight, weight.config, doc, code). Model files inside
//     (GGUF, safetensors and their indexes, ONNX) are checked as above.
//     Symbolic links are followed only to regular files inside the
//     directory; .git, .modelctl and .cache/huggingface are skipped.
//   - raw (only when asked for, Options.Format = FormatRaw): one regular
//     file, unchecked.
//
// Every path in Model.Files passes manifests.ValidatePath, and the set
// passes manifests.CheckPathSet, so what Open accepts can be packed and
// installed on Linux and Windows alike. Headers are untrusted: the parsers
// bound memory by fixed limits, never by a count or length read from a file.
package modelfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/modelfile/gguf"
	"github.com/modelctl/modelctl/modelfile/safetensors"
	"github.com/modelctl/modelctl/quantize/onnx"
)

// Format is a model format.
type Format string

// Formats. FormatSafetensorsIndex is what Detect says of an index file;
// the Model opened from it is FormatSafetensors.
const (
	FormatAuto             Format = ""
	FormatRaw              Format = "raw"
	FormatONNX             Format = "onnx"
	FormatGGUF             Format = "gguf"
	FormatSafetensors      Format = "safetensors"
	FormatSafetensorsIndex Format = "safetensors-index"
	FormatDirectory        Format = "directory"
)

// Understood lists the formats Detect recognises, for messages and help.
const Understood = "ONNX, GGUF, safetensors (a file, a shard, or a model.safetensors.index.json), or a directory"

// ParseFormat parses a --format value: auto (or empty), raw, onnx, gguf,
// safetensors or directory.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "", "auto":
		return FormatAuto, nil
	case FormatRaw, FormatONNX, FormatGGUF, FormatSafetensors, FormatDirectory:
		return f, nil
	}
	return "", fmt.Errorf("format %q: want auto, raw, onnx, gguf, safetensors or directory", s)
}

// ErrUnknownFormat is wrapped by the error of Detect and Open for a file
// whose content is none of the formats understood.
var ErrUnknownFormat = errors.New("not a model format modelctl understands")

// Options control Open.
type Options struct {
	// Format is the format to read the path as. FormatAuto detects it from
	// content; FormatRaw takes one regular file as it is, unchecked.
	Format Format
}

// File is one file of a model.
type File struct {
	// Path is relative to Model.Root, slash-separated and clean; it passes
	// manifests.ValidatePath.
	Path string
	// Source is the file on disk.
	Source string
	Kind   Kind
	// Size is the file's size when Open read it.
	Size int64
	// MinSize is the least size the model needs of this file (ONNX
	// external data); a shorter file is broken.
	MinSize int64
}

// MediaType is the ModelPack layer media type of the file.
func (f File) MediaType() string { return f.Kind.MediaType() }

// Model is a model on disk, checked.
type Model struct {
	// Format is what the path holds: FormatONNX, FormatGGUF,
	// FormatSafetensors (a file or a sharded set), FormatDirectory or
	// FormatRaw.
	Format Format
	// Path is the absolute path that was opened.
	Path string
	// Root is the directory Files are relative to: the directory itself,
	// or the directory of the file.
	Root string
	// Entry is the relative path of the file an application's model_path
	// points at: the file Path names, except that a sharded safetensors
	// set's entry is its index also when a shard was named; "" for a
	// directory.
	Entry string
	// Files are every file of the model, sorted by Path.
	Files []File
	// Facts are what the headers state, as manifest annotations.
	Facts []Fact
	// WeightsFormat is the format of the main weights: Format itself for a
	// file, the largest model inside for a directory ("" if none).
	WeightsFormat Format

	// ONNX is the parsed graph of an ONNX model, so that a caller needs not
	// parse it again.
	ONNX *onnx.Model
	// GGUF is the parsed header of a GGUF model.
	GGUF *gguf.File
	// Safetensors are the parsed headers of a safetensors file or of every
	// shard, by File path.
	Safetensors map[string]*safetensors.File
}

// Fact is one fact about a model: a manifest annotation key and its value.
type Fact struct {
	Key   string
	Value string
}

// Annotations returns the facts as manifest annotations.
func (m *Model) Annotations() map[string]string {
	out := make(map[string]string, len(m.Facts))
	for _, f := range m.Facts {
		out[f.Key] = f.Value
	}
	return out
}

// Config returns the ModelPack config fields the model's headers state:
// format, architecture and parameter size.
func (m *Model) Config() manifests.ModelConfig {
	a := m.Annotations()
	c := manifests.ModelConfig{Format: string(m.WeightsFormat), Architecture: a[manifests.AnnotationArchitecture]}
	if p := a[manifests.AnnotationParameters]; p != "" {
		c.ParamSize = humanCount(p)
	}
	return c
}

// Open checks the model at path and lists its files and facts.
func Open(ctx context.Context, path string, opts Options) (*Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open model %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open model %s: %w", path, err)
	}
	format := opts.Format
	if format == FormatAuto {
		if format, err = Detect(abs); err != nil {
			return nil, err
		}
	}
	if format != FormatDirectory {
		if _, err := statRegular(abs); err != nil {
			return nil, fmt.Errorf("open %s model: %w", format, err)
		}
	}
	var m *Model
	switch format {
	case FormatRaw:
		m, err = openRaw(abs)
	case FormatONNX:
		m, err = openONNX(abs)
	case FormatGGUF:
		m, err = openGGUF(abs)
	case FormatSafetensors, FormatSafetensorsIndex:
		m, err = openSafetensors(abs)
	case FormatDirectory:
		m, err = openDirectory(ctx, abs)
	default:
		return nil, fmt.Errorf("open model %s: unknown format %q", path, format)
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	if err := m.checkPaths(); err != nil {
		return nil, err
	}
	m.Facts = append([]Fact{{manifests.AnnotationFormat, string(m.Format)}}, m.Facts...)
	m.Facts = append(m.Facts, Fact{manifests.AnnotationFiles, fmt.Sprint(len(m.Files))})
	if m.Entry != "" {
		m.Facts = append(m.Facts, Fact{manifests.AnnotationEntry, m.Entry})
	}
	if m.Format == FormatDirectory && m.WeightsFormat != "" {
		m.Facts = append(m.Facts, Fact{manifests.AnnotationWeightsFormat, string(m.WeightsFormat)})
	}
	for i := range m.Facts {
		m.Facts[i].Value = cleanValue(m.Facts[i].Value)
	}
	return m, nil
}

// checkPaths refuses a file list that could not be installed everywhere.
func (m *Model) checkPaths() error {
	if len(m.Files) == 0 {
		return fmt.Errorf("open model %s: no files", m.Path)
	}
	if len(m.Files) > maxFiles {
		return fmt.Errorf("open model %s: %d files, more than the %d one artifact holds", m.Path, len(m.Files), maxFiles)
	}
	set := make([]manifests.File, len(m.Files))
	for i, f := range m.Files {
		if err := manifests.ValidatePath(f.Path); err != nil {
			return fmt.Errorf("open model %s: file %s: %w", m.Path, f.Path, err)
		}
		set[i] = manifests.File{Path: f.Path}
	}
	if err := manifests.CheckPathSet(set); err != nil {
		return fmt.Errorf("open model %s: %w", m.Path, err)
	}
	return nil
}

// maxFiles leaves room under manifests.MaxLayers for what push adds beside
// the model (documentation, a bench reference).
const maxFiles = manifests.MaxLayers - 100

// cleanValue keeps a header string printable and within an annotation:
// control characters (terminal escapes from a hostile header) become U+FFFD.
func cleanValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) > manifests.MaxAnnotationValue {
		s = strings.ToValidUTF8(s[:manifests.MaxAnnotationValue-3], "") + "..."
	}
	return s
}

// openRegular opens a regular file (following links), checking the type
// first: opening a FIFO for reading would block until a writer comes.
func openRegular(path string) (*os.File, os.FileInfo, error) {
	if _, err := statRegular(path); err != nil {
		return nil, nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

func statRegular(path string) (os.FileInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	return st, nil
}

func openRaw(path string) (*Model, error) {
	st, err := statRegular(path)
	if err != nil {
		return nil, fmt.Errorf("open raw model: %w", err)
	}
	base := filepath.Base(path)
	return &Model{
		Format: FormatRaw, Path: path, Root: filepath.Dir(path), Entry: base,
		Files: []File{{Path: base, Source: path, Kind: KindOf(base), Size: st.Size()}},
	}, nil
}

// InstallDir is the directory an artifact's files are installed into when
// an application's model_path names modelPath: the directory itself for a
// directory artifact, the file's directory for any other (so the files
// around the named one, external data or shards, land beside it).
// annotations are the artifact's manifest annotations; an artifact pushed
// before formats were recorded is a file (ONNX).
func InstallDir(modelPath string, annotations map[string]string) string {
	if annotations[manifests.AnnotationFormat] == string(FormatDirectory) {
		return filepath.Clean(modelPath)
	}
	return filepath.Dir(modelPath)
}
