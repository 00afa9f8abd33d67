package signing_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/signing"
)

// Anyone with push on a repository could hide a valid signature behind 64
// junk referrers (the verifier reads at most 64, and failed closed). Junk
// signed with other keys must not count against a trusted key, and copies
// that claim the trusted key but were pushed after the signature must not
// push it out of reach either.
func TestJunkReferrersDoNotHideAValidSignature(t *testing.T) {
	ctx := context.Background()
	host := startRegistry(t)
	c := newClient(t)
	trustedKey, trusted := keyPair(t, signing.AlgECDSAP256)
	otherKey, _ := keyPair(t, signing.AlgECDSAP256) // ECDSA signs randomly: each junk signature is new
	opts := conn(t)

	for _, tc := range []struct {
		name   string
		junk   func(t *testing.T, ref string, sig *signing.Signature)
		amount int
	}{
		{"signatures by other keys", func(t *testing.T, ref string, _ *signing.Signature) {
			if _, err := signing.Sign(ctx, ref, otherKey, opts); err != nil {
				t.Fatal(err)
			}
		}, 300},
		{"tampered copies claiming the trusted key", func(t *testing.T, ref string, sig *signing.Signature) {
			pushForgedClaim(t, host, mustRef(t, ref).Repository, sig)
		}, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := host + "/junk/m" + fmt.Sprint(len(tc.name)) + ":v1"
			pushModel(t, c, ref)
			sig, err := signing.Sign(ctx, ref, trustedKey, opts)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tc.amount; i++ {
				tc.junk(t, ref, sig)
			}
			dir := filepath.Join(t.TempDir(), "out")
			if err := pullRequiringSignature(ctx, c, ref, []crypto.PublicKey{trusted}, dir); err != nil {
				t.Fatalf("signed artifact with %d junk referrers: %v", tc.amount, err)
			}
		})
	}
}

func mustRef(t *testing.T, ref string) client.Reference {
	t.Helper()
	r, err := client.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var forged int

// pushForgedClaim pushes a copy of sig's referrer with every annotation of
// the original (so it claims the trusted key) over a tampered bundle.
func pushForgedClaim(t *testing.T, host, repoName string, sig *signing.Signature) {
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
	if m.Annotations[signing.AnnotationKeyID] != sig.KeyID {
		t.Fatalf("the signature does not name its key: annotations %v", m.Annotations)
	}
	bad := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","junk":true}`)
	layer := content.NewDescriptorFromBytes(signing.BundleMediaType, bad)
	if err := repo.Push(ctx, layer, bytes.NewReader(bad)); err != nil {
		t.Fatal(err)
	}
	forged++
	ann := maps.Clone(m.Annotations)
	ann["test.junk"] = fmt.Sprint(forged) // each copy a new referrer
	subj := sig.Subject
	if _, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, signing.BundleMediaType, oras.PackManifestOptions{Subject: &subj, Layers: []ocispec.Descriptor{layer}, ManifestAnnotations: ann}); err != nil {
		t.Fatal(err)
	}
}
