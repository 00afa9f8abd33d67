package storage

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The one layout, shared by every driver and by clients that write a bucket
// directly:
//
//	blobs/<alg>/<hex[:2]>/<hex>/data                                  content, shared by all repositories
//	repositories/<name>/_layers/<alg>/<hex>/link                       blob is in <name>
//	repositories/<name>/_manifests/revisions/<alg>/<hex>/link          manifest is in <name> (JSON: digest, mediaType, size)
//	repositories/<name>/_manifests/tags/<tag>/current/link             the digest the tag points to
//	repositories/<name>/_manifests/tags/<tag>/history/<nanos>-<rand>   one JSON record per tag move
//	repositories/<name>/_manifests/tagindex                            every tag's digest in one JSON object, for views (tagindex.go)
//	repositories/<name>/_manifests/tagmoves/<nanos>-<rand>-<tag>       a tag move whose index update has not committed
//	repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>             a referrer of subject <alg>:<hex> (JSON descriptor)
//	repositories/<name>/_uploads/<id>/data, state                      an upload session
//
// Repository name components cannot start with "_", so the reserved
// directories never collide with a repository.

// NameRegexp is the repository name grammar of the distribution spec.
var NameRegexp = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// TagRegexp is the tag grammar of the distribution spec.
var TagRegexp = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// MaxNameLength bounds a repository name (host + name must stay under 255).
const MaxNameLength = 255

// ValidateName checks a repository name against the spec's grammar.
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLength || !NameRegexp.MatchString(name) {
		return fmt.Errorf("%w: %q", ErrNameInvalid, name)
	}
	return nil
}

// ValidateTag checks a tag against the spec's grammar.
func ValidateTag(tag string) error {
	if !TagRegexp.MatchString(tag) {
		return fmt.Errorf("%w: %q", ErrTagInvalid, tag)
	}
	return nil
}

// ParseDigest parses and validates a digest of a supported algorithm.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrDigestInvalid, s, err)
	}
	switch d.Algorithm() {
	case digest.SHA256, digest.SHA512:
		return d, nil
	}
	return "", fmt.Errorf("%w: %q: unsupported algorithm %s", ErrDigestInvalid, s, d.Algorithm())
}

func blobDataPath(d digest.Digest) string {
	h := d.Encoded()
	return fmt.Sprintf("blobs/%s/%s/%s/data", d.Algorithm(), h[:2], h)
}

func repoPath(name string) string { return "repositories/" + name }

func layerLinkPath(name string, d digest.Digest) string {
	return fmt.Sprintf("%s/_layers/%s/%s/link", repoPath(name), d.Algorithm(), d.Encoded())
}

func revisionLinkPath(name string, d digest.Digest) string {
	return fmt.Sprintf("%s/_manifests/revisions/%s/%s/link", repoPath(name), d.Algorithm(), d.Encoded())
}

func tagsPath(name string) string { return repoPath(name) + "/_manifests/tags" }

func tagCurrentPath(name, tag string) string { return tagsPath(name) + "/" + tag + "/current/link" }

func tagHistoryPath(name, tag string) string { return tagsPath(name) + "/" + tag + "/history" }

func referrersPath(name string, subject digest.Digest) string {
	return fmt.Sprintf("%s/_referrers/%s/%s", repoPath(name), subject.Algorithm(), subject.Encoded())
}

func referrerLinkPath(name string, subject, d digest.Digest) string {
	return referrersPath(name, subject) + "/" + string(d.Algorithm()) + "-" + d.Encoded()
}

func uploadsPath(name string) string { return repoPath(name) + "/_uploads" }

func uploadPath(name, id string) string { return uploadsPath(name) + "/" + id }

var uploadIDRegexp = regexp.MustCompile(`^[a-f0-9]{32}$`)

func validUploadID(id string) bool { return uploadIDRegexp.MatchString(id) }

// isReserved reports whether a path component is one of the layout's own.
func isReserved(component string) bool { return strings.HasPrefix(component, "_") }
