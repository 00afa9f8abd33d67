package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/signing"
)

func init() { register(newSignCmd) }

func newSignCmd() *cobra.Command {
	var f clientFlags
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
			opts, err := f.signing(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			sig, err := signing.Sign(cmd.Context(), args[0], key, opts)
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
	f.registerConn(cmd.Flags())
	return cmd
}
