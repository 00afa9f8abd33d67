package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/signing"
)

func init() { register(newVerifySignatureCmd) }

func newVerifySignatureCmd() *cobra.Command {
	var f clientFlags
	var keyFiles []string
	cmd := &cobra.Command{
		Use:   "verify-signature REF --key PUB",
		Short: "Check that a model artifact is signed by a trusted key",
		Long: `Verify that the manifest REF names has a Sigstore bundle referrer signed by one of
the given PEM public keys (--key may be repeated). Exits non-zero when the artifact
has no signature, or when no signature verifies with a trusted key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keyFiles) == 0 {
				return fmt.Errorf("verify-signature: --key PUB is required")
			}
			keys, err := signing.LoadPublicKeys(keyFiles...)
			if err != nil {
				return err
			}
			opts, err := f.signing(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			v, err := signing.Verify(cmd.Context(), args[0], keys, opts)
			if err != nil {
				return err
			}
			if f.json {
				return xferPrintJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "verified %s@%s: signed by key %s (signature %s)\n", args[0], v.Subject.Digest, v.KeyID[:16], v.Referrer.Digest)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keyFiles, "key", nil, "trusted PEM public key (repeatable)")
	f.registerConn(cmd.Flags())
	return cmd
}
