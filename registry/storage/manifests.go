package storage

import (
	"github.com/modelctl/modelctl/registry/api"

	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types the registry checks the references of. Any other JSON
// manifest is stored as long as its descriptors are well formed.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// ManifestInfo describes a stored manifest.
type ManifestInfo struct {
	Digest    digest.Digest
	MediaType string
	Size      int64
	// Subject is the digest of the manifest this one refers to, if any.
	Subject digest.Digest
}

type revisionLink struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
}

// manifestFields are the parts of any manifest or index the registry reads.
type manifestFields struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       *v1.Descriptor    `json:"config"`
	Layers       []v1.Descriptor   `json:"layers"`
	Manifests    []v1.Descriptor   `json:"manifests"`
	Subject      *v1.Descriptor    `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

// TagMove is one entry of a tag's history.
type TagMove = api.TagMove

// PutManifestRequest is a manifest push.
type PutManifestRequest struct {
	Name string
	// Reference is a tag or a digest.
	Reference string
	// Tags are further tags to point at the manifest (the `tag` query
	// parameter of a push by digest).
	Tags []string
	// ContentType is the request's Content-Type header.
	ContentType string
	Body        []byte
	// User is recorded in the tag history.
	User string
}

// PutManifest verifies and stores a manifest, links it into the repository,
// records its subject for the referrers API and moves any tags to it.
func (s *Store) PutManifest(ctx context.Context, req PutManifestRequest) (ManifestInfo, error) {
	if int64(len(req.Body)) > s.MaxManifestSize {
		return ManifestInfo{}, fmt.Errorf("%w: %d bytes, limit %d", ErrManifestTooLarge, len(req.Body), s.MaxManifestSize)
	}
	var dgst digest.Digest
	tags := append([]string(nil), req.Tags...)
	if strings.Contains(req.Reference, ":") {
		want, err := ParseDigest(req.Reference)
		if err != nil {
			return ManifestInfo{}, err
		}
		dgst = want.Algorithm().FromBytes(req.Body)
		if dgst != want {
			return ManifestInfo{}, fmt.Errorf("%w: got %s, want %s", ErrDigestInvalid, dgst, want)
		}
	} else {
		if err := ValidateTag(req.Reference); err != nil {
			return ManifestInfo{}, err
		}
		dgst = digest.SHA256.FromBytes(req.Body)
		tags = append([]string{req.Reference}, tags...)
	}
	for _, t := range tags {
		if err := ValidateTag(t); err != nil {
			return ManifestInfo{}, err
		}
	}

	m, mediaType, err := parseManifest(req.ContentType, req.Body)
	if err != nil {
		return ManifestInfo{}, err
	}
	if err := s.checkReferences(ctx, req.Name, m); err != nil {
		return ManifestInfo{}, err
	}

	info := ManifestInfo{Digest: dgst, MediaType: mediaType, Size: int64(len(req.Body))}
	if _, err := s.d.Stat(ctx, blobDataPath(dgst)); err != nil {
		if !IsNotFound(err) {
			return ManifestInfo{}, err
		}
		if err := s.d.PutContent(ctx, blobDataPath(dgst), req.Body); err != nil {
			return ManifestInfo{}, err
		}
	}
	link, _ := json.Marshal(revisionLink{Digest: dgst, MediaType: mediaType, Size: info.Size})
	if err := s.d.PutContent(ctx, revisionLinkPath(req.Name, dgst), link); err != nil {
		return ManifestInfo{}, err
	}
	if m.Subject != nil {
		info.Subject = m.Subject.Digest
		if err := s.putReferrer(ctx, req.Name, m, info); err != nil {
			return ManifestInfo{}, err
		}
	}
	for _, t := range tags {
		if _, err := s.MoveTag(ctx, req.Name, t, dgst, "", req.User); err != nil {
			return ManifestInfo{}, err
		}
	}
	return info, nil
}

// parseManifest checks that body is a JSON manifest whose mediaType agrees
// with the request's Content-Type, and returns the media type to serve.
func parseManifest(contentType string, body []byte) (*manifestFields, string, error) {
	var m manifestFields
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, "", fmt.Errorf("%w: not a JSON manifest: %v", ErrManifestInvalid, err)
	}
	if dec.More() {
		return nil, "", fmt.Errorf("%w: trailing data after the JSON document", ErrManifestInvalid)
	}
	ct := contentType
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	mediaType := m.MediaType
	switch {
	case mediaType != "" && ct != "" && ct != mediaType:
		return nil, "", fmt.Errorf("%w: Content-Type %q does not match the manifest's mediaType %q", ErrManifestInvalid, ct, mediaType)
	case mediaType == "":
		mediaType = ct
	}
	if mediaType == "" {
		return nil, "", fmt.Errorf("%w: no mediaType and no Content-Type", ErrManifestInvalid)
	}
	switch mediaType {
	case v1.MediaTypeImageManifest, mediaTypeDockerManifest:
		if m.Config == nil {
			return nil, "", fmt.Errorf("%w: image manifest without config", ErrManifestInvalid)
		}
		if m.Manifests != nil {
			return nil, "", fmt.Errorf("%w: image manifest with a manifests list", ErrManifestInvalid)
		}
	case v1.MediaTypeImageIndex, mediaTypeDockerManifestList:
		if m.Config != nil || m.Layers != nil {
			return nil, "", fmt.Errorf("%w: index with config or layers", ErrManifestInvalid)
		}
	}
	all := append([]v1.Descriptor(nil), m.Layers...)
	all = append(all, m.Manifests...)
	if m.Config != nil {
		all = append(all, *m.Config)
	}
	if m.Subject != nil {
		all = append(all, *m.Subject)
	}
	for _, d := range all {
		if err := d.Digest.Validate(); err != nil {
			return nil, "", fmt.Errorf("%w: descriptor digest %q: %v", ErrManifestInvalid, d.Digest, err)
		}
		if d.Size < 0 {
			return nil, "", fmt.Errorf("%w: descriptor %s has negative size", ErrManifestInvalid, d.Digest)
		}
	}
	return &m, mediaType, nil
}

// checkReferences refuses a manifest whose config, layers or child manifests
// are not in the repository. Non-distributable layers are never pushed and
// a subject may be missing, so neither is checked.
func (s *Store) checkReferences(ctx context.Context, name string, m *manifestFields) error {
	blobs := append([]v1.Descriptor(nil), m.Layers...)
	if m.Config != nil {
		blobs = append(blobs, *m.Config)
	}
	for _, d := range blobs {
		if strings.Contains(d.MediaType, "nondistributable") || d.MediaType == mediaTypeDockerForeignLayer {
			continue
		}
		info, err := s.StatBlob(ctx, name, d.Digest)
		if err != nil {
			if errors.Is(err, ErrBlobUnknown) {
				return fmt.Errorf("%w: %s", ErrManifestBlob, d.Digest)
			}
			return err
		}
		if info.Size != d.Size {
			return fmt.Errorf("%w: descriptor of %s says %d bytes, blob has %d", ErrManifestInvalid, d.Digest, d.Size, info.Size)
		}
	}
	for _, d := range m.Manifests {
		if _, err := s.d.Stat(ctx, revisionLinkPath(name, d.Digest)); err != nil {
			if IsNotFound(err) {
				return fmt.Errorf("%w: manifest %s", ErrManifestBlob, d.Digest)
			}
			return err
		}
	}
	return nil
}

// ResolveManifest returns the stored manifest a tag or digest names.
func (s *Store) ResolveManifest(ctx context.Context, name, reference string) (ManifestInfo, error) {
	var dgst digest.Digest
	if strings.Contains(reference, ":") {
		d, err := ParseDigest(reference)
		if err != nil {
			return ManifestInfo{}, err
		}
		dgst = d
	} else {
		if err := ValidateTag(reference); err != nil {
			return ManifestInfo{}, err
		}
		d, _, err := s.tagCurrent(ctx, name, reference)
		if err != nil {
			return ManifestInfo{}, err
		}
		dgst = d
	}
	var link revisionLink
	if err := s.getJSON(ctx, revisionLinkPath(name, dgst), &link); err != nil {
		if IsNotFound(err) {
			return ManifestInfo{}, fmt.Errorf("%w: %s", ErrManifestUnknown, reference)
		}
		return ManifestInfo{}, err
	}
	return ManifestInfo{Digest: dgst, MediaType: link.MediaType, Size: link.Size}, nil
}

// GetManifest returns a manifest's description and content.
func (s *Store) GetManifest(ctx context.Context, name, reference string) (ManifestInfo, []byte, error) {
	info, err := s.ResolveManifest(ctx, name, reference)
	if err != nil {
		return ManifestInfo{}, nil, err
	}
	body, err := s.d.GetContent(ctx, blobDataPath(info.Digest), s.MaxManifestSize)
	if err != nil {
		if IsNotFound(err) {
			return ManifestInfo{}, nil, fmt.Errorf("%w: %s", ErrManifestUnknown, reference)
		}
		return ManifestInfo{}, nil, err
	}
	// The content is addressed by its digest; a store that returns other
	// bytes is corrupt, and the client must never see them.
	if got := info.Digest.Algorithm().FromBytes(body); got != info.Digest {
		return ManifestInfo{}, nil, fmt.Errorf("storage: manifest %s is corrupt on %s storage (content hashes to %s)", info.Digest, s.d.Name(), got)
	}
	return info, body, nil
}

// DeleteManifest removes a manifest from a repository, with every tag that
// points to it and its entry in its subject's referrers.
func (s *Store) DeleteManifest(ctx context.Context, name string, dgst digest.Digest, user string) error {
	info, body, err := s.GetManifest(ctx, name, string(dgst))
	if err != nil {
		return err
	}
	tags, err := s.Tags(ctx, name, -1, "")
	if err != nil && !errors.Is(err, ErrNameUnknown) {
		return err
	}
	for _, t := range tags {
		cur, _, err := s.tagCurrent(ctx, name, t)
		if err == nil && cur == info.Digest {
			if err := s.DeleteTag(ctx, name, t, user); err != nil && !errors.Is(err, ErrManifestUnknown) {
				return err
			}
		}
	}
	if m, _, err := parseManifest(info.MediaType, body); err == nil && m.Subject != nil {
		if err := ignoreNotFound(s.d.Delete(ctx, referrerLinkPath(name, m.Subject.Digest, info.Digest))); err != nil {
			return err
		}
	}
	return ignoreNotFound(s.d.Delete(ctx, revisionLinkPath(name, info.Digest)))
}

// Referrers lists the manifests in repository name whose subject is subject,
// optionally only those of one artifactType.
func (s *Store) Referrers(ctx context.Context, name string, subject digest.Digest, artifactType string) ([]v1.Descriptor, error) {
	entries, err := s.d.List(ctx, referrersPath(name, subject))
	if err != nil {
		if IsNotFound(err) {
			return []v1.Descriptor{}, nil
		}
		return nil, err
	}
	refs := make([]storedReferrer, 0, len(entries))
	for _, e := range entries {
		var d storedReferrer
		if err := s.getJSON(ctx, referrersPath(name, subject)+"/"+e, &d); err != nil {
			if IsNotFound(err) {
				continue // deleted while listing
			}
			return nil, err
		}
		if artifactType != "" && d.ArtifactType != artifactType {
			continue
		}
		refs = append(refs, d)
	}
	// Oldest first: referrers pushed later (junk aimed at a verifier's
	// budget) come after the signatures they would hide. Entries stored
	// before the time was recorded sort first, in listing order.
	sort.SliceStable(refs, func(i, j int) bool { return refs[i].Stored.Before(refs[j].Stored) })
	out := make([]v1.Descriptor, len(refs))
	for i, r := range refs {
		out[i] = r.Descriptor
	}
	return out, nil
}

// storedReferrer is a referrer's entry: its descriptor, and when this
// registry first stored it (not part of the descriptor served).
type storedReferrer struct {
	v1.Descriptor
	Stored time.Time `json:"dev.modelctl.stored,omitempty"`
}

func (s *Store) putReferrer(ctx context.Context, name string, m *manifestFields, info ManifestInfo) error {
	artifactType := m.ArtifactType
	if artifactType == "" && m.Config != nil {
		artifactType = m.Config.MediaType
	}
	p := referrerLinkPath(name, m.Subject.Digest, info.Digest)
	// A manifest pushed again keeps its first time, so re-pushing an old
	// referrer cannot move it in the listing.
	if _, err := s.d.Stat(ctx, p); err == nil {
		return nil
	}
	d := storedReferrer{Descriptor: v1.Descriptor{
		MediaType:    info.MediaType,
		Digest:       info.Digest,
		Size:         info.Size,
		ArtifactType: artifactType,
		Annotations:  m.Annotations,
	}, Stored: time.Now().UTC()}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return s.d.PutContent(ctx, p, b)
}
