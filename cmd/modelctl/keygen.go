package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/internal/atomicfile"
	"github.com/modelctl/modelctl/signing"
)

func init() { register(newKeygenCmd) }

func newKeygenCmd() *cobra.Command {
	var alg string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen PREFIX",
		Short: "Create a signing key pair: PREFIX.key (private, mode 0600) and PREFIX.pub",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			priv, pub, err := signing.GenerateKey(alg)
			if err != nil {
				return err
			}
			keyPath, pubPath := args[0]+".key", args[0]+".pub"
			if err := writeNew(keyPath, priv, 0o600, force); err != nil {
				return err
			}
			if err := writeNew(pubPath, pub, 0o644, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (private, keep it secret) and %s (public, give it to verifiers)\n", keyPath, pubPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&alg, "algorithm", signing.AlgECDSAP256, "ecdsa-p256 or ed25519")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

// writeNew writes a key file complete or not at all (temp, fsync, rename),
// and refuses to replace an existing key unless force: losing a signing key
// to a typo cannot be undone.
func writeNew(path string, data []byte, mode os.FileMode, force bool) error {
	if _, err := os.Lstat(path); err == nil && !force {
		return fmt.Errorf("keygen: %s exists (use --force to replace it)", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".keygen-*")
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("keygen: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keygen: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := atomicfile.Rename(tmp, path); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	return nil
}
