package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/model"
)

func init() { register(newPushCmd) }

type pushFlags struct {
	clientFlags
	opts model.PushOptions
}

func newPushCmd() *cobra.Command { return pushCmd(runPush) }

// pushCmd builds the command around run (tests give their own).
func pushCmd(run func(*cobra.Command, *pushFlags, string, string) error) *cobra.Command {
	var pf pushFlags
	cmd := &cobra.Command{
		Use:   "push PATH REF",
		Short: "Pack a model (ONNX with its external data, GGUF, safetensors, a directory) and push it",
		Long: `Push the model at PATH as a ModelPack artifact to REF (host[:port]/repo:tag, or
s3://bucket/prefix/repo:tag). The format comes from the content: an ONNX graph
goes with every external data file its tensors reference (a missing or short one
is an error before any byte is sent); a GGUF file, checked, its metadata
(architecture, parameters, quantization, context length) as annotations; a
safetensors file, or a sharded set whole from its model.safetensors.index.json
(a missing shard is an error); a directory, every regular file with its relative
path (weights, config/tokenizer files as weight.config, README/licence as doc).
Anything else is pushed as one file with --format raw.

Unchanged files are not re-hashed (a digest cache keyed by path, size, mtime and
inode) nor re-sent (HEAD/mount); an interrupted push continues from the
registry's committed offset.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, &pf, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&pf.opts.Tags, "tag", "t", nil, "additional tag (repeatable)")
	f.StringVar(&pf.opts.Bench, "bench", "", "benchmark report (modelctl bench --json) to record as annotations; a report whose gates failed is refused")
	f.BoolVar(&pf.opts.AllowFailedGates, "allow-failed-gates", false, "push a model whose --bench report failed its gates, and record that")
	f.StringVar(&pf.opts.Parent, "parent", "", "artifact this model was derived from (its digest is recorded)")
	f.StringVar(&pf.opts.Name, "name", "", "model name in the config (default: the model file name)")
	f.StringVar(&pf.opts.Version, "model-version", "", "model version in the config")
	f.StringVar(&pf.opts.Precision, "precision", "", "precision in the config (fp32, fp16, int8, int4, mixed)")
	f.StringVar(&pf.opts.Quantization, "quantization", "", "quantization method (e.g. dynamic)")
	f.StringSliceVar(&pf.opts.QuantParams, "quant-param", nil, "quantization parameter KEY=VALUE (repeatable)")
	f.StringVar(&pf.opts.Format, "format", "auto", "how PATH is read: auto (from its content), onnx, gguf, safetensors, directory, or raw (one file as it is)")
	f.StringSliceVar(&pf.opts.Docs, "doc", nil, "documentation file to include next to the model (repeatable)")
	pf.clientFlags.register(f)
	return cmd
}

func runPush(cmd *cobra.Command, pf *pushFlags, modelPath, refArg string) error {
	ref, err := client.ParseReference(pf.expandRef(refArg))
	if err != nil {
		return err
	}
	c, err := pf.client(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	res, err := model.Push(cmd.Context(), c, modelPath, ref, pf.opts)
	if errors.Is(err, model.ErrGatesFailed) {
		return &exitError{code: exitGateFailed, err: err}
	}
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
