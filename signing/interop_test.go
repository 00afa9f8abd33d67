package signing_test

import (
	"context"
	"crypto"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/signing"
)

// TestSigstoreGoVerifies hands the bundle `Sign` stored, and the manifest it
// signs, to sigstore-go's verifier (the Sigstore project's own Go library):
// it accepts them with the signer's public key, and refuses them with
// another key or for other bytes.
func TestSigstoreGoVerifies(t *testing.T) {
	tool := testenv.Tool(t, "sigstore-verify")
	ctx := context.Background()
	host := startRegistry(t)
	c := newClient(t)
	opts := conn(t)
	for _, alg := range []string{signing.AlgECDSAP256, signing.AlgEd25519} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			key, pubFile := keyFiles(t, dir, "signer", alg)
			_, otherPub := keyFiles(t, dir, "other", alg)
			ref := host + "/interop/" + alg + ":v1"
			pushModel(t, c, ref)
			sig, err := signing.Sign(ctx, ref, key, opts)
			if err != nil {
				t.Fatal(err)
			}
			repo, _, err := signing.Repository(ref, opts)
			if err != nil {
				t.Fatal(err)
			}
			manifest, err := content.FetchAll(ctx, repo, sig.Subject)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := content.FetchAll(ctx, repo, sig.Referrer)
			if err != nil {
				t.Fatal(err)
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			bundle, err := content.FetchAll(ctx, repo, m.Layers[0])
			if err != nil {
				t.Fatal(err)
			}
			bundleFile, manifestFile, otherFile := filepath.Join(dir, "b.sigstore.json"), filepath.Join(dir, "manifest.json"), filepath.Join(dir, "other.json")
			for p, b := range map[string][]byte{bundleFile: bundle, manifestFile: manifest, otherFile: append(manifest, ' ')} {
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, tc := range []struct {
				name, artifact, key string
				ok                  bool
			}{
				{"signer's key", manifestFile, pubFile, true},
				{"another key", manifestFile, otherPub, false},
				{"other bytes", otherFile, pubFile, false},
			} {
				out, err := exec.Command(tool, "--bundle", bundleFile, "--artifact", tc.artifact, "--key", tc.key).CombinedOutput()
				if tc.ok && (err != nil || !strings.Contains(string(out), "verified")) {
					t.Fatalf("%s: sigstore-go refuses modelctl's bundle: %v\n%s\nbundle: %s", tc.name, err, out, bundle)
				}
				if !tc.ok && err == nil {
					t.Fatalf("%s: sigstore-go accepted:\n%s", tc.name, out)
				}
			}
		})
	}
}

// keyFiles writes a key pair under dir and returns the private key and the
// public key's file.
func keyFiles(t *testing.T, dir, name, alg string) (crypto.Signer, string) {
	t.Helper()
	priv, pub, err := signing.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	kf, pf := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	if err := os.WriteFile(kf, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pf, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := signing.LoadPrivateKey(kf)
	if err != nil {
		t.Fatal(err)
	}
	return k, pf
}
