// Package signing signs model artifacts and verifies their signatures. A
// signature is a Sigstore bundle (v0.3, a message signature over the model
// manifest with a public key as verification material) stored as an OCI
// referrer of the manifest, laid out as cosign's bundle specification
// describes, so Sigstore tooling can read what modelctl writes.
package signing

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
)

// Bounds on what is read from a registry during verification: an attacker
// who can push referrers must not make the verifier allocate by a size
// field.
const (
	maxSubjectManifest  = 4 << 20
	maxReferrerManifest = 64 << 10
	maxBundle           = 1 << 20
	// maxListed bounds the referrer descriptors looked at (metadata only,
	// a few hundred bytes each); maxChecked bounds the referrers fetched
	// and verified per trusted key, and again for bundles that name no key.
	maxListed  = 4096
	maxChecked = 64
)

// AnnotationKeyID on a signature manifest names the key that made it (the
// KeyID of its public key). The referrers listing carries it, so a
// verifier fetches only the signatures that claim a key it trusts: junk
// referrers signed by anyone else cannot use up its budget. The claim is
// not trusted, only used to choose what to verify.
const AnnotationKeyID = "dev.modelctl.signature.key-id"

// Options say how to reach a registry.
type Options struct {
	// Open opens the repository of a reference ("host[:port]/repo") with
	// the caller's connection: its transport, TLS settings, credentials and
	// plain-HTTP decision. client.Client.OrasRepository is the one in
	// modelctl; signing builds no connection of its own.
	Open func(ref string) (*remote.Repository, error)
}

// Repository opens the repository of ref ("host[:port]/repo[:tag|@digest]")
// and returns it with the tag or digest ref names.
func Repository(ref string, opts Options) (*remote.Repository, string, error) {
	if strings.HasPrefix(ref, "s3://") {
		return nil, "", fmt.Errorf("%s: signatures live in a registry; serve the bucket with modelctl serve and sign through it", ref)
	}
	if opts.Open == nil {
		return nil, "", errors.New("signing: no connection (Options.Open is nil)")
	}
	parsed, err := remote.NewRepository(ref)
	if err != nil {
		return nil, "", fmt.Errorf("parse reference %q: %w", ref, err)
	}
	reference := parsed.Reference.Reference
	if reference == "" {
		return nil, "", fmt.Errorf("reference %q: give a tag or a digest", ref)
	}
	repo, err := opts.Open(parsed.Reference.Registry + "/" + parsed.Reference.Repository)
	if err != nil {
		return nil, "", err
	}
	return repo, reference, nil
}

// resolveSubject resolves reference to the manifest it names and fetches
// its bytes, verified against the digest.
func resolveSubject(ctx context.Context, repo *remote.Repository, reference string) (ocispec.Descriptor, []byte, error) {
	desc, err := repo.Resolve(ctx, reference)
	if err != nil {
		return desc, nil, fmt.Errorf("resolve %s: %w", reference, err)
	}
	b, err := fetchBounded(ctx, repo, desc, maxSubjectManifest)
	if err != nil {
		return desc, nil, fmt.Errorf("fetch manifest %s: %w", desc.Digest, err)
	}
	if desc.Digest.Algorithm() != digest.SHA256 {
		return desc, nil, fmt.Errorf("manifest %s: only sha256 manifests can be signed", desc.Digest)
	}
	return desc, b, nil
}

// fetchBounded fetches desc whole when its declared size is within limit;
// content.FetchAll verifies size and digest.
func fetchBounded(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size < 0 || desc.Size > limit {
		return nil, fmt.Errorf("%s declares %d bytes, more than the %d allowed", desc.Digest, desc.Size, limit)
	}
	return content.FetchAll(ctx, f, desc)
}

// Signature is what Sign stored.
type Signature struct {
	Subject  ocispec.Descriptor `json:"subject"`
	Referrer ocispec.Descriptor `json:"referrer"`
	KeyID    string             `json:"keyId"`
}

// Sign signs the manifest ref names with key and pushes the bundle as a
// referrer of it.
func Sign(ctx context.Context, ref string, key crypto.Signer, opts Options) (*Signature, error) {
	repo, reference, err := Repository(ref, opts)
	if err != nil {
		return nil, err
	}
	subject, manifest, err := resolveSubject(ctx, repo, reference)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", ref, err)
	}
	raw, err := newBundle(key, manifest, subject.Digest)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", ref, err)
	}
	layer := content.NewDescriptorFromBytes(BundleMediaType, raw)
	layer.Annotations = map[string]string{
		ocispec.AnnotationTitle: fmt.Sprintf("%s-%s.sigstore.json", layer.Digest.Algorithm(), layer.Digest.Encoded()),
	}
	if err := repo.Push(ctx, layer, bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("sign %s: push bundle: %w", ref, err)
	}
	// The subject descriptor as the referrer names it: without the
	// annotations or platform a Resolve may carry.
	subj := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	desc, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, BundleMediaType, oras.PackManifestOptions{
		Subject: &subj,
		Layers:  []ocispec.Descriptor{layer},
		ManifestAnnotations: map[string]string{
			AnnotationBundleContent:   contentMessageSignature,
			AnnotationKeyID:           KeyID(key.Public()),
			ocispec.AnnotationCreated: time.Now().UTC().Format(time.RFC3339),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("sign %s: push signature manifest: %w", ref, err)
	}
	return &Signature{Subject: subj, Referrer: desc, KeyID: KeyID(key.Public())}, nil
}

// Verification is the outcome of a successful Verify.
type Verification struct {
	Subject  ocispec.Descriptor `json:"subject"`
	Referrer ocispec.Descriptor `json:"referrer"`
	KeyID    string             `json:"keyId"`
}

// Verify checks that the manifest ref names carries a Sigstore bundle
// referrer whose signature verifies with one of keys. It returns the
// verified manifest descriptor: callers must go on by that digest, not by
// the tag, so a tag moved after the check cannot slip in unsigned content.
// Errors wrap ErrNoSignature or ErrInvalidSignature.
func Verify(ctx context.Context, ref string, keys []crypto.PublicKey, opts Options) (*Verification, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("verify %s: no trusted public key given", ref)
	}
	repo, reference, err := Repository(ref, opts)
	if err != nil {
		return nil, err
	}
	subject, manifest, err := resolveSubject(ctx, repo, reference)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", ref, err)
	}
	v, err := verifySubject(ctx, repo, subject, manifest, keys)
	if err != nil {
		return nil, fmt.Errorf("verify %s@%s: %w", repo.Reference.Repository, subject.Digest, err)
	}
	return v, nil
}

// verifySubject looks for a signature by one of keys among the subject's
// Sigstore bundle referrers. Anyone with push on the repository can add
// referrers, so the work is bounded without letting junk hide a valid
// signature:
//
//   - at most maxListed descriptors are read from the listing;
//   - a bundle whose AnnotationKeyID names a key not trusted here is never
//     fetched, so signatures by other keys cost nothing;
//   - at most maxChecked bundles are verified per trusted key, in listing
//     order, which modelctl's registry keeps oldest first: copies claiming
//     a trusted key pushed after the real signature come after it;
//   - bundles naming no key (other tools, older modelctl) get maxChecked
//     more.
func verifySubject(ctx context.Context, repo *remote.Repository, subject ocispec.Descriptor, manifest []byte, keys []crypto.PublicKey) (*Verification, error) {
	trusted := map[string]int{} // key ID -> bundles checked that claim it
	for _, k := range keys {
		trusted[KeyID(k)] = 0
	}
	var listed, unnamed int
	var candidates []ocispec.Descriptor
	errEnough := errors.New("enough referrers")
	err := repo.Referrers(ctx, ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}, BundleMediaType, func(page []ocispec.Descriptor) error {
		for _, d := range page {
			if listed == maxListed {
				// Stop paging: whoever can push referrers must not make the
				// verifier walk an unbounded list.
				return errEnough
			}
			listed++
			if d.ArtifactType != "" && d.ArtifactType != BundleMediaType {
				continue // a registry that ignored the filter
			}
			id, named := d.Annotations[AnnotationKeyID]
			switch n, ok := trusted[id]; {
			case !named:
				if unnamed == maxChecked {
					continue
				}
				unnamed++
			case !ok || n == maxChecked:
				continue
			default:
				trusted[id]++
			}
			candidates = append(candidates, d)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, fmt.Errorf("list signatures: %w", err)
	}
	if listed == 0 {
		return nil, fmt.Errorf("%w: the artifact has no Sigstore bundle referrer (sign it with modelctl sign)", ErrNoSignature)
	}
	var reasons []string
	for _, r := range candidates {
		keyID, err := verifyReferrer(ctx, repo, r, subject, manifest, keys)
		if err == nil {
			return &Verification{Subject: subject, Referrer: r, KeyID: keyID}, nil
		}
		if len(reasons) < 8 {
			reasons = append(reasons, fmt.Sprintf("%s: %v", r.Digest, err))
		}
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("%w: %d signature(s) listed, all by other keys: it does not verify with any trusted key", ErrInvalidSignature, listed)
	}
	return nil, fmt.Errorf("%w: %d signature(s) listed, %d by a trusted or unnamed key checked; it does not verify with any trusted key: %s", ErrInvalidSignature, listed, len(candidates), strings.Join(reasons, "; "))
}

func verifyReferrer(ctx context.Context, repo *remote.Repository, r, subject ocispec.Descriptor, manifest []byte, keys []crypto.PublicKey) (string, error) {
	if r.MediaType != ocispec.MediaTypeImageManifest {
		return "", fmt.Errorf("referrer media type %q, want an image manifest", r.MediaType)
	}
	raw, err := fetchBounded(ctx, repo, r, maxReferrerManifest)
	if err != nil {
		return "", err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("parse referrer manifest: %w", err)
	}
	switch {
	case m.ArtifactType != BundleMediaType:
		return "", fmt.Errorf("artifactType %q", m.ArtifactType)
	case m.Subject == nil || m.Subject.Digest != subject.Digest:
		return "", errors.New("its subject is not this artifact")
	case len(m.Layers) != 1 || m.Layers[0].MediaType != BundleMediaType:
		return "", fmt.Errorf("want one %s layer, have %d layers", BundleMediaType, len(m.Layers))
	}
	bundle, err := fetchBounded(ctx, repo, m.Layers[0], maxBundle)
	if err != nil {
		return "", fmt.Errorf("fetch bundle: %w", err)
	}
	return verifyBundle(bundle, manifest, subject.Digest, keys)
}

// Policy is a verification requirement: when Required, an artifact must be
// signed by one of Keys.
type Policy struct {
	Required bool
	Keys     []crypto.PublicKey
}

// Require enforces policy on ref before anything is downloaded: it returns
// the digest to pull, which is ref's manifest verified to be signed by a
// trusted key, or an error wrapping ErrNoSignature or ErrInvalidSignature.
// With policy.Required false it resolves nothing and returns "" (pull by
// ref as given). Pull and sync call it first and, on success, fetch
// exactly the returned digest, so nothing is written for an unsigned or
// wrongly signed artifact and a tag moved between check and pull cannot
// substitute other content.
func Require(ctx context.Context, ref string, policy Policy, opts Options) (digest.Digest, error) {
	if !policy.Required {
		return "", nil
	}
	v, err := Verify(ctx, ref, policy.Keys, opts)
	if err != nil {
		return "", fmt.Errorf("signature required: %w", err)
	}
	return v.Subject.Digest, nil
}

// NewPolicy is the policy a command line or a config section asks for:
// required, with the trusted public keys read from keyFiles. Requiring a
// signature without a key is refused (nothing could ever verify), and so is
// a key given without requiring signatures (a check silently not done).
func NewPolicy(required bool, keyFiles ...string) (Policy, error) {
	switch {
	case !required && len(keyFiles) == 0:
		return Policy{}, nil
	case !required:
		return Policy{}, errors.New("a signing key is given but signatures are not required: require them, or drop the key")
	}
	keys, err := LoadPublicKeys(keyFiles...)
	if err != nil {
		return Policy{}, fmt.Errorf("signature required: %w", err)
	}
	return Policy{Required: true, Keys: keys}, nil
}
