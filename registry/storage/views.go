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

// TagDigests returns every current tag of repository name with the digest
// it points to, reading up to parallel tag links at once. A tag deleted
// while it is read is left out.
func (s *Store) TagDigests(ctx context.Context, name string, parallel int) (map[string]digest.Digest, error) {
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
	parallel = max(1, min(parallel, len(entries)))
	out := make(map[string]digest.Digest, len(entries))
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan string)
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tag := range next {
				if ValidateTag(tag) != nil {
					continue // not a tag directory of ours
				}
				b, err := s.d.GetContent(ctx, tagCurrentPath(name, tag), smallObjectLimit)
				var d digest.Digest
				if err == nil {
					d, err = digest.Parse(strings.TrimSpace(string(b)))
					if err != nil {
						err = fmt.Errorf("storage: corrupt tag %s/%s: %w", name, tag, err)
					}
				}
				mu.Lock()
				switch {
				case err == nil:
					out[tag] = d
				case IsNotFound(err):
					// A deleted tag keeps its history directory.
				case firstErr == nil:
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			break
		}
		next <- e
	}
	close(next)
	wg.Wait()
	if err := errors.Join(ctx.Err(), firstErr); err != nil {
		return nil, err
	}
	return out, nil
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
