package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/pin"
)

func init() { register(newPinCmd) }

func newPinCmd() *cobra.Command {
	var cf clientFlags
	var key, appDir string
	var lockWait time.Duration
	cmd := &cobra.Command{
		Use:   "pin CONFIG.yaml --key KEY REF",
		Short: "Resolve REF and write it and its digest into a section of a YAML config",
		Long: `Resolve REF (host[:port]/repo:tag or @sha256:...) and write "artifact: REF" (what
to follow) and "artifact_digest: sha256:..." (the pin) under the section KEY of
CONFIG.yaml (a dotted KEY reaches a nested section). Only those two lines change:
comments, order, quoting and the rest of the formatting are kept, and the file
is replaced atomically. "modelctl sync CONFIG.yaml" then installs the pin.
A relative model_path is the application's: the directory pin runs in (or
-C DIR) is recorded, and sync or verify from another directory is refused
with the fix (-C, or app_dir in the section).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return fmt.Errorf("pin: --key KEY is required (the config section, e.g. audio_omni)")
			}
			cfg, release, err := pin.LoadLocked(cmd.Context(), args[0], "pin", lockWait, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("pin: %w", err)
			}
			defer release()
			cfg.Dir = appDir
			args[1] = cf.expandRef(args[1])
			c, err := cf.client(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			d, err := cfg.Pin(cmd.Context(), c, key, args[1])
			if err != nil {
				return err
			}
			if err := cfg.Save(); err != nil {
				return fmt.Errorf("pin: %w", err)
			}
			observe(cmd, &cf, args[1], d)
			res := struct {
				Config   string `json:"config"`
				Key      string `json:"key"`
				Artifact string `json:"artifact"`
				Digest   string `json:"digest"`
			}{args[0], key, args[1], d.String()}
			if cf.json {
				return xferPrintJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pinned %s in %s: %s -> %s\n", key, args[0], args[1], d)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "config section to pin (e.g. audio_omni, or models.asr for a nested one)")
	cmd.Flags().StringVarP(&appDir, "app-dir", "C", "", "the application's directory: relative model_paths are relative to it (default: the working directory)")
	lockWaitFlag(cmd.Flags(), &lockWait)
	cf.register(cmd.Flags())
	cmd.Flags().Lookup("chunk-size").Hidden = true
	cmd.Flags().Lookup("parallel").Hidden = true
	return cmd
}

// observe feeds the client-side tag history of registries that keep none;
// it is best effort, as the pin itself succeeded.
func observe(cmd *cobra.Command, cf *clientFlags, refArg string, d fmt.Stringer) {
	ref, err := client.ParseReference(refArg)
	if err != nil || ref.Tag == "" || ref.Digest != "" {
		return
	}
	t, err := cf.tagger(cmd.ErrOrStderr())
	if err != nil {
		return
	}
	if err := t.Observe(cmd.Context(), ref, digestOf(d)); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "modelctl: warning: client-side tag history: %v\n", err)
	}
}
