package main

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/modelctl/modelctl/signing"
)

func init() { register(newSignCmd) }

// signFlags are the registry flags of sign and verify-signature.
type signFlags struct {
	plainHTTP bool
	insecure  bool
	json      bool
}

func (f *signFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "speak plain HTTP to a non-loopback registry (loopback always is)")
	fs.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate verification")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON")
}

func (f *signFlags) options() signing.Options {
	o := signing.Options{PlainHTTP: f.plainHTTP}
	if f.insecure {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for --insecure
		o.Client = &http.Client{Transport: retry.NewTransport(t)}
	}
	return o
}

func newSignCmd() *cobra.Command {
	var f signFlags
	var keyFile string
	cmd := &cobra.Command{
		Use:   "sign REF --key KEY",
		Short: "Sign a model artifact and store the signature in the registry as a Sigstore bundle",
		Long: `Sign the manifest REF names with a PEM private key (ECDSA P-256 or ed25519, see
modelctl keygen). The signature is a Sigstore bundle v0.3 (a message signature over
the manifest, with the public key as verification material), pushed as an OCI
referrer of the manifest as cosign lays bundles out. A tag is resolved first and
the digest is what gets signed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return fmt.Errorf("sign: --key KEY is required (create one with modelctl keygen)")
			}
			key, err := signing.LoadPrivateKey(keyFile)
			if err != nil {
				return err
			}
			sig, err := signing.Sign(cmd.Context(), args[0], key, f.options())
			if err != nil {
				return err
			}
			if f.json {
				return xferPrintJSON(cmd.OutOrStdout(), sig)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s@%s with key %s (signature %s)\n", args[0], sig.Subject.Digest, sig.KeyID[:16], sig.Referrer.Digest)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM private key (ECDSA P-256 or ed25519)")
	f.register(cmd.Flags())
	return cmd
}
