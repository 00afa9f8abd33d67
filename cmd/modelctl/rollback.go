package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/pin"
	"github.com/modelctl/modelctl/client/tags"
	"github.com/modelctl/modelctl/internal/hostcpu"
	"github.com/modelctl/modelctl/signing"
)

func init() { register(newRollbackCmd) }

// isConfigArg reports whether a rollback argument names a config file
// (an existing .yaml/.yml file) rather than a reference.
func isConfigArg(arg string) bool {
	ext := strings.ToLower(filepath.Ext(arg))
	if ext != ".yaml" && ext != ".yml" {
		return false
	}
	fi, err := os.Stat(arg)
	return err == nil && fi.Mode().IsRegular()
}

func newRollbackCmd() *cobra.Command {
	var tf clientFlags
	var sf serviceFlags
	var df deployFlags
	var to, key string
	cmd := &cobra.Command{
		Use:   "rollback REF [--to DIGEST] | rollback CONFIG.yaml [--key KEY] [--to DIGEST]",
		Short: "Move a tag back to its previous digest, or switch a config back to its previous model",
		Long: `rollback REF moves REF's tag back to the digest it pointed at before, from the
tag's history (rolling back twice after v1, v2, v3 reaches v1), or to --to
DIGEST. On modelctl's registry the move is a compare-and-swap: it fails if the
tag moved meanwhile. A following "modelctl sync CONFIG --update" installs it.

rollback CONFIG.yaml switches the sections of an application's config (or
--key KEY) back to the model they were pinned at before on this host, from the
local pin history kept with the installation: no registry is needed when the
previous model is in the local cache (every byte is verified from there). The
files move first, then the pins in the file; --restart/--health (or the
section's restart/health) run as for sync. The tag is not moved: run
"modelctl rollback REF" too when the registry is reachable, or "sync --update"
will install what the tag names again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if isConfigArg(args[0]) {
				return rollbackConfig(cmd, &tf, &sf, &df, args[0], key, to)
			}
			if key != "" {
				return fmt.Errorf("rollback: --key applies to a config file; %s is not one", args[0])
			}
			ref, err := client.ParseReference(tf.expandRef(args[0]))
			if err != nil {
				return err
			}
			t, err := tf.tagger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			res, err := t.Rollback(cmd.Context(), ref, digest.Digest(to))
			if err != nil {
				return err
			}
			if tf.json {
				return xferPrintJSON(cmd.OutOrStdout(), res)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "rolled back %s: %s -> %s\n", res.Reference, res.From, res.To)
			if res.History == tags.SourceClient {
				printClientSide(out, ref.Registry, res.HistoryFile)
			}
			fmt.Fprintln(out, "run `modelctl sync CONFIG --update` where the model is pinned to install it")
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "digest to move the tag (or the config's section) to (default: the previous one in its history)")
	cmd.Flags().StringVar(&key, "key", "", "with CONFIG.yaml: the section to roll back (default: every section with an earlier pin)")
	sf.register(cmd.Flags())
	df.register(cmd.Flags())
	tf.register(cmd.Flags())
	cmd.Flags().Lookup("chunk-size").Hidden = true
	return cmd
}

func rollbackConfig(cmd *cobra.Command, cf *clientFlags, sf *serviceFlags, df *deployFlags, config, key, to string) error {
	cfg, release, err := pin.LoadLocked(cmd.Context(), config, "rollback", sf.lockWait, cmd.ErrOrStderr())
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	defer release()
	cfg.Dir = sf.appDir
	c, err := cf.client(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	host := hostcpu.Host()
	opts := pin.RollbackOptions{Key: key, To: digest.Digest(to),
		Sync: pin.SyncOptions{Signing: signing.Options{Open: c.OrasRepository}, CPU: &host}}
	sf.apply(&opts.Sync, cmd.ErrOrStderr())
	results, err := pin.Rollback(cmd.Context(), cfg, c, opts)
	reportDeployments(cmd.Context(), c, df, config, deployed(results), cmd.ErrOrStderr())
	if perr := printSync(cmd, cf, results, err, config, false); perr != nil {
		return perr
	}
	if !cf.json {
		for _, r := range results {
			if r.Previous != "" && !r.RolledBack {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: the tag %s was not moved: `modelctl rollback %s` moves it, or `sync --update` installs what it names again\n", r.Key, r.Artifact, r.Artifact)
			}
		}
	}
	return nil
}
