// Package tags moves tags and keeps their history: tag, history and
// rollback. modelctl's own registry records every move of a tag
// server-side (time, from, to, who) and moves tags with a compare-and-swap
// through its extension endpoints:
//
//	GET /v2/<name>/_modelctl/tags/<tag>/history
//	PUT /v2/<name>/_modelctl/tags/<tag>   {"digest": D, "from": F}
//
// Against any other registry (the endpoints answer 404 or 405 without an
// OCI error code), tags are moved by pushing the manifest under the tag,
// and the history is kept client-side, in a file under the user's config
// directory; results say which.
package tags

import (
	"github.com/modelctl/modelctl/registry/api"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/client"
)

// Options configure a Tagger.
type Options struct {
	// Client is the registry connection to use (its transport, TLS,
	// credentials and tokens). Required.
	Client *client.Client
	// HistoryDir holds client-side histories. Default: the user config
	// directory + /modelctl/history.
	HistoryDir string
	// User is recorded in client-side history. Default: user@hostname.
	User string
}

// Move is one move of a tag (the type of the registry extension).
type Move = api.TagMove

// Source says where a tag's history lives.
type Source string

const (
	// SourceRegistry is the registry's own history (modelctl serve).
	SourceRegistry Source = "registry"
	// SourceClient is a file on this machine: the registry records nothing.
	SourceClient Source = "client"
)

// Result is the outcome of a tag move.
type Result struct {
	Reference string        `json:"reference"`
	Tag       string        `json:"tag"`
	From      digest.Digest `json:"from,omitempty"`
	To        digest.Digest `json:"to"`
	History   Source        `json:"history"`
	// HistoryFile is the client-side history file, when History is client.
	HistoryFile string `json:"historyFile,omitempty"`
}

// History is the list of moves of one tag, oldest first.
type History struct {
	Reference string        `json:"reference"`
	Tag       string        `json:"tag"`
	Current   digest.Digest `json:"current,omitempty"`
	Source    Source        `json:"source"`
	File      string        `json:"file,omitempty"`
	Moves     []Move        `json:"history"`
}

// Tagger moves tags on registries.
type Tagger struct {
	opts Options
	c    *client.Client
}

// New returns a Tagger.
func New(opts Options) (*Tagger, error) {
	if opts.HistoryDir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return nil, fmt.Errorf("find the user config directory for client-side tag history: %w", err)
		}
		opts.HistoryDir = filepath.Join(base, "modelctl", "history")
	}
	if opts.User == "" {
		opts.User = defaultUser()
	}
	if opts.Client == nil {
		return nil, errors.New("tags: no registry connection (Options.Client is nil)")
	}
	return &Tagger{opts: opts, c: opts.Client}, nil
}

func defaultUser() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}

// target is one tag of one repository, with an authenticated HTTP client.
type target struct {
	ref client.Reference
	ep  *client.Endpoint
}

func (t *Tagger) target(ctx context.Context, ref client.Reference, push bool) (*target, context.Context, error) {
	if ref.S3 {
		return nil, ctx, fmt.Errorf("%s: tags of s3:// targets are not supported: move them through a registry serving the bucket (modelctl serve --storage s3://...)", ref)
	}
	ep, ctx, err := t.c.Endpoint(ctx, ref, push)
	if err != nil {
		return nil, ctx, err
	}
	return &target{ref: ref, ep: ep}, ctx, nil
}

// noExtension reports whether an error answer means the registry lacks the
// history extension: the route is unknown (404/405 without an OCI error
// code, or UNSUPPORTED), as opposed to a known route answering that a tag
// or repository is unknown.
func noExtension(he *client.HTTPError) bool {
	return (he.Status == http.StatusNotFound || he.Status == http.StatusMethodNotAllowed) && (he.Code == "" || he.Code == "UNSUPPORTED")
}

// do sends a request and returns the response for a 2xx status; anything
// else is a *client.HTTPError.
func (tg *target) do(ctx context.Context, method, path string, body []byte, header http.Header) (*http.Response, error) {
	return tg.ep.Do(ctx, method, path, body, header)
}

// manifest fetches the manifest under reference (tag or digest), checked
// against want when given, with its digest and media type. A tag that does
// not exist gives client.ErrNotFound.
func (tg *target) manifest(ctx context.Context, reference string, want digest.Digest) ([]byte, digest.Digest, string, error) {
	return tg.ep.Manifest(ctx, reference, want)
}

// current returns the digest tag points at, "" when the tag does not exist.
func (tg *target) current(ctx context.Context, tag string) (digest.Digest, error) {
	_, d, _, err := tg.manifest(ctx, tag, "")
	if errors.Is(err, client.ErrNotFound) {
		return "", nil
	}
	return d, err
}

// errNoExtension: the registry keeps no tag history.
var errNoExtension = errors.New("the registry has no tag history extension")

// errMoved: a compare-and-swap lost against another writer.
var errMoved = errors.New("the tag moved meanwhile")

// extMove moves tag with the extension; from, when set, makes it a
// compare-and-swap.
func (tg *target) extMove(ctx context.Context, tag string, to, from digest.Digest) (digest.Digest, error) {
	body, _ := json.Marshal(api.TagMoveRequest{Digest: to, From: from})
	resp, err := tg.do(ctx, http.MethodPut, "/v2/"+tg.ref.Repository+"/_modelctl/tags/"+tag, body, http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		var he *client.HTTPError
		if errors.As(err, &he) {
			switch {
			case noExtension(he):
				return "", errNoExtension
			case he.Status == http.StatusPreconditionFailed:
				return "", fmt.Errorf("%w: %s", errMoved, he.Message)
			}
		}
		return "", err
	}
	defer resp.Body.Close()
	var out api.TagMoveResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return "", fmt.Errorf("tag %s: bad answer from the registry: %w", tag, err)
	}
	if out.To != to {
		return "", fmt.Errorf("tag %s: the registry moved it to %s, not %s", tag, out.To, to)
	}
	return out.From, nil
}

// extHistory reads a tag's history from the extension.
func (tg *target) extHistory(ctx context.Context, tag string) ([]Move, error) {
	resp, err := tg.do(ctx, http.MethodGet, "/v2/"+tg.ref.Repository+"/_modelctl/tags/"+tag+"/history", nil, nil)
	if err != nil {
		var he *client.HTTPError
		if errors.As(err, &he) {
			switch {
			case noExtension(he):
				return nil, errNoExtension
			case he.Status == http.StatusNotFound:
				return nil, nil // a known route: no such tag, no history
			}
		}
		return nil, err
	}
	defer resp.Body.Close()
	var out api.TagHistory
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("history of %s: bad answer from the registry: %w", tag, err)
	}
	if out.Tag != tag {
		// Something answered 200 that is not the extension.
		return nil, errNoExtension
	}
	return out.History, nil
}

// putManifest points tag at a manifest by pushing it under the tag.
func (tg *target) putManifest(ctx context.Context, tag string, raw []byte, mediaType string) error {
	_, err := tg.ep.PutManifest(ctx, tag, raw, mediaType)
	return err
}

func validTag(ref client.Reference, tag string) error {
	if _, err := client.ParseReference(ref.Registry + "/" + ref.Repository + ":" + tag); err != nil || tag == "" || strings.ContainsAny(tag, "@/:") {
		return fmt.Errorf("tag %q: want [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", tag)
	}
	return nil
}

// Tag points newTag (in src's repository) at what src names.
func (t *Tagger) Tag(ctx context.Context, src client.Reference, newTag string) (*Result, error) {
	if err := validTag(src, newTag); err != nil {
		return nil, fmt.Errorf("tag: %w", err)
	}
	if src.Reference() == "" {
		return nil, fmt.Errorf("tag %s: name a tag or a digest to point %s at", src, newTag)
	}
	tg, ctx, err := t.target(ctx, src, true)
	if err != nil {
		return nil, err
	}
	raw, d, mt, err := tg.manifest(ctx, src.Reference(), src.Digest)
	if err != nil {
		return nil, fmt.Errorf("tag: resolve %s: %w", src, err)
	}
	dst := client.Reference{Registry: src.Registry, Repository: src.Repository, Tag: newTag}
	res := &Result{Reference: dst.String(), Tag: newTag, To: d, History: SourceRegistry}
	from, err := tg.extMove(ctx, newTag, d, "")
	switch {
	case err == nil:
		res.From = from
		return res, nil
	case !errors.Is(err, errNoExtension):
		return nil, fmt.Errorf("tag %s: %w", dst, err)
	}
	prev, err := tg.current(ctx, newTag)
	if err != nil {
		return nil, fmt.Errorf("tag %s: %w", dst, err)
	}
	if err := tg.putManifest(ctx, newTag, raw, mt); err != nil {
		return nil, fmt.Errorf("tag %s: %w", dst, err)
	}
	res.From = prev
	if err := t.recordClient(dst, prev, d, res); err != nil {
		return nil, err
	}
	return res, nil
}

// History returns the moves of ref's tag, oldest first.
func (t *Tagger) History(ctx context.Context, ref client.Reference) (*History, error) {
	if ref.Tag == "" || ref.Digest != "" {
		return nil, fmt.Errorf("history %s: name a tag (repo:tag), not a digest", ref)
	}
	tg, ctx, err := t.target(ctx, ref, false)
	if err != nil {
		return nil, err
	}
	return t.history(ctx, tg)
}

func (t *Tagger) history(ctx context.Context, tg *target) (*History, error) {
	ref := tg.ref
	cur, err := tg.current(ctx, ref.Tag)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", ref, err)
	}
	h := &History{Reference: ref.String(), Tag: ref.Tag, Current: cur, Source: SourceRegistry}
	moves, err := tg.extHistory(ctx, ref.Tag)
	switch {
	case err == nil:
		h.Moves = moves
		if cur == "" && len(moves) == 0 {
			return nil, fmt.Errorf("history %s: %w: no such tag and no history", ref, client.ErrNotFound)
		}
		return h, nil
	case !errors.Is(err, errNoExtension):
		return nil, fmt.Errorf("history %s: %w", ref, err)
	}
	h.Source, h.File = SourceClient, t.historyFile(ref)
	// What the registry says now is a move too when the file does not know
	// it: someone pushed from elsewhere.
	if err := t.observe(ref, cur); err != nil {
		return nil, err
	}
	if h.Moves, err = readHistory(h.File); err != nil {
		return nil, err
	}
	if cur == "" && len(h.Moves) == 0 {
		return nil, fmt.Errorf("history %s: %w: no such tag", ref, client.ErrNotFound)
	}
	return h, nil
}

// Observe records, for a registry without the history extension, that
// ref's tag points at d now (pin and sync --update call it), so that a
// later rollback knows where the tag was. On modelctl's registry it does
// nothing.
func (t *Tagger) Observe(ctx context.Context, ref client.Reference, d digest.Digest) error {
	if ref.Tag == "" || ref.S3 || d == "" {
		return nil
	}
	tg, ctx, err := t.target(ctx, ref, false)
	if err != nil {
		return err
	}
	if _, err := tg.extHistory(ctx, ref.Tag); !errors.Is(err, errNoExtension) {
		return nil
	}
	return t.observe(client.Reference{Registry: ref.Registry, Repository: ref.Repository, Tag: ref.Tag}, d)
}

func (t *Tagger) observe(ref client.Reference, cur digest.Digest) error {
	if cur == "" {
		return nil
	}
	file := t.historyFile(ref)
	moves, err := readHistory(file)
	if err != nil {
		return err
	}
	var last digest.Digest
	if len(moves) > 0 {
		last = moves[len(moves)-1].To
	}
	if last == cur {
		return nil
	}
	return appendHistory(file, Move{Time: time.Now().UTC(), Tag: ref.Tag, From: last, To: cur, User: "(seen by " + t.opts.User + ")"})
}

// Previous returns the digest a rollback from cur goes to: the tag's
// history replayed as a stack, where a move back to the digest below the
// top is a rollback (a pop) and any other move a push. Rolling back twice
// after v1, v2, v3 therefore reaches v1, not v3 again.
func Previous(moves []Move, cur digest.Digest) (digest.Digest, error) {
	var stack []digest.Digest
	for _, m := range moves {
		switch {
		case m.To == "":
			continue // a deletion; a later move re-creates the tag
		case len(stack) > 0 && stack[len(stack)-1] == m.To:
			continue
		case len(stack) > 1 && stack[len(stack)-2] == m.To:
			stack = stack[:len(stack)-1]
		default:
			stack = append(stack, m.To)
		}
	}
	if cur != "" && (len(stack) == 0 || stack[len(stack)-1] != cur) {
		stack = append(stack, cur) // moved where the history did not see
	}
	if len(stack) < 2 {
		return "", fmt.Errorf("the history has no earlier digest to roll back to (use --to DIGEST)")
	}
	return stack[len(stack)-2], nil
}

// Rollback moves ref's tag to to, or when to is empty to the digest it
// pointed at before (Previous). On modelctl's registry the move is a
// compare-and-swap: it fails if the tag moved since it was read.
func (t *Tagger) Rollback(ctx context.Context, ref client.Reference, to digest.Digest) (*Result, error) {
	if ref.Tag == "" || ref.Digest != "" {
		return nil, fmt.Errorf("rollback %s: name a tag (repo:tag), not a digest", ref)
	}
	if to != "" {
		if err := to.Validate(); err != nil {
			return nil, fmt.Errorf("rollback --to %q: %w", to, err)
		}
	}
	tg, ctx, err := t.target(ctx, ref, true)
	if err != nil {
		return nil, err
	}
	h, err := t.history(ctx, tg)
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	cur := h.Current
	if cur == "" {
		return nil, fmt.Errorf("rollback %s: %w: the tag does not exist (modelctl tag REF %s re-creates it)", ref, client.ErrNotFound, ref.Tag)
	}
	if to == "" {
		if to, err = Previous(h.Moves, cur); err != nil {
			return nil, fmt.Errorf("rollback %s: %w", ref, err)
		}
	}
	if to == cur {
		return nil, fmt.Errorf("rollback %s: the tag already points at %s", ref, to)
	}
	res := &Result{Reference: ref.String(), Tag: ref.Tag, From: cur, To: to, History: h.Source}
	if h.Source == SourceRegistry {
		if _, err := tg.extMove(ctx, ref.Tag, to, cur); err != nil {
			if errors.Is(err, errMoved) {
				return nil, fmt.Errorf("rollback %s: %w: run modelctl history %s and try again", ref, err, ref)
			}
			return nil, fmt.Errorf("rollback %s to %s: %w", ref, to, err)
		}
		return res, nil
	}
	raw, _, mt, err := tg.manifest(ctx, to.String(), to)
	if err != nil {
		return nil, fmt.Errorf("rollback %s to %s: %w", ref, to, err)
	}
	// No compare-and-swap without the extension: check just before.
	if now, err := tg.current(ctx, ref.Tag); err != nil || now != cur {
		if err == nil {
			err = fmt.Errorf("%w: it points at %s now", errMoved, now)
		}
		return nil, fmt.Errorf("rollback %s: %w", ref, err)
	}
	if err := tg.putManifest(ctx, ref.Tag, raw, mt); err != nil {
		return nil, fmt.Errorf("rollback %s to %s: %w", ref, to, err)
	}
	if err := t.recordClient(ref, cur, to, res); err != nil {
		return nil, err
	}
	return res, nil
}

func (t *Tagger) recordClient(ref client.Reference, from, to digest.Digest, res *Result) error {
	file := t.historyFile(ref)
	// Whatever the tag pointed at before, unrecorded, is a move too.
	if err := t.observe(ref, from); err != nil {
		return err
	}
	if err := appendHistory(file, Move{Time: time.Now().UTC(), Tag: ref.Tag, From: from, To: to, User: t.opts.User}); err != nil {
		return err
	}
	res.History, res.HistoryFile = SourceClient, file
	return nil
}
