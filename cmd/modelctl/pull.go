package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/signing"
)

func init() { register(newPullCmd) }

// clientFlags are the flags every command that talks to a registry shares.
type clientFlags struct {
	plainHTTP  bool
	insecure   bool
	cacheDir   string
	parallel   int
	chunkSize  string
	json       bool
	s3Endpoint string
	s3Region   string
}

// cacheDirUsage is the help of every --cache-dir.
const cacheDirUsage = "local cache directory (default $MODELCTL_CACHE or the user cache dir + /modelctl)"

func (f *clientFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "speak plain HTTP to a non-loopback registry (loopback always is)")
	fs.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate verification")
	fs.StringVar(&f.cacheDir, "cache-dir", "", cacheDirUsage)
	fs.IntVar(&f.parallel, "parallel", 0, "concurrent files and byte ranges (0: 4, or 2 on loopback)")
	fs.StringVar(&f.chunkSize, "chunk-size", "auto", "size of one upload chunk, e.g. 64MiB (the registry's OCI-Chunk-Min-Length raises it); auto: 64MiB, or one streamed chunk per file on loopback")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON")
	fs.StringVar(&f.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL for s3:// references (default $AWS_ENDPOINT_URL, else AWS); credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials")
	fs.StringVar(&f.s3Region, "s3-region", "", "S3 region for s3:// references")
}

func (f *clientFlags) client(stderr io.Writer) (*client.Client, error) {
	var chunk int64
	if f.chunkSize != "auto" && f.chunkSize != "" {
		var err error
		if chunk, err = xferParseSize(f.chunkSize); err != nil {
			return nil, fmt.Errorf("--chunk-size: %w", err)
		}
	}
	opts := client.Options{PlainHTTP: f.plainHTTP, Insecure: f.insecure, CacheDir: f.cacheDir, Parallel: f.parallel, ChunkSize: chunk,
		S3Endpoint: f.s3Endpoint, S3Region: f.s3Region}
	if !f.json && xferIsTerminal(stderr) {
		opts.Progress = stderr
	}
	return client.New(opts)
}

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

func newPullCmd() *cobra.Command {
	var cf clientFlags
	var dir string
	var requireSig bool
	var sigKeys []string
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
			if dir == "" {
				return fmt.Errorf("pull: -o DIR is required")
			}
			ref, err := client.ParseReference(args[0])
			if err != nil {
				return err
			}
			pol, err := signing.NewPolicy(requireSig, sigKeys...)
			if err != nil {
				return fmt.Errorf("pull: %w", err)
			}
			if d, err := signing.Require(cmd.Context(), args[0], pol, signing.Options{PlainHTTP: cf.plainHTTP}); err != nil {
				return fmt.Errorf("pull %s: %w", args[0], err)
			} else if d != "" {
				ref = ref.WithDigest(d)
			}
			c, err := cf.client(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			res, err := c.Pull(cmd.Context(), ref, dir)
			if err != nil {
				return err
			}
			if cf.json {
				return xferPrintJSON(cmd.OutOrStdout(), res)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "pulled %s@%s into %s: %d files, %s, transferred %s\n", args[0], res.Digest, res.Dir, len(res.Files), xferMiB(res.Size), xferMiB(res.Transferred))
			for _, f := range res.Files {
				fmt.Fprintf(out, "  %-10s %s  %s\n", f.Status, f.Digest.Encoded()[:12], f.Path)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "output", "o", "", "directory to install into (created if missing)")
	cmd.Flags().BoolVar(&requireSig, "require-signature", false, "refuse REF unless it is signed by one of the --signature-key keys")
	cmd.Flags().StringArrayVar(&sigKeys, "signature-key", nil, "public key (PEM) a required signature must verify with (repeatable)")
	cf.register(cmd.Flags())
	cmd.Flags().Lookup("chunk-size").Hidden = true
	return cmd
}
