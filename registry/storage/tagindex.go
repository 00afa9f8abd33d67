package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// The tag index lets a view of a whole repository (the web UI) read every
// tag with one object instead of a listing of every tag's objects (on S3,
// a recursive listing of several objects per tag that costs as much as the
// rest of a page). The tag links stay the source of truth: the
// distribution API reads and writes them as before, and the index is kept
// beside them so that it is never older than a completed move:
//
//  1. a move first writes a marker, tagmoves/<nanos>-<rand>-<tag>;
//  2. then writes the link (compare-and-swap, as always);
//  3. then updates the index with compare-and-swap: read the index and its
//     version, read the tag's link, write the index if the version is
//     unchanged. The link is read after step 2, so whichever update
//     commits last holds a value no older than every link write whose
//     update has committed;
//  4. and deletes its marker only once an update committed.
//
// A reader lists the markers, reads the index, and reads the link of every
// tag that has a marker. So every move that completed before the read
// began is seen, one that crashed between steps 2 and 3 too (its marker
// stays), and the cost is a listing, the index and a link per move in
// flight. A marker older than staleTagMove is folded into the index by the
// next reader (step 3 and 4 on the crashed writer's behalf).
//
// An index that is missing (a repository from before the index, or one
// whose index was deleted to force a rebuild), corrupt or of another
// format is rebuilt from a full listing of the links, by whoever finds it
// so, and written with compare-and-swap (create-only when missing). A
// writer finds it so in step 3 after its link write, so its rebuild reads
// its own link; a reader's rebuild can be older than a move in flight, but
// that move's own step 3 then updates the rebuilt index.
//
// Two cases these reads cannot see, both bounded by the reconcile of
// TagDigests (a listing of the links on a Store's first view of a
// repository and then every TagIndexReconcile, 5 minutes): a well-formed
// index left wrong by a writer that does not keep it (a registry or client
// from before the index, or a hand edit), and a writer stalled for more
// than staleTagMove between its marker and its link write, whose marker a
// reader folded in before the link changed and which then dies before its
// own step 3.

// tagIndexFormat is the index's format; an index of another one is rebuilt.
const tagIndexFormat = 1

// tagIndexLimit bounds the index object (about 100 bytes a tag: 16 MiB is
// some 150,000 tags). A repository whose index would be larger gets an
// overflow index, and its views list the links as before. A variable for
// tests.
var tagIndexLimit int64 = 16 << 20

// tagIndexRetries bounds step 3 under contention. An update that gives up
// leaves its marker, so readers still see the move; only their cost grows
// (one link read per marker) until a later update or reader folds it in.
const tagIndexRetries = 64

// staleTagMove is the age after which a marker is taken for one whose
// writer died: a live move takes milliseconds between its marker and its
// index update.
const staleTagMove = 2 * time.Minute

// finishTimeout bounds steps 3 and 4, which run even when the request that
// moved the tag is cancelled (the link is written by then).
const finishTimeout = 30 * time.Second

// tagIndexParallel is how many links a rebuild or a reader reads at once.
const tagIndexParallel = 16

// tagIndexed reports whether the Store keeps the tag index on its driver:
// not where compare-and-swap is emulated (see ConditionalWriter).
func (s *Store) tagIndexed() bool {
	cw, ok := s.d.(ConditionalWriter)
	return !ok || cw.ConditionalWrites()
}

func tagIndexPath(name string) string { return repoPath(name) + "/_manifests/tagindex" }

func tagMovesPath(name string) string { return repoPath(name) + "/_manifests/tagmoves" }

// tagIndex is the JSON of the index object.
type tagIndex struct {
	Format int `json:"format"`
	// Overflow says the tag table outgrew tagIndexLimit: readers list the
	// links. It is never turned back, since a conversion from a listing
	// could be older than a move whose writer saw the overflow index.
	Overflow bool `json:"overflow,omitempty"`
	// Serial counts the writes, so that no two writes store the same bytes:
	// on S3 the version is an ETag, the MD5 of the content, and an index
	// written back to earlier bytes would let a compare-and-swap based on
	// those earlier bytes succeed.
	Serial uint64                   `json:"serial"`
	Tags   map[string]digest.Digest `json:"tags"`
}

// errTagIndexInvalid marks an index to rebuild: missing, corrupt or of
// another format.
var errTagIndexInvalid = errors.New("tag index needs a rebuild")

// readTagIndex returns the index of name and the version it was read at.
// The version is read first, so a concurrent write makes it older than the
// content and the compare-and-swap that follows fails rather than
// overwrite what it did not see.
func (s *Store) readTagIndex(ctx context.Context, name string) (tagIndex, string, error) {
	p := tagIndexPath(name)
	fi, err := s.d.Stat(ctx, p)
	if err != nil {
		if IsNotFound(err) {
			return tagIndex{}, "", fmt.Errorf("%w: %s has none", errTagIndexInvalid, name)
		}
		return tagIndex{}, "", fmt.Errorf("read tag index of %s: %w", name, err)
	}
	b, err := s.d.GetContent(ctx, p, tagIndexLimit)
	var tooLarge *TooLargeError
	switch {
	case IsNotFound(err):
		return tagIndex{}, "", fmt.Errorf("%w: %s has none", errTagIndexInvalid, name)
	case errors.As(err, &tooLarge):
		return tagIndex{}, fi.Version, fmt.Errorf("%w: %v", errTagIndexInvalid, err)
	case err != nil:
		return tagIndex{}, "", fmt.Errorf("read tag index of %s: %w", name, err)
	}
	var idx tagIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return tagIndex{}, fi.Version, fmt.Errorf("%w: %s: corrupt: %v", errTagIndexInvalid, name, err)
	}
	if idx.Format != tagIndexFormat {
		return tagIndex{}, fi.Version, fmt.Errorf("%w: %s: format %d, not %d", errTagIndexInvalid, name, idx.Format, tagIndexFormat)
	}
	if !idx.Overflow {
		if idx.Tags == nil {
			return tagIndex{}, fi.Version, fmt.Errorf("%w: %s: no tag table", errTagIndexInvalid, name)
		}
		for tag, d := range idx.Tags {
			if ValidateTag(tag) != nil || d.Validate() != nil {
				return tagIndex{}, fi.Version, fmt.Errorf("%w: %s: bad entry %q", errTagIndexInvalid, name, tag)
			}
		}
	}
	return idx, fi.Version, nil
}

// putTagIndex writes tags as the index of name if its version is still
// ifVersion ("" : if there is none), as an overflow index when too large.
// serial is the Serial of the index being replaced (0 when there is none or
// it is unreadable: a random start then keeps the bytes new).
func (s *Store) putTagIndex(ctx context.Context, name string, tags map[string]digest.Digest, serial uint64, ifVersion string) error {
	if serial == 0 {
		serial = rand.Uint64() >> 1
	}
	b, err := json.Marshal(tagIndex{Format: tagIndexFormat, Serial: serial + 1, Tags: tags})
	if err != nil {
		return err
	}
	if int64(len(b)) > tagIndexLimit {
		b, _ = json.Marshal(tagIndex{Format: tagIndexFormat, Serial: serial + 1, Overflow: true})
	}
	return s.d.PutContentIf(ctx, tagIndexPath(name), b, ifVersion)
}

// tagMove is a marker of a move in progress.
type tagMove struct {
	entry string // its name in tagMovesPath
	tag   string
	at    time.Time
}

func parseTagMove(entry string) (tagMove, bool) {
	// <20 digits>-<8 hex>-<tag>
	if len(entry) < 31 || entry[20] != '-' || entry[29] != '-' {
		return tagMove{}, false
	}
	nanos, err := strconv.ParseInt(entry[:20], 10, 64)
	if err != nil || nanos < 0 {
		return tagMove{}, false
	}
	tag := entry[30:]
	if ValidateTag(tag) != nil {
		return tagMove{}, false
	}
	return tagMove{entry: entry, tag: tag, at: time.Unix(0, nanos)}, true
}

// startTagMove writes the marker of a move of tag (step 1); none where the
// Store keeps no index (an empty tagMove, which finishTagMoves skips).
func (s *Store) startTagMove(ctx context.Context, name, tag string) (tagMove, error) {
	if !s.tagIndexed() {
		return tagMove{}, nil
	}
	now := time.Now()
	mv := tagMove{entry: fmt.Sprintf("%020d-%s-%s", now.UnixNano(), newUploadID()[:8], tag), tag: tag, at: now}
	if err := s.d.PutContent(ctx, tagMovesPath(name)+"/"+mv.entry, []byte(tag)); err != nil {
		return tagMove{}, fmt.Errorf("move tag %s/%s: mark the move: %w", name, tag, err)
	}
	return mv, nil
}

// finishTagMoves updates the index with the current links of the tags of
// moves (step 3) and, once that committed, deletes their markers (step 4).
// It runs to the end even if ctx is cancelled. A failure leaves the
// markers, which keeps readers right, so it is not an error of the move.
func (s *Store) finishTagMoves(ctx context.Context, name string, moves ...tagMove) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	tags := make([]string, 0, len(moves))
	for _, mv := range moves {
		if mv.entry != "" {
			tags = append(tags, mv.tag)
		}
	}
	if len(tags) == 0 {
		return nil
	}
	if err := s.updateTagIndex(ctx, name, tags); err != nil {
		return err
	}
	var errs []error
	for _, mv := range moves {
		if mv.entry == "" {
			continue
		}
		if err := ignoreNotFound(s.d.Delete(ctx, tagMovesPath(name)+"/"+mv.entry)); err != nil {
			errs = append(errs, fmt.Errorf("delete tag move marker %s of %s: %w", mv.entry, name, err))
		}
	}
	return errors.Join(errs...)
}

// updateTagIndex sets the entries of tags in the index of name to their
// links as read now, after the index version (step 3); a missing or invalid
// index is rebuilt from a listing instead.
func (s *Store) updateTagIndex(ctx context.Context, name string, tags []string) error {
	var lastErr error
	for attempt := 0; attempt < tagIndexRetries; attempt++ {
		if attempt > 0 {
			// Jitter, so that writers contending for one index spread out.
			wait := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond)))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		idx, version, err := s.readTagIndex(ctx, name)
		if errors.Is(err, errTagIndexInvalid) {
			listed, err := s.ListTagDigests(ctx, name, tagIndexParallel)
			if err != nil {
				return fmt.Errorf("rebuild tag index of %s: %w", name, err)
			}
			lastErr = s.putTagIndex(ctx, name, listed, 0, version)
			if errors.Is(lastErr, ErrPreconditionFailed) {
				continue // someone else wrote it first: update theirs
			}
			return lastErr
		}
		if err != nil {
			return err
		}
		if idx.Overflow {
			return nil // readers list the links
		}
		changed := false
		for _, tag := range tags {
			d, err := s.readTagLink(ctx, name, tag)
			switch {
			case IsNotFound(err):
				if _, ok := idx.Tags[tag]; ok {
					delete(idx.Tags, tag)
					changed = true
				}
			case err != nil:
				return fmt.Errorf("update tag index of %s: %w", name, err)
			case idx.Tags[tag] != d:
				idx.Tags[tag] = d
				changed = true
			}
		}
		if !changed {
			return nil
		}
		lastErr = s.putTagIndex(ctx, name, idx.Tags, idx.Serial, version)
		if !errors.Is(lastErr, ErrPreconditionFailed) {
			return lastErr
		}
	}
	return fmt.Errorf("update tag index of %s: %w (gave up after %d attempts)", name, lastErr, tagIndexRetries)
}

// readTagLink reads the digest of a tag's link; a missing link is a
// *PathNotFoundError.
func (s *Store) readTagLink(ctx context.Context, name, tag string) (digest.Digest, error) {
	b, err := s.d.GetContent(ctx, tagCurrentPath(name, tag), smallObjectLimit)
	if err != nil {
		return "", err
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("storage: corrupt tag %s/%s: %w", name, tag, err)
	}
	return d, nil
}

// listTagMoves returns the markers of moves of name in progress (or whose
// writer died).
func (s *Store) listTagMoves(ctx context.Context, name string) ([]tagMove, error) {
	entries, err := s.d.List(ctx, tagMovesPath(name))
	if err != nil {
		if IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list tag moves of %s: %w", name, err)
	}
	var out []tagMove
	for _, e := range entries {
		if mv, ok := parseTagMove(e); ok {
			out = append(out, mv)
		}
	}
	return out, nil
}

// TagDigests returns every current tag of repository name with the digest
// it points to: the tag index, with the links of the tags being moved read
// again (see the top of this file), so every move completed before the
// call is seen. The first call for a repository in a process, and then one
// every TagIndexReconcile, lists the links instead (ListTagDigests) and
// rewrites the index if it differs: that repairs an index left wrong by a
// writer that does not keep it (an older registry or client sharing the
// bucket) or by hand. parallel bounds the links read at once.
func (s *Store) TagDigests(ctx context.Context, name string, parallel int) (map[string]digest.Digest, error) {
	if !s.tagIndexed() {
		return s.ListTagDigests(ctx, name, parallel)
	}
	if s.reconcileDue(name) {
		return s.reconcileTagIndex(ctx, name, parallel)
	}
	moves, err := s.listTagMoves(ctx, name)
	if err != nil {
		return nil, err
	}
	idx, version, err := s.readTagIndex(ctx, name)
	if errors.Is(err, errTagIndexInvalid) {
		listed, err := s.ListTagDigests(ctx, name, parallel)
		if err != nil {
			return nil, err
		}
		// Best effort: a failure here only means the next view lists again.
		_ = s.putTagIndex(ctx, name, listed, 0, version)
		return listed, nil
	}
	if err != nil {
		return nil, err
	}
	if idx.Overflow {
		return s.ListTagDigests(ctx, name, parallel)
	}
	if len(moves) == 0 {
		return idx.Tags, nil
	}
	seen := map[string]bool{}
	var links []tagLink
	var stale []tagMove
	for _, mv := range moves {
		if time.Since(mv.at) > staleTagMove {
			stale = append(stale, mv)
		}
		if !seen[mv.tag] {
			seen[mv.tag] = true
			links = append(links, tagLink{tag: mv.tag, path: tagCurrentPath(name, mv.tag)})
			delete(idx.Tags, mv.tag) // a link that is gone leaves no entry
		}
	}
	if err := s.readTagLinks(ctx, name, links, parallel, idx.Tags); err != nil {
		return nil, err
	}
	if len(stale) > 0 {
		// The writers of these died between their link and their index
		// update: do it for them, so later views read no link.
		_ = s.finishTagMoves(ctx, name, stale...)
	}
	return idx.Tags, nil
}

// DefaultTagIndexReconcile is the default Store.TagIndexReconcile.
const DefaultTagIndexReconcile = 5 * time.Minute

// maxReconciled bounds the repositories whose last reconcile is remembered.
const maxReconciled = 10000

// reconcileDue reports whether TagDigests of name should list the links,
// and if so counts it as done (a failed one is retried by unmarking).
func (s *Store) reconcileDue(name string) bool {
	every := s.TagIndexReconcile
	if every == 0 {
		every = DefaultTagIndexReconcile
	}
	s.reconcileMu.Lock()
	defer s.reconcileMu.Unlock()
	if last, ok := s.reconciled[name]; ok && (every < 0 || time.Since(last) < every) {
		return false
	}
	if s.reconciled == nil || len(s.reconciled) >= maxReconciled {
		s.reconciled = map[string]time.Time{}
	}
	s.reconciled[name] = time.Now()
	return true
}

func (s *Store) unmarkReconciled(name string) {
	s.reconcileMu.Lock()
	defer s.reconcileMu.Unlock()
	delete(s.reconciled, name)
}

// reconcileTagIndex lists the links of name, rewrites the index if it
// differs (compare-and-swap on the version read before the listing, so a
// move whose update commits meanwhile is not overwritten, and one whose
// link is written after the listing updates the index after this), folds
// in the markers of dead writers, and returns the listing.
func (s *Store) reconcileTagIndex(ctx context.Context, name string, parallel int) (map[string]digest.Digest, error) {
	idx, version, err := s.readTagIndex(ctx, name)
	valid := err == nil
	if err != nil && !errors.Is(err, errTagIndexInvalid) {
		s.unmarkReconciled(name)
		return nil, err
	}
	listed, err := s.ListTagDigests(ctx, name, parallel)
	if err != nil {
		s.unmarkReconciled(name)
		return nil, err
	}
	if !valid || (!idx.Overflow && !sameTags(idx.Tags, listed)) {
		// Best effort: a move meanwhile makes it fail, and that move
		// brings the index up to date itself.
		_ = s.putTagIndex(ctx, name, listed, idx.Serial, version)
	}
	if moves, err := s.listTagMoves(ctx, name); err == nil {
		var stale []tagMove
		for _, mv := range moves {
			if time.Since(mv.at) > staleTagMove {
				stale = append(stale, mv)
			}
		}
		if len(stale) > 0 {
			_ = s.finishTagMoves(ctx, name, stale...)
		}
	}
	return listed, nil
}

func sameTags(a, b map[string]digest.Digest) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
