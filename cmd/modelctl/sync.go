package main

import (
	"context"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/model"
	"github.com/modelctl/modelctl/client/pin"
	"github.com/modelctl/modelctl/client/tags"
	"github.com/modelctl/modelctl/internal/hostcpu"
	"github.com/modelctl/modelctl/quantize/bench"
	"github.com/modelctl/modelctl/signing"
)

func init() { register(newSyncCmd) }

func digestOf(s fmt.Stringer) digest.Digest { return digest.Digest(s.String()) }

func newSyncCmd() *cobra.Command {
	var cf clientFlags
	var update, check bool
	var ortLib string
	var df deployFlags
	cmd := &cobra.Command{
		Use:   "sync CONFIG.yaml [--update]",
		Short: "Install every pinned model of a config, verified, next to its model_path",
		Long: `Install the pinned artifact (artifact_digest) of every section of CONFIG.yaml into
the directory of its model_path (relative paths are relative to the working
directory, as the application reads them). Files are fetched into the local
cache, verified by digest, and appear at their paths only complete; a model
already installed is left alone without contacting the registry, so a second
sync transfers nothing.

With --update, each section's artifact tag is resolved again first; the new
models are installed and then the pins are rewritten in CONFIG.yaml.

An artifact that records a CPU requirement this machine does not meet (a
full-range int8 model on a CPU without VNNI) is refused before anything is
fetched. With --check (or check: true in a section), a model is first pulled
into a staging directory and run here through onnxruntime on the reference
inputs that push --bench stored with it (MODEL.onnx.check.json); its outputs
must pass the recorded gates against the FP32 outputs, on this CPU, before
anything is switched. On any failure the pin and the installed files stay as
they were.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := pin.Load(args[0])
			if err != nil {
				return fmt.Errorf("sync: %w", err)
			}
			c, err := cf.client(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			host := hostcpu.Host()
			opts := pin.SyncOptions{Update: update, Signing: signing.Options{Open: c.OrasRepository},
				CPU: &host, CheckAll: check, Check: model.Check(cmd.ErrOrStderr(), ortLib)}
			if update {
				if t, err := tags.New(tags.Options{Client: c}); err == nil {
					opts.Resolved = func(ctx context.Context, ref client.Reference, d digest.Digest) {
						if err := t.Observe(ctx, ref, d); err != nil {
							fmt.Fprintf(cmd.ErrOrStderr(), "modelctl: warning: client-side tag history: %v\n", err)
						}
					}
				}
			}
			results, err := pin.Sync(cmd.Context(), cfg, c, opts)
			reportDeployments(cmd.Context(), c, &df, args[0], results, cmd.ErrOrStderr())
			if cf.json {
				if perr := xferPrintJSON(cmd.OutOrStdout(), results); perr != nil {
					return perr
				}
			} else {
				out := cmd.OutOrStdout()
				for _, r := range results {
					switch {
					case r.Previous != "" && r.Previous != r.Digest:
						fmt.Fprintf(out, "%s: updated %s -> %s\n", r.Key, short(string(r.Previous)), r.Digest)
					case r.Previous == "" && r.Status == "installed" && update:
						fmt.Fprintf(out, "%s: pinned %s\n", r.Key, r.Digest)
					}
					fmt.Fprintf(out, "%s: %s %s at %s (%d files, %s, transferred %s)\n", r.Key, r.Status, short(string(r.Digest)), r.Path, r.Files, xferMiB(r.Size), xferMiB(r.Transferred))
					for _, f := range r.Removed {
						fmt.Fprintf(out, "%s: removed %s (not in the new version)\n", r.Key, f)
					}
				}
			}
			if err != nil {
				return fmt.Errorf("sync %s: %w", args[0], oneLine(err))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&update, "update", false, "resolve the tags again and rewrite the pins")
	cmd.Flags().BoolVar(&check, "check", false, "run each new model here against its stored reference and gates before switching")
	cmd.Flags().StringVar(&ortLib, "ort-lib", "", "onnxruntime shared library for --check (default: $"+bench.LibraryEnv+", then the bundled or `make ort` one)")
	df.register(cmd.Flags())
	cf.register(cmd.Flags())
	cmd.Flags().Lookup("chunk-size").Hidden = true
	return cmd
}
