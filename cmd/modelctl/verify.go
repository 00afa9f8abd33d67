package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client/pin"
)

func init() { register(newVerifyCmd) }

func newVerifyCmd() *cobra.Command {
	var asJSON bool
	var appDir string
	cmd := &cobra.Command{
		Use:   "verify CONFIG.yaml",
		Short: "Re-hash every installed model file against the pins of a config",
		Long: `Re-hash every file of every pinned model of CONFIG.yaml against the manifest of
its pin (kept next to the installation, its digest checked against the pin),
without the network. Exits non-zero naming every file that differs or is
missing. Relative model_paths are relative to the application's directory, as
for sync (-C DIR, app_dir, or the directory the pin was made in).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := pin.Load(args[0])
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			cfg.Dir = appDir
			results, err := cfg.VerifyAll(cmd.Context())
			if err != nil {
				return fmt.Errorf("verify %s: %w", args[0], err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := xferPrintJSON(out, results); err != nil {
					return err
				}
			}
			var bad []string
			for _, r := range results {
				if !asJSON {
					state := "ok"
					if !r.OK {
						state = "FAILED"
					}
					fmt.Fprintf(out, "%s: %s %s at %s (%d files, %s)\n", r.Key, state, short(string(r.Digest)), r.Path, r.Files, xferMiB(r.Size))
				}
				for _, p := range r.Problems {
					if !asJSON {
						fmt.Fprintf(out, "  %s\n", p)
					}
					bad = append(bad, p.Path+" ("+strings.SplitN(p.Kind, " (", 2)[0]+")")
				}
			}
			if !asJSON {
				fmt.Fprintln(out, "(every file re-hashed against the pin records kept with the installation; the registry was not consulted)")
			}
			if len(bad) > 0 {
				return fmt.Errorf("verify %s: %d file(s) differ from the pins or are missing: %s", args[0], len(bad), strings.Join(bad, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	cmd.Flags().StringVarP(&appDir, "app-dir", "C", "", "the application's directory: relative model_paths are relative to it")
	return cmd
}

// oneLine joins the errors of several sections into one line.
func oneLine(err error) error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		var s []string
		for _, e := range j.Unwrap() {
			s = append(s, e.Error())
		}
		return &joinedLine{msg: strings.Join(s, "; "), errs: j.Unwrap()}
	}
	return err
}

// joinedLine keeps the joined errors for errors.Is while printing them on
// one line.
type joinedLine struct {
	msg  string
	errs []error
}

func (e *joinedLine) Error() string   { return e.msg }
func (e *joinedLine) Unwrap() []error { return e.errs }
