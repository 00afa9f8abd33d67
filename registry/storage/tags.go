package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
)

// maxTagMoveRetries bounds the compare-and-swap loop of MoveTag under
// contention from other writers.
const maxTagMoveRetries = 16

func (s *Store) tagCurrent(ctx context.Context, name, tag string) (digest.Digest, string, error) {
	p := tagCurrentPath(name, tag)
	fi, err := s.d.Stat(ctx, p)
	if err != nil {
		if IsNotFound(err) {
			return "", "", fmt.Errorf("%w: tag %s", ErrManifestUnknown, tag)
		}
		return "", "", err
	}
	b, err := s.d.GetContent(ctx, p, smallObjectLimit)
	if err != nil {
		if IsNotFound(err) {
			return "", "", fmt.Errorf("%w: tag %s", ErrManifestUnknown, tag)
		}
		return "", "", err
	}
	d, err := digest.Parse(string(b))
	if err != nil {
		return "", "", fmt.Errorf("storage: corrupt tag %s/%s: %w", name, tag, err)
	}
	return d, fi.Version, nil
}

// ResolveTag returns the digest a tag points to.
func (s *Store) ResolveTag(ctx context.Context, name, tag string) (digest.Digest, error) {
	d, _, err := s.tagCurrent(ctx, name, tag)
	return d, err
}

// MoveTag points tag at to, and keeps the tag index (tagindex.go). When from is not empty the tag must currently
// point at from (a compare-and-swap, for rollback); otherwise any current
// value is replaced. The move is appended to the tag's history. It returns
// the digest the tag pointed to before ("" if it was new).
func (s *Store) MoveTag(ctx context.Context, name, tag string, to, from digest.Digest, user string) (digest.Digest, error) {
	if err := ValidateTag(tag); err != nil {
		return "", err
	}
	// A tag already at to (a push of the same manifest again) is no move:
	// neither the link nor the index is written, as before the index.
	if cur, _, err := s.tagCurrent(ctx, name, tag); err == nil && cur == to && (from == "" || from == cur) {
		return cur, nil
	}
	mv, err := s.startTagMove(ctx, name, tag)
	if err != nil {
		return "", err
	}
	// Whatever happened to the link, the index is brought up to it.
	defer s.finishTagMoves(ctx, name, mv) //nolint:errcheck // a failure leaves the marker, which readers follow
	for attempt := 0; attempt < maxTagMoveRetries; attempt++ {
		cur, version, err := s.tagCurrent(ctx, name, tag)
		if err != nil && !errors.Is(err, ErrManifestUnknown) {
			return "", err
		}
		if from != "" && cur != from {
			return cur, fmt.Errorf("%w: tag %s points to %s, not %s", ErrPreconditionFailed, tag, cur, from)
		}
		if cur == to {
			return cur, nil
		}
		err = s.d.PutContentIf(ctx, tagCurrentPath(name, tag), []byte(to), version)
		if errors.Is(err, ErrPreconditionFailed) {
			continue // another writer moved it; read again
		}
		if err != nil {
			return "", err
		}
		if err := s.appendHistory(ctx, name, TagMove{Time: time.Now().UTC(), Tag: tag, From: cur, To: to, User: user}); err != nil {
			return cur, err
		}
		return cur, nil
	}
	return "", fmt.Errorf("move tag %s/%s: %w (gave up after %d attempts)", name, tag, ErrPreconditionFailed, maxTagMoveRetries)
}

// DeleteTag removes a tag; the removal is recorded in its history and the
// tag index.
func (s *Store) DeleteTag(ctx context.Context, name, tag, user string) error {
	cur, _, err := s.tagCurrent(ctx, name, tag)
	if err != nil {
		return err
	}
	mv, err := s.startTagMove(ctx, name, tag)
	if err != nil {
		return err
	}
	defer s.finishTagMoves(ctx, name, mv) //nolint:errcheck // a failure leaves the marker, which readers follow
	if err := s.d.Delete(ctx, tagCurrentPath(name, tag)); err != nil {
		if IsNotFound(err) {
			return fmt.Errorf("%w: tag %s", ErrManifestUnknown, tag)
		}
		return err
	}
	return s.appendHistory(ctx, name, TagMove{Time: time.Now().UTC(), Tag: tag, From: cur, User: user})
}

func (s *Store) appendHistory(ctx context.Context, name string, mv TagMove) error {
	b, err := json.Marshal(mv)
	if err != nil {
		return err
	}
	// Names sort by time; the random suffix keeps two writers in the same
	// nanosecond apart.
	entry := fmt.Sprintf("%s/%020d-%s", tagHistoryPath(name, mv.Tag), mv.Time.UnixNano(), newUploadID()[:8])
	return s.d.PutContent(context.WithoutCancel(ctx), entry, b)
}

// TagHistory returns every move of a tag, oldest first.
func (s *Store) TagHistory(ctx context.Context, name, tag string) ([]TagMove, error) {
	if err := ValidateTag(tag); err != nil {
		return nil, err
	}
	entries, err := s.d.List(ctx, tagHistoryPath(name, tag))
	if err != nil {
		if IsNotFound(err) {
			return nil, fmt.Errorf("%w: tag %s has no history", ErrManifestUnknown, tag)
		}
		return nil, err
	}
	out := make([]TagMove, 0, len(entries))
	for _, e := range entries {
		var mv TagMove
		if err := s.getJSON(ctx, tagHistoryPath(name, tag)+"/"+e, &mv); err != nil {
			return nil, err
		}
		out = append(out, mv)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// Tags lists a repository's current tags in lexical order, at most n
// (n < 0: all) after last.
func (s *Store) Tags(ctx context.Context, name string, n int, last string) ([]string, error) {
	entries, err := s.d.List(ctx, tagsPath(name))
	if err != nil {
		if IsNotFound(err) {
			if ok, _ := s.RepositoryExists(ctx, name); ok {
				return []string{}, nil
			}
			return nil, fmt.Errorf("%w: %s", ErrNameUnknown, name)
		}
		return nil, err
	}
	tags := make([]string, 0, len(entries))
	for _, t := range entries {
		// A tag that was deleted keeps its history directory.
		if _, err := s.d.Stat(ctx, tagCurrentPath(name, t)); err == nil {
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	return paginate(tags, n, last), nil
}
