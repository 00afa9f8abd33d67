// Package model knows what a model on disk is made of and owns the rules
// of pushing and checking one: an ONNX graph goes with every external data
// file its tensors reference; what the quantizer recorded in the model and
// what its benchmark report measured become annotations; a report whose
// gates failed stops the push; the report's reference inputs and outputs
// travel in the artifact so a target machine can check the model (sync
// --check). cmd/modelctl only parses flags into Options and prints.
package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf16"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/modelfile"
	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/bench"
	"github.com/modelctl/modelctl/quantize/onnx"
)

// CheckSuffix names the file that carries a model's reference inputs and
// outputs in its artifact (MODEL.onnx.check.json), for sync --check.
const CheckSuffix = ".check.json"

// MaxBenchReport bounds a bench report: its reference tensors are at most
// bench.MaxReferenceBytes, base64-encoded.
const MaxBenchReport = 2*bench.MaxReferenceBytes + 1<<20

// ErrGatesFailed is a bench report whose quality gates failed: the model
// is not pushed (unless PushOptions.AllowFailedGates).
var ErrGatesFailed = errors.New("quality gates failed")

// PushOptions describe a model push beyond its files.
type PushOptions struct {
	// Tags are extra tags besides the reference's own.
	Tags []string
	// Bench is a `modelctl bench --json` report of this model; its figures
	// become annotations and its reference travels with the model.
	Bench string
	// AllowFailedGates pushes a model whose report failed its gates, and
	// records that in the artifact.
	AllowFailedGates bool
	// Parent is the artifact the model was derived from; its digest is
	// recorded.
	Parent string
	// Docs are documentation files pushed beside the model.
	Docs []string
	// Name defaults to the model's file name without extension.
	Name, Version, Precision string
	// Quantization and QuantParams describe a quantization the model's
	// own metadata does not record (a model quantized by another tool).
	Quantization string
	QuantParams  []string
	// Format is how path is read: auto (from its content: ONNX, GGUF,
	// safetensors, a safetensors index, a directory), one of those, or raw
	// (one file, as it is).
	Format string
}

// Push packs the model at path with everything it needs and pushes it to
// ref: an ONNX graph with every external data file its tensors reference, a
// sharded safetensors set whole from its index, a GGUF file, a directory
// with every regular file (package modelfile says which, from the content).
// Every local file is checked before the network is touched.
func Push(ctx context.Context, c *client.Client, path string, ref client.Reference, opts PushOptions) (*client.PushResult, error) {
	format, err := modelfile.ParseFormat(opts.Format)
	if err != nil {
		return nil, fmt.Errorf("push --format: %w", err)
	}
	m, err := modelfile.Open(ctx, path, modelfile.Options{Format: format})
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", path, err)
	}
	var files []client.PushFile
	for _, f := range m.Files {
		files = append(files, client.PushFile{Path: f.Path, Source: f.Source, MinSize: f.MinSize, MediaType: f.MediaType()})
	}
	for _, doc := range opts.Docs {
		files = append(files, client.PushFile{Path: filepath.Base(doc), Source: doc, MediaType: manifests.MediaTypeDocRaw})
	}

	annotations := m.Annotations()
	md := map[string]string{}
	if m.ONNX != nil {
		if md, err = Metadata(ctx, m.ONNX); err != nil {
			return nil, fmt.Errorf("push %s: %w", path, err)
		}
		for k, v := range md {
			annotations[k] = v
		}
	}
	if opts.Bench != "" {
		if m.ONNX == nil {
			return nil, fmt.Errorf("push --bench: %s is %s; bench measures ONNX models only", path, m.Format)
		}
		check, err := benchAnnotations(opts, path, files, annotations)
		if err != nil {
			return nil, err
		}
		if check != "" {
			defer os.RemoveAll(filepath.Dir(check))
			files = append(files, client.PushFile{Path: filepath.Base(path) + CheckSuffix, Source: check, MediaType: manifests.MediaTypeDatasetRaw})
		}
	}
	quant, precision, err := quantization(md, opts)
	if err != nil {
		return nil, err
	}
	prov := manifests.Provenance{Quantization: quant}
	if opts.Parent != "" {
		pref, err := client.ParseReference(opts.Parent)
		if err != nil {
			return nil, fmt.Errorf("push --parent: %w", err)
		}
		art, err := c.Resolve(ctx, pref)
		if err != nil {
			return nil, fmt.Errorf("push --parent: %w", err)
		}
		prov.ParentRef, prov.ParentDigest = pref.String(), art.Digest.String()
	}
	for k, v := range prov.Annotations() {
		annotations[k] = v
	}
	name := opts.Name
	if name == "" {
		base := filepath.Base(filepath.Clean(path))
		name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	cfg := m.Config()
	return c.Push(ctx, ref, client.PushOptions{
		Files: files,
		Tags:  opts.Tags,
		Pack: manifests.PackOptions{
			Name: name, Version: opts.Version, Precision: precision, Quantization: quant, Annotations: annotations,
			Format: cfg.Format, Architecture: cfg.Architecture, ParamSize: cfg.ParamSize,
		},
	})
}

// quantization is what the config records: the model's own metadata, or
// what the options say for a model quantized by another tool.
func quantization(md map[string]string, opts PushOptions) (*manifests.Quantization, string, error) {
	precision := opts.Precision
	var quant *manifests.Quantization
	if q := manifests.QuantizationAnnotations(md); q["method"] != "" && opts.Quantization == "" && len(opts.QuantParams) == 0 {
		quant = &manifests.Quantization{Method: q["method"], Parameters: map[string]string{}}
		for k, v := range q {
			if k != "method" {
				quant.Parameters[k] = v
			}
		}
		if precision == "" {
			precision = q["precision"]
		}
	}
	if opts.Quantization != "" || len(opts.QuantParams) > 0 {
		quant = &manifests.Quantization{Method: opts.Quantization, Parameters: map[string]string{}}
		for _, kv := range opts.QuantParams {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" || k == "method" {
				return nil, "", fmt.Errorf("push --quant-param %q: want KEY=VALUE", kv)
			}
			quant.Parameters[k] = v
		}
		if quant.Method == "" {
			return nil, "", fmt.Errorf("push: --quant-param needs --quantization METHOD")
		}
	}
	return quant, precision, nil
}

// benchAnnotations reads a bench report, refuses it when its gates failed
// (unless AllowFailedGates) or when it measured other files, adds its
// figures to annotations, and writes its reference, if any, to a
// temporary file whose path it returns.
func benchAnnotations(opts PushOptions, modelPath string, files []client.PushFile, annotations map[string]string) (string, error) {
	b, err := ReadLimited(opts.Bench, MaxBenchReport)
	if err != nil {
		return "", fmt.Errorf("push --bench: %w", err)
	}
	b = DecodeReportText(b)
	var rep bench.Report
	var judged struct {
		Gates *json.RawMessage `json:"gates"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return "", fmt.Errorf("push --bench %s: not a bench --json report: %w", opts.Bench, err)
	}
	if err := json.Unmarshal(b, &judged); err != nil || judged.Gates == nil {
		return "", fmt.Errorf("push --bench %s: the report has no gates: not a bench --json report", opts.Bench)
	}
	for _, f := range files {
		want, ok := rep.Model.Files[f.Path]
		if !ok {
			continue
		}
		if st, err := os.Stat(f.Source); err == nil && st.Size() != want {
			return "", fmt.Errorf("push --bench %s: the report measured a %s of %d bytes, this one has %d: benchmark this model", opts.Bench, f.Path, want, st.Size())
		}
	}
	if _, ok := rep.Model.Files[filepath.Base(modelPath)]; !ok && len(rep.Model.Files) > 0 {
		return "", fmt.Errorf("push --bench %s: the report measured %s, not %s", opts.Bench, rep.Model.Path, modelPath)
	}
	if !rep.Gates.Passed {
		if !opts.AllowFailedGates {
			msg := fmt.Sprintf("push: %s failed its quality gates (%s); nothing was sent. Fix the model, or push it anyway with --allow-failed-gates (recorded in the artifact)",
				opts.Bench, strings.Join(rep.Gates.Failures, "; "))
			if rep.Hint != "" {
				msg += "\n" + rep.Hint
			}
			return "", fmt.Errorf("%w: %s", ErrGatesFailed, msg)
		}
		annotations[manifests.AnnotationGatesOverridden] = "true"
	}
	ba, err := manifests.DecodeBenchReport(b)
	if err != nil {
		return "", fmt.Errorf("push --bench %s: %w", opts.Bench, err)
	}
	for k, v := range ba {
		annotations[k] = v
	}
	if rep.Reference == nil {
		return "", nil
	}
	ref, err := json.Marshal(rep.Reference)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "modelctl-push-")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, filepath.Base(modelPath)+CheckSuffix)
	if err := os.WriteFile(p, ref, 0o644); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return p, nil
}

// Metadata returns what the quantizer wrote into the model (settings, CPU
// requirement). A model quantized elsewhere has none: its int8 weights are
// checked here, and full-range ones make it require VNNI.
func Metadata(ctx context.Context, m *onnx.Model) (map[string]string, error) {
	md := quantize.ReadMetadata(m.Proto)
	if md == nil {
		md = map[string]string{}
	}
	if _, ok := md[manifests.AnnotationQuantizationMethod]; !ok {
		w, err := quantize.ModelVNNIWeights(ctx, m)
		if err != nil {
			return nil, err
		}
		if len(w) > 0 {
			md[manifests.AnnotationRequiresCPU] = manifests.RequireVNNI
		}
	}
	for k, v := range md {
		if !strings.HasPrefix(k, manifests.AnnotationPrefix) || len(v) > manifests.MaxAnnotationValue {
			delete(md, k)
		}
	}
	return md, nil
}

// ReadLimited reads a file of at most limit bytes.
func ReadLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over %d bytes", path, limit)
	}
	return b, nil
}

// DecodeReportText undoes what Windows shells do to a report saved with a
// redirection: PowerShell 5's ">" writes UTF-16 with a byte-order mark, and
// Out-File -Encoding utf8 a UTF-8 one; encoding/json takes neither.
func DecodeReportText(b []byte) []byte {
	switch {
	case bytes.HasPrefix(b, []byte{0xef, 0xbb, 0xbf}):
		return b[3:]
	case len(b)%2 == 0 && (bytes.HasPrefix(b, []byte{0xff, 0xfe}) || bytes.HasPrefix(b, []byte{0xfe, 0xff})):
		u := make([]uint16, 0, len(b)/2-1)
		for i := 2; i+1 < len(b); i += 2 {
			if b[0] == 0xff {
				u = append(u, uint16(b[i])|uint16(b[i+1])<<8)
			} else {
				u = append(u, uint16(b[i])<<8|uint16(b[i+1]))
			}
		}
		return []byte(string(utf16.Decode(u)))
	}
	return b
}
