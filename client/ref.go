// Package client pushes and pulls model artifacts (see package manifests) to
// and from any OCI registry: resumable chunked uploads hashed while they are
// sent, verified parallel downloads into a local content-addressed cache,
// and atomic installation by hardlink. Credentials come from the Docker
// config file and its credential helpers (oras-go's credentials package).
package client

import (
	"fmt"
	"net"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry"

	"github.com/modelctl/modelctl/registry/storage/s3"
)

// Reference names an artifact: host[:port]/repo[:tag|@digest], or
// s3://bucket/prefix/repo[:tag|@digest] for a bucket holding the
// registry/storage layout with no registry in front of it.
type Reference struct {
	// S3 is set for s3:// references; Registry is then the bucket and
	// Prefix the first path element below it.
	S3         bool
	Registry   string
	Prefix     string
	Repository string
	Tag        string
	Digest     digest.Digest
}

// ParseReference parses REF. A reference without tag or digest is accepted
// (ls, or push with --tag); callers that need one check Reference().
func ParseReference(s string) (Reference, error) {
	if strings.ContainsAny(s, " \t\r\n\x00") {
		return Reference{}, fmt.Errorf("reference %q: contains whitespace or NUL", s)
	}
	if rest, ok := strings.CutPrefix(s, "s3://"); ok {
		bucket, rest, ok := strings.Cut(rest, "/")
		prefix, repo, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 || bucket == "" || prefix == "" {
			return Reference{}, fmt.Errorf("reference %q: want s3://bucket/prefix/repo[:tag|@digest]", s)
		}
		// Parse the repository part with a placeholder registry so that the
		// same grammar applies as for registries.
		r, err := ParseReference("s3.invalid/" + repo)
		if err != nil {
			return Reference{}, fmt.Errorf("reference %q: %w", s, err)
		}
		if strings.ContainsAny(bucket, ":@") || strings.ContainsAny(prefix, ":@") {
			return Reference{}, fmt.Errorf("reference %q: bad bucket or prefix", s)
		}
		// The bucket and prefix obey the rules of serve --storage s3://.
		if _, _, err := s3.ParseURL("s3://" + bucket + "/" + prefix); err != nil {
			return Reference{}, fmt.Errorf("reference %q: %w", s, err)
		}
		r.S3, r.Registry, r.Prefix = true, bucket, prefix
		return r, nil
	}
	if strings.Contains(s, "://") {
		return Reference{}, fmt.Errorf("reference %q: want host[:port]/repo[:tag|@digest] without a URL scheme", s)
	}
	if !strings.Contains(s, "/") {
		return Reference{}, fmt.Errorf("reference %q: want host[:port]/repo[:tag|@digest], e.g. 127.0.0.1:5000/sarai/audio-core:int8", s)
	}
	r, err := registry.ParseReference(s)
	if err != nil {
		return Reference{}, fmt.Errorf("reference %q: %w", s, err)
	}
	out := Reference{Registry: r.Registry, Repository: r.Repository}
	// oras keeps only the digest of "repo:tag@digest"; we keep the tag for
	// display but always resolve by the digest.
	if i := strings.LastIndex(s, "@"); i >= 0 {
		d := digest.Digest(s[i+1:])
		if err := d.Validate(); err != nil {
			return Reference{}, fmt.Errorf("reference %q: digest: %w", s, err)
		}
		out.Digest = d
		head := s[:i]
		if j := strings.LastIndex(head, ":"); j > strings.LastIndex(head, "/") {
			out.Tag = head[j+1:]
		}
	} else if r.Reference != "" {
		out.Tag = r.Reference
	}
	return out, nil
}

// ParseS3Location parses s3://BUCKET/PREFIX[/REPO] (ls): a bucket
// reference with no tag or digest, whose Repository may be empty.
func ParseS3Location(s string) (Reference, error) {
	rest, ok := strings.CutPrefix(strings.TrimSuffix(s, "/"), "s3://")
	if !ok {
		return Reference{}, fmt.Errorf("%q is not an s3:// location", s)
	}
	if strings.Count(rest, "/") == 1 {
		// No repository: parse with a placeholder one, then drop it.
		r, err := ParseReference("s3://" + rest + "/x")
		if err != nil {
			return Reference{}, fmt.Errorf("%q: want s3://bucket/prefix[/repo]", s)
		}
		r.Repository = ""
		return r, nil
	}
	r, err := ParseReference("s3://" + rest)
	if err != nil || r.Tag != "" || r.Digest != "" {
		return Reference{}, fmt.Errorf("%q: want s3://bucket/prefix[/repo] (no tag or digest)", s)
	}
	return r, nil
}

// ParseRegistry parses REGISTRY[/REPO] for ls and login.
func ParseRegistry(s string) (host, repo string, err error) {
	host, repo, _ = strings.Cut(strings.TrimSuffix(s, "/"), "/")
	if host == "" || strings.Contains(host, "://") {
		return "", "", fmt.Errorf("registry %q: want host[:port][/repo]", s)
	}
	r := registry.Reference{Registry: host, Repository: repo}
	if err := r.ValidateRegistry(); err != nil {
		return "", "", fmt.Errorf("registry %q: %w", s, err)
	}
	if repo != "" {
		if err := r.ValidateRepository(); err != nil {
			return "", "", fmt.Errorf("registry %q: %w", s, err)
		}
	}
	return host, repo, nil
}

// Reference returns the tag or digest to resolve, the digest when both.
func (r Reference) Reference() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}

// String formats the reference back into REF syntax.
func (r Reference) String() string {
	var b strings.Builder
	if r.S3 {
		b.WriteString("s3://" + r.Registry + "/" + r.Prefix)
	} else {
		b.WriteString(r.Registry)
	}
	b.WriteString("/" + r.Repository)
	if r.Tag != "" {
		b.WriteString(":" + r.Tag)
	}
	if r.Digest != "" {
		b.WriteString("@" + r.Digest.String())
	}
	return b.String()
}

// WithDigest returns the reference pinned to d (the tag kept for display).
func (r Reference) WithDigest(d digest.Digest) Reference { r.Digest = d; return r }

// IsLoopback reports whether host[:port] is this machine, which is spoken
// to over plain HTTP without a flag.
func IsLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
