package main

import (
	"context"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/pin"
	"github.com/modelctl/modelctl/client/tags"
	"github.com/modelctl/modelctl/signing"
)

func init() { register(newSyncCmd) }

func digestOf(s fmt.Stringer) digest.Digest { return digest.Digest(s.String()) }

func newSyncCmd() *cobra.Command {
	var cf clientFlags
	var update bool
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
models are installed and then the pins are rewritten in CONFIG.yaml.`,
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
			opts := pin.SyncOptions{Update: update, Signing: signing.Options{PlainHTTP: cf.plainHTTP}}
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
	cf.register(cmd.Flags())
	cmd.Flags().Lookup("chunk-size").Hidden = true
	return cmd
}
