package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf16"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/quantize"
	"github.com/modelctl/modelctl/quantize/bench"
	"github.com/modelctl/modelctl/quantize/onnx"
)

func init() { register(newPushCmd) }

type pushFlags struct {
	clientFlags
	tags         []string
	bench        string
	parent       string
	name         string
	version      string
	precision    string
	quantization string
	quantParams  []string
	docs         []string
	allowFailed  bool
}

func newPushCmd() *cobra.Command {
	var pf pushFlags
	cmd := &cobra.Command{
		Use:   "push MODEL.onnx REF",
		Short: "Pack an ONNX model with its external data and push it to a registry",
		Long: `Push MODEL.onnx and every external data file its tensors reference as a
ModelPack artifact to REF (host[:port]/repo:tag). A missing or short data file is
an error before any byte is sent. Unchanged files are not re-hashed (a digest
cache keyed by path, size, mtime and inode) nor re-sent (HEAD/mount); an
interrupted push continues from the registry's committed offset.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPush(cmd, &pf, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&pf.tags, "tag", "t", nil, "additional tag (repeatable)")
	f.StringVar(&pf.bench, "bench", "", "benchmark report (modelctl bench --json) to record as annotations; a report whose gates failed is refused")
	f.BoolVar(&pf.allowFailed, "allow-failed-gates", false, "push a model whose --bench report failed its gates, and record that")
	f.StringVar(&pf.parent, "parent", "", "artifact this model was derived from (its digest is recorded)")
	f.StringVar(&pf.name, "name", "", "model name in the config (default: the model file name)")
	f.StringVar(&pf.version, "model-version", "", "model version in the config")
	f.StringVar(&pf.precision, "precision", "", "precision in the config (fp32, fp16, int8, int4, mixed)")
	f.StringVar(&pf.quantization, "quantization", "", "quantization method (e.g. dynamic)")
	f.StringSliceVar(&pf.quantParams, "quant-param", nil, "quantization parameter KEY=VALUE (repeatable)")
	f.StringSliceVar(&pf.docs, "doc", nil, "documentation file to include next to the model (repeatable)")
	pf.clientFlags.register(f)
	return cmd
}

func runPush(cmd *cobra.Command, pf *pushFlags, modelPath, refArg string) error {
	ref, err := client.ParseReference(refArg)
	if err != nil {
		return err
	}
	// Everything local is checked before the network is touched.
	model, err := onnx.Open(modelPath)
	if err != nil {
		return fmt.Errorf("push %s: %w", modelPath, err)
	}
	data, err := model.DataFiles()
	if err != nil {
		return fmt.Errorf("push %s: %w", modelPath, err)
	}
	dir := filepath.Dir(modelPath)
	base := filepath.Base(modelPath)
	files := []client.PushFile{{Path: base, Source: modelPath, MediaType: manifests.MediaTypeWeightRaw}}
	for _, d := range data {
		files = append(files, client.PushFile{Path: d.Path, Source: filepath.Join(dir, filepath.FromSlash(d.Path)), MinSize: d.MinSize, MediaType: manifests.MediaTypeWeightRaw})
	}
	for _, doc := range pf.docs {
		files = append(files, client.PushFile{Path: filepath.Base(doc), Source: doc, MediaType: manifests.MediaTypeDocRaw})
	}

	annotations := map[string]string{}
	// What the quantizer recorded in the model: settings and CPU needs.
	md, err := modelMetadata(cmd, model)
	if err != nil {
		return fmt.Errorf("push %s: %w", modelPath, err)
	}
	for k, v := range md {
		annotations[k] = v
	}
	if pf.bench != "" {
		check, err := benchAnnotations(pf, modelPath, files, annotations)
		if err != nil {
			return err
		}
		if check != "" {
			defer os.RemoveAll(filepath.Dir(check))
			files = append(files, client.PushFile{Path: base + checkSuffix, Source: check, MediaType: manifests.MediaTypeDatasetRaw})
		}
	}
	var quant *manifests.Quantization
	if q := manifests.QuantizationAnnotations(md); q["method"] != "" && pf.quantization == "" && len(pf.quantParams) == 0 {
		quant = &manifests.Quantization{Method: q["method"], Parameters: map[string]string{}}
		for k, v := range q {
			if k != "method" {
				quant.Parameters[k] = v
			}
		}
		if pf.precision == "" {
			pf.precision = q["precision"]
		}
	}
	if pf.quantization != "" || len(pf.quantParams) > 0 {
		quant = &manifests.Quantization{Method: pf.quantization, Parameters: map[string]string{}}
		for _, kv := range pf.quantParams {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" || k == "method" {
				return fmt.Errorf("push --quant-param %q: want KEY=VALUE", kv)
			}
			quant.Parameters[k] = v
		}
		if quant.Method == "" {
			return fmt.Errorf("push: --quant-param needs --quantization METHOD")
		}
	}

	c, err := pf.client(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	prov := manifests.Provenance{Quantization: quant}
	if pf.parent != "" {
		pref, err := client.ParseReference(pf.parent)
		if err != nil {
			return fmt.Errorf("push --parent: %w", err)
		}
		art, err := c.Resolve(cmd.Context(), pref)
		if err != nil {
			return fmt.Errorf("push --parent: %w", err)
		}
		prov.ParentRef, prov.ParentDigest = pref.String(), art.Digest.String()
	}
	for k, v := range prov.Annotations() {
		annotations[k] = v
	}
	name := pf.name
	if name == "" {
		name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	res, err := c.Push(cmd.Context(), ref, client.PushOptions{
		Files: files,
		Tags:  pf.tags,
		Pack: manifests.PackOptions{
			Name: name, Version: pf.version, Precision: pf.precision, Quantization: quant, Annotations: annotations,
		},
	})
	if err != nil {
		return err
	}
	if pf.json {
		return xferPrintJSON(cmd.OutOrStdout(), res)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "pushed %s/%s@%s (tags %s): %d files, %s, sent %s\n", ref.Registry, ref.Repository, res.Digest,
		strings.Join(res.Tags, ","), len(res.Files), xferMiB(res.Size), xferMiB(res.Transferred))
	for _, f := range res.Files {
		fmt.Fprintf(out, "  %-9s %s  %s\n", f.Status, f.Digest.Encoded()[:12], f.Path)
	}
	return nil
}

// checkSuffix names the file that carries a model's reference inputs and
// outputs in its artifact (MODEL.onnx.check.json), for sync --check.
const checkSuffix = ".check.json"

// maxBenchReport bounds a --bench report: its reference tensors are at
// most bench.MaxReferenceBytes, base64-encoded.
const maxBenchReport = 2*bench.MaxReferenceBytes + 1<<20

// benchAnnotations reads a bench report, refuses it when its gates failed
// (unless --allow-failed-gates) or when it measured other files, adds its
// figures to annotations, and writes its reference, if any, to a
// temporary file whose path it returns.
func benchAnnotations(pf *pushFlags, modelPath string, files []client.PushFile, annotations map[string]string) (string, error) {
	b, err := xferReadLimited(pf.bench, maxBenchReport)
	if err != nil {
		return "", fmt.Errorf("push --bench: %w", err)
	}
	b = decodeReportText(b)
	var rep bench.Report
	var judged struct {
		Gates *json.RawMessage `json:"gates"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return "", fmt.Errorf("push --bench %s: not a bench --json report: %w", pf.bench, err)
	}
	if err := json.Unmarshal(b, &judged); err != nil || judged.Gates == nil {
		return "", fmt.Errorf("push --bench %s: the report has no gates: not a bench --json report", pf.bench)
	}
	for _, f := range files {
		want, ok := rep.Model.Files[f.Path]
		if !ok {
			continue
		}
		if st, err := os.Stat(f.Source); err == nil && st.Size() != want {
			return "", fmt.Errorf("push --bench %s: the report measured a %s of %d bytes, this one has %d: benchmark this model", pf.bench, f.Path, want, st.Size())
		}
	}
	if _, ok := rep.Model.Files[filepath.Base(modelPath)]; !ok && len(rep.Model.Files) > 0 {
		return "", fmt.Errorf("push --bench %s: the report measured %s, not %s", pf.bench, rep.Model.Path, modelPath)
	}
	if !rep.Gates.Passed {
		if !pf.allowFailed {
			msg := fmt.Sprintf("push: %s failed its quality gates (%s); nothing was sent. Fix the model, or push it anyway with --allow-failed-gates (recorded in the artifact)",
				pf.bench, strings.Join(rep.Gates.Failures, "; "))
			if rep.Hint != "" {
				msg += "\n" + rep.Hint
			}
			return "", &exitError{code: exitGateFailed, err: errors.New(msg)}
		}
		annotations[manifests.AnnotationGatesOverridden] = "true"
	}
	ba, err := manifests.DecodeBenchReport(b)
	if err != nil {
		return "", fmt.Errorf("push --bench %s: %w", pf.bench, err)
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
	p := filepath.Join(dir, filepath.Base(modelPath)+checkSuffix)
	if err := os.WriteFile(p, ref, 0o644); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return p, nil
}

// modelMetadata returns what the quantizer wrote into the model (settings,
// CPU requirement). A model quantized elsewhere has none: its int8 weights
// are checked here, and full-range ones make it require VNNI.
func modelMetadata(cmd *cobra.Command, m *onnx.Model) (map[string]string, error) {
	md := quantize.ReadMetadata(m.Proto)
	if md == nil {
		md = map[string]string{}
	}
	if _, ok := md[manifests.AnnotationQuantizationMethod]; !ok {
		w, err := quantize.ModelVNNIWeights(cmd.Context(), m)
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

func xferReadLimited(path string, limit int64) ([]byte, error) {
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

// decodeReportText undoes what Windows shells do to a report saved with a
// redirection: PowerShell 5's ">" writes UTF-16 with a byte-order mark, and
// Out-File -Encoding utf8 a UTF-8 one; encoding/json takes neither.
func decodeReportText(b []byte) []byte {
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
