package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/model"
)

func init() { register(newPullCmd) }

// xferIsTerminal reports whether w is a character device: progress bars go
// there and nowhere else.
func xferIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func xferParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size like 64MiB", s)
	}
	return n * mult, nil
}

func xferPrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func xferMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// pullOptions are the flags of pull.
type pullOptions struct {
	clientFlags
	dir  string
	opts model.PullOptions
}

func newPullCmd() *cobra.Command { return pullCmd(runPull) }

// pullCmd builds the command around run (tests give their own).
func pullCmd(run func(*cobra.Command, *pullOptions, string) error) *cobra.Command {
	o := &pullOptions{}
	cmd := &cobra.Command{
		Use:   "pull REF -o DIR",
		Short: "Download a model artifact, verify every byte, and install it into DIR",
		Long: `Pull REF (host[:port]/repo:tag or @sha256:...) into DIR. Layers go through a local
content-addressed cache (a second pull transfers nothing), are verified by digest
while they stream, resume after an interruption, and appear in DIR only complete
(hardlinked from the cache where possible). DIR/.modelctl/receipt.json records
what was installed.

With --require-signature, REF must carry a valid signature (modelctl sign) by one
of the --signature-key public keys; it is checked before any file is written, and
exactly the verified digest is pulled, so a tag moved in between cannot slip
other content in.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.dir == "" {
				return fmt.Errorf("pull: -o DIR is required")
			}
			return run(cmd, o, args[0])
		},
	}
	cmd.Flags().StringVarP(&o.dir, "output", "o", "", "directory to install into (created if missing)")
	cmd.Flags().BoolVar(&o.opts.RequireSignature, "require-signature", false, "refuse REF unless it is signed by one of the --signature-key keys")
	cmd.Flags().StringArrayVar(&o.opts.SignatureKeys, "signature-key", nil, "public key (PEM) a required signature must verify with (repeatable)")
	cmd.Flags().StringVar(&o.opts.Name, "name", "", "file name for an artifact whose only layer names none")
	o.register(cmd.Flags())
	cmd.Flags().Lookup("chunk-size").Hidden = true
	return cmd
}

func runPull(cmd *cobra.Command, o *pullOptions, refArg string) error {
	ref, err := client.ParseReference(o.expandRef(refArg))
	if err != nil {
		return err
	}
	c, err := o.client(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	res, err := model.Pull(cmd.Context(), c, ref, o.dir, o.opts)
	if err != nil {
		return err
	}
	if o.json {
		return xferPrintJSON(cmd.OutOrStdout(), res)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "pulled %s@%s into %s: %d files, %s, transferred %s\n", refArg, res.Digest, res.Dir, len(res.Files), xferMiB(res.Size), xferMiB(res.Transferred))
	for _, f := range res.Files {
		fmt.Fprintf(out, "  %-10s %s  %s\n", f.Status, f.Digest.Encoded()[:12], f.Path)
	}
	for _, k := range res.Kept {
		fmt.Fprintf(out, "  kept       %s (other bytes were in the way; moved aside)\n", k)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "modelctl: warning: %s\n", w)
	}
	return nil
}
