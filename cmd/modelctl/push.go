package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/manifests"
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
	f.StringVar(&pf.bench, "bench", "", "benchmark report (modelctl bench --json) to record as annotations")
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
	data, err := onnx.ExternalDataFiles(modelPath)
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
	if pf.bench != "" {
		b, err := xferReadLimited(pf.bench, 1<<20)
		if err != nil {
			return fmt.Errorf("push --bench: %w", err)
		}
		ba, err := manifests.DecodeBenchReport(b)
		if err != nil {
			return fmt.Errorf("push --bench %s: %w", pf.bench, err)
		}
		for k, v := range ba {
			annotations[k] = v
		}
	}
	var quant *manifests.Quantization
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
