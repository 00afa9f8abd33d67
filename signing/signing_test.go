package signing_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/registry"
	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
	"github.com/modelctl/modelctl/signing"
)

// startRegistry runs the real registry server on a loopback port.
func startRegistry(t *testing.T) string {
	t.Helper()
	drv, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(registry.Config{Store: storage.NewStore(drv), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return strings.TrimPrefix(ts.URL, "http://")
}

func newClient(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{CacheDir: t.TempDir(), Credentials: credentials.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pushModel(t *testing.T, c *client.Client, ref string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "weights.bin")
	if err := os.WriteFile(src, bytes.Repeat([]byte("model"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := client.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(context.Background(), r, client.PushOptions{
		Files: []client.PushFile{{Path: "weights.bin", Source: src, MediaType: manifests.MediaTypeWeightRaw}},
		Pack:  manifests.PackOptions{Name: "m", Precision: "fp32"},
	}); err != nil {
		t.Fatal(err)
	}
}

func keyPair(t *testing.T, alg string) (crypto.Signer, crypto.PublicKey) {
	t.Helper()
	priv, pub, err := signing.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "k.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	sk, err := signing.LoadPrivateKey(filepath.Join(dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := signing.LoadPublicKey(filepath.Join(dir, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return sk, pk
}

// pullRequiringSignature is what `pull --require-signature` does: Require
// first, then pull exactly the verified digest.
func pullRequiringSignature(ctx context.Context, c *client.Client, ref string, keys []crypto.PublicKey, dir string) error {
	d, err := signing.Require(ctx, ref, signing.Policy{Required: true, Keys: keys}, signing.Options{Open: c.OrasRepository})
	if err != nil {
		return err
	}
	r, err := client.ParseReference(ref)
	if err != nil {
		return err
	}
	_, err = c.Pull(ctx, r.WithDigest(d), dir)
	return err
}

// tamper pushes a copy of ref's signature whose signature bytes are
// altered, and removes nothing: the good signature stays unless the test
// signs nothing else.
func pushTampered(t *testing.T, host, repoName string, sig *signing.Signature) {
	t.Helper()
	ctx := context.Background()
	repo, _, err := signing.Repository(host+"/"+repoName+"@"+sig.Subject.Digest.String(), conn(t))
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
	var b map[string]any
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	ms := b["messageSignature"].(map[string]any)
	s := []byte(ms["signature"].(string))
	// Flip one base64 character in the middle of the signature.
	if s[10] == 'A' {
		s[10] = 'B'
	} else {
		s[10] = 'A'
	}
	ms["signature"] = string(s)
	bad, _ := json.Marshal(b)
	layer := content.NewDescriptorFromBytes(signing.BundleMediaType, bad)
	if err := repo.Push(ctx, layer, bytes.NewReader(bad)); err != nil {
		t.Fatal(err)
	}
	subj := sig.Subject
	if _, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, signing.BundleMediaType, oras.PackManifestOptions{Subject: &subj, Layers: []ocispec.Descriptor{layer}}); err != nil {
		t.Fatal(err)
	}
}

func TestRequireSignature(t *testing.T) {
	ctx := context.Background()
	host := startRegistry(t)
	c := newClient(t)
	trustedKey, trusted := keyPair(t, signing.AlgECDSAP256)
	otherKey, _ := keyPair(t, signing.AlgEd25519)
	edKey, edPub := keyPair(t, signing.AlgEd25519)
	opts := conn(t)

	for _, tc := range []struct {
		name    string
		prepare func(ref string)
		keys    []crypto.PublicKey
		want    error
	}{
		{"signed", func(ref string) {
			if _, err := signing.Sign(ctx, ref, trustedKey, opts); err != nil {
				t.Fatal(err)
			}
		}, []crypto.PublicKey{trusted}, nil},
		{"signed ed25519", func(ref string) {
			if _, err := signing.Sign(ctx, ref, edKey, opts); err != nil {
				t.Fatal(err)
			}
		}, []crypto.PublicKey{trusted, edPub}, nil},
		{"missing", func(string) {}, []crypto.PublicKey{trusted}, signing.ErrNoSignature},
		{"other key", func(ref string) {
			if _, err := signing.Sign(ctx, ref, otherKey, opts); err != nil {
				t.Fatal(err)
			}
		}, []crypto.PublicKey{trusted}, signing.ErrInvalidSignature},
		{"tampered", func(ref string) {
			r, _ := client.ParseReference(ref)
			sig, err := signing.Sign(ctx, ref, trustedKey, opts)
			if err != nil {
				t.Fatal(err)
			}
			// Replace the good signature with a tampered copy: delete the
			// good referrer, push the altered one.
			pushTampered(t, host, r.Repository, sig)
			repo, _, _ := signing.Repository(host+"/"+r.Repository+"@"+sig.Referrer.Digest.String(), opts)
			if err := repo.Delete(ctx, sig.Referrer); err != nil {
				t.Fatal(err)
			}
		}, []crypto.PublicKey{trusted}, signing.ErrInvalidSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := host + "/sig/" + strings.ReplaceAll(tc.name, " ", "-") + ":v1"
			pushModel(t, c, ref)
			tc.prepare(ref)
			dir := filepath.Join(t.TempDir(), "out")
			err := pullRequiringSignature(ctx, c, ref, tc.keys, dir)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("pull of a signed artifact: %v", err)
				}
				if _, err := os.Stat(filepath.Join(dir, "weights.bin")); err != nil {
					t.Fatalf("signed artifact not installed: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("refused pull left %s behind (stat: %v)", dir, err)
			}
		})
	}
}

func TestRequireNotRequired(t *testing.T) {
	d, err := signing.Require(context.Background(), "127.0.0.1:1/x:y", signing.Policy{}, signing.Options{})
	if err != nil || d != "" {
		t.Fatalf("Require without a policy = %q, %v; want nothing checked", d, err)
	}
}

func TestSignedDigestOnly(t *testing.T) {
	// A signature covers the digest, not the tag: moving the tag to other
	// content leaves that content unsigned.
	ctx := context.Background()
	host := startRegistry(t)
	c := newClient(t)
	key, pub := keyPair(t, signing.AlgECDSAP256)
	opts := conn(t)
	ref := host + "/sig/moved:v1"
	pushModel(t, c, ref)
	sig, err := signing.Sign(ctx, ref, key, opts)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signing.Verify(ctx, ref, []crypto.PublicKey{pub}, opts)
	if err != nil || v.Subject.Digest != sig.Subject.Digest {
		t.Fatalf("verify: %v %v", v, err)
	}
	src := filepath.Join(t.TempDir(), "weights.bin")
	_ = os.WriteFile(src, []byte("other weights"), 0o644)
	r, _ := client.ParseReference(ref)
	if _, err := c.Push(ctx, r, client.PushOptions{Files: []client.PushFile{{Path: "weights.bin", Source: src, MediaType: manifests.MediaTypeWeightRaw}}, Pack: manifests.PackOptions{Name: "m"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := signing.Verify(ctx, ref, []crypto.PublicKey{pub}, opts); !errors.Is(err, signing.ErrNoSignature) {
		t.Fatalf("moved tag: %v, want ErrNoSignature", err)
	}
	if _, err := signing.Verify(ctx, host+"/sig/moved@"+sig.Subject.Digest.String(), []crypto.PublicKey{pub}, opts); err != nil {
		t.Fatalf("the signed digest: %v", err)
	}
}

// conn is the connection the tests sign and verify through: a client with
// no stored credentials, as modelctl builds it.
func conn(t testing.TB) signing.Options {
	t.Helper()
	c, err := client.New(client.Options{CacheDir: t.TempDir(), Credentials: credentials.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	return signing.Options{Open: c.OrasRepository}
}
