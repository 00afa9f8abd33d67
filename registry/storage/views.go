package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
)

// Reads for views of a whole repository (the web UI): one listing and one
// read per tag rather than the stat, stat and read that Tags followed by
// ResolveTag cost, which on S3 is three requests per tag.

// ListTagDigests returns every current tag of repository name with the
// digest it points to, from a listing of the tag links (the source of
// truth; TagDigests reads the tag index instead), reading up to parallel
// tag links at once. A tag deleted while it is read is left out.
func (s *Store) ListTagDigests(ctx context.Context, name string, parallel int) (map[string]digest.Digest, error) {
	if w, ok := s.d.(Walker); ok {
		return s.walkTagDigests(ctx, w, name, parallel)
	}
	entries, err := s.d.List(ctx, tagsPath(name))
	if err != nil {
		if IsNotFound(err) {
			if ok, _ := s.RepositoryExists(ctx, name); ok {
				return map[string]digest.Digest{}, nil
			}
			return nil, fmt.Errorf("%w: %s", ErrNameUnknown, name)
		}
		return nil, err
	}
	var links []tagLink
	for _, tag := range entries {
		if ValidateTag(tag) == nil { // else not a tag directory of ours
			links = append(links, tagLink{tag: tag, path: tagCurrentPath(name, tag)})
		}
	}
	out := make(map[string]digest.Digest, len(links))
	if err := s.readTagLinks(ctx, name, links, parallel, out); err != nil {
		return nil, err
	}
	return out, nil
}

// tagLink is a tag's current link to read, with the version the driver
// listed it at ("" when unknown).
type tagLink struct {
	tag, path, version string
}

// readTagLinks reads up to parallel links at once into out, remembering
// each under its version. A link deleted meanwhile is left out.
func (s *Store) readTagLinks(ctx context.Context, name string, links []tagLink, parallel int, out map[string]digest.Digest) error {
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan tagLink)
	for range max(1, min(parallel, len(links))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range next {
				b, err := s.d.GetContent(ctx, l.path, smallObjectLimit)
				var d digest.Digest
				if err == nil {
					if d, err = digest.Parse(strings.TrimSpace(string(b))); err != nil {
						err = fmt.Errorf("storage: corrupt tag %s/%s: %w", name, l.tag, err)
					}
				}
				mu.Lock()
				switch {
				case err == nil:
					out[l.tag] = d
					s.links.put(l.path, l.version, d)
				case IsNotFound(err):
					// Deleted since the listing (a deleted tag keeps its
					// history directory).
				case firstErr == nil:
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, l := range links {
		if ctx.Err() != nil {
			break
		}
		next <- l
	}
	close(next)
	wg.Wait()
	return errors.Join(ctx.Err(), firstErr)
}

// ReferrerSubjects returns the manifests of repository name that have had
// a referrer stored (a signature, a later benchmark), in one listing per
// digest algorithm. A subject whose referrers were all deleted may still be
// listed; Referrers then returns none.
func (s *Store) ReferrerSubjects(ctx context.Context, name string) (map[digest.Digest]bool, error) {
	out := map[digest.Digest]bool{}
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		hexes, err := s.d.List(ctx, repoPath(name)+"/_referrers/"+string(alg))
		if err != nil {
			if IsNotFound(err) {
				continue
			}
			return nil, err
		}
		for _, h := range hexes {
			d := digest.NewDigestFromEncoded(alg, h)
			if d.Validate() == nil {
				out[d] = true
			}
		}
	}
	return out, nil
}

// walkTagDigests is ListTagDigests on a driver that lists objects with their
// versions: one recursive listing of the tags, and a read only of the tag
// links whose version changed since they were last read (on S3, a
// repository of 1,000 unchanged tags costs 2-3 listing requests instead of
// 1,000 GETs). A link is read again whenever its version differs, so what
// is returned is never older than the listing.
func (s *Store) walkTagDigests(ctx context.Context, w Walker, name string, parallel int) (map[string]digest.Digest, error) {
	root := tagsPath(name)
	infos, err := w.Walk(ctx, root)
	if err != nil {
		if IsNotFound(err) {
			if ok, _ := s.RepositoryExists(ctx, name); ok {
				return map[string]digest.Digest{}, nil
			}
			return nil, fmt.Errorf("%w: %s", ErrNameUnknown, name)
		}
		return nil, err
	}
	out := map[string]digest.Digest{}
	var stale []tagLink
	for _, fi := range infos {
		tag, ok := strings.CutSuffix(strings.TrimPrefix(fi.Path, root+"/"), "/current/link")
		if !ok || strings.Contains(tag, "/") || ValidateTag(tag) != nil {
			continue
		}
		if d, ok := s.links.get(fi.Path, fi.Version); ok {
			out[tag] = d
			continue
		}
		stale = append(stale, tagLink{tag: tag, path: fi.Path, version: fi.Version})
	}
	if err := s.readTagLinks(ctx, name, stale, parallel, out); err != nil {
		return nil, err
	}
	return out, nil
}

// maxLinkCache bounds the tag links remembered (about 200 bytes each).
const maxLinkCache = 100000

// linkCache maps a tag link's path and version to the digest it held.
// The version (an ETag) changes with the content, so a hit is never stale.
type linkCache struct {
	mu sync.Mutex
	m  map[string]cachedLink
}

type cachedLink struct {
	version string
	digest  digest.Digest
}

func (c *linkCache) get(path, version string) (digest.Digest, bool) {
	if version == "" {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.m[path]
	if !ok || l.version != version {
		return "", false
	}
	return l.digest, true
}

func (c *linkCache) put(path, version string, d digest.Digest) {
	if version == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxLinkCache {
		c.m = map[string]cachedLink{} // start over rather than grow without bound
	}
	c.m[path] = cachedLink{version: version, digest: d}
}
