package ui

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/registry/storage"
)

// Bounds: what one page may read, and what the cache may hold.
const (
	summaryCacheEntries = 20000
	maxConfigRead       = 1 << 20
	// loadParallel is how many tags are resolved and summarized at once
	// (S3 round trips overlap; the filesystem does not mind).
	loadParallel = 16
	// tagParallel is how many tag links are read at once: on S3 each is
	// one small GET whose time is mostly waiting.
	tagParallel = 16
	// signatureTTL is how long a version's signature count is reused: new
	// signatures show within this time.
	signatureTTL = 15 * time.Second
	// maxReferrersShown bounds the referrers listed on an artifact page.
	maxReferrersShown = 200
	// maxChildScan bounds the manifests looked at to find an artifact's
	// children across repositories.
	maxChildScan = 5000
)

// summary is what the lists show of one manifest. Manifests are content
// addressed, so a summary never changes and is cached by digest.
type summary struct {
	Digest       digest.Digest
	ArtifactType string
	// Size is the manifest, its config and its layers.
	Size      int64
	Files     int
	Created   time.Time
	Precision string
	Quant     string
	Format    string
	// Bench figures; NaN-free: Has* says whether each is present.
	P50       float64
	HasP50    bool
	Speedup   float64
	HasSpeed  bool
	SizeRatio float64
	HasRatio  bool
	WorstCos  float64
	HasCos    bool
	Gate      string
	Parent    digest.Digest
	ParentRef string
	// Blobs are the config and layer digests with sizes (a repository's
	// total counts each once).
	Blobs map[digest.Digest]int64
	// Err says why the manifest could not be read.
	Err string
}

func num(annotations map[string]string, key string) (float64, bool) {
	v, ok := annotations[key]
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f != f || f > 1e300 || f < -1e300 {
		return 0, false
	}
	return f, true
}

func createdOf(annotations map[string]string) time.Time {
	for _, k := range []string{manifests.AnnotationCreatedAt, manifests.AnnotationCreated} {
		if t, err := time.Parse(time.RFC3339, annotations[k]); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

func gateOf(annotations map[string]string) string {
	if annotations[manifests.AnnotationGatesOverridden] == "true" {
		return "failed (pushed anyway)"
	}
	switch annotations[manifests.AnnotationBenchPrefix+"gates.passed"] {
	case "true":
		return "passed"
	case "false":
		return "failed"
	}
	return ""
}

// summarize reads a manifest of repository name (and its config) into a
// summary. The manifest's bytes are verified by the store.
func (h *Handler) summarize(ctx context.Context, name string, d digest.Digest) summary {
	if s, ok := h.cache.get(d); ok {
		return s
	}
	s := summary{Digest: d}
	info, body, err := h.store.GetManifest(ctx, name, string(d))
	if err != nil {
		s.Err = "unreadable manifest"
		if ctx.Err() == nil && !errors.Is(err, storage.ErrManifestUnknown) {
			h.log.Warn("ui: read manifest", "name", name, "digest", d, "err", err)
		}
		return s // not cached: the next page tries again
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		s.Err = "not a JSON manifest"
		h.cache.put(d, s)
		return s
	}
	s.ArtifactType = m.ArtifactType
	s.Size = info.Size + m.Config.Size
	s.Blobs = map[digest.Digest]int64{}
	if m.Config.Digest != "" {
		s.Blobs[m.Config.Digest] = m.Config.Size
	}
	for _, l := range m.Layers {
		s.Size += l.Size
		s.Blobs[l.Digest] = l.Size
	}
	s.Files = len(m.Layers)
	a := m.Annotations
	s.Created = createdOf(a)
	s.Quant = a[manifests.AnnotationQuantizationMethod]
	s.P50, s.HasP50 = num(a, manifests.AnnotationBenchPrefix+"model.latency_ms.p50")
	s.Speedup, s.HasSpeed = num(a, manifests.AnnotationBenchPrefix+"speedup")
	s.SizeRatio, s.HasRatio = num(a, manifests.AnnotationBenchPrefix+"size_ratio")
	s.WorstCos, s.HasCos = num(a, manifests.AnnotationBenchPrefix+"quality_worst.cosine")
	s.Gate = gateOf(a)
	if p, err := storage.ParseDigest(a[manifests.AnnotationParentDigest]); err == nil {
		s.Parent = p
	}
	s.ParentRef = a[manifests.AnnotationParentRef]
	if m.Config.MediaType == manifests.MediaTypeConfig && m.Config.Size > 0 && m.Config.Size <= maxConfigRead {
		if cfg, err := h.readConfig(ctx, name, m.Config); err == nil {
			s.Precision = cfg.Config.Precision
			s.Format = cfg.Config.Format
			if s.Quant == "" {
				s.Quant = cfg.Config.Quantization
			}
			if s.Created.IsZero() && cfg.Descriptor.CreatedAt != nil {
				s.Created = cfg.Descriptor.CreatedAt.UTC()
			}
		} else if ctx.Err() != nil {
			return s
		}
	}
	h.cache.put(d, s)
	return s
}

// readConfig reads and verifies a ModelPack config blob.
func (h *Handler) readConfig(ctx context.Context, name string, desc v1.Descriptor) (*manifests.Model, error) {
	rc, _, err := h.store.OpenBlob(ctx, name, desc.Digest, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != desc.Size || desc.Digest.Algorithm().FromBytes(b) != desc.Digest {
		return nil, fmt.Errorf("config %s does not match its descriptor", desc.Digest)
	}
	var cfg manifests.Model
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// tagRow is one tag of a repository with its manifest's summary.
type tagRow struct {
	Tag string
	summary
	Signatures int
}

// loadTags resolves every tag of name and summarizes what it points at,
// loadParallel at a time. Signature counts are added when withSigs, for
// the versions that have referrers at all (one listing tells which).
func (h *Handler) loadTags(ctx context.Context, name string, withSigs bool) ([]tagRow, error) {
	digests, err := h.store.TagDigests(ctx, name, tagParallel)
	if err != nil {
		return nil, err
	}
	var withRefs map[digest.Digest]bool
	if withSigs {
		if withRefs, err = h.store.ReferrerSubjects(ctx, name); err != nil {
			return nil, err
		}
	}
	rows := make([]tagRow, 0, len(digests))
	for tag, d := range digests {
		rows = append(rows, tagRow{Tag: tag, summary: summary{Digest: d}})
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < min(loadParallel, len(rows)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d := rows[i].Digest
				rows[i].summary = h.summarize(ctx, name, d)
				if withRefs[d] {
					rows[i].Signatures = len(h.signatures(ctx, name, d))
				}
			}
		}()
	}
	for i := range rows {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Newest first; tags of one version stay together, in name order.
	sort.Slice(rows, func(i, j int) bool {
		if !rows[i].Created.Equal(rows[j].Created) {
			return rows[i].Created.After(rows[j].Created)
		}
		return rows[i].Tag < rows[j].Tag
	})
	return rows, nil
}

// What package signing writes (a test holds them equal): the registry
// does not import the signer.
const (
	bundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	annotationKeyID = "dev.modelctl.signature.key-id"
)

// sigInfo is one signature referrer: the key it names (a claim, not
// verified here) and when it was made.
type sigInfo struct {
	Digest  digest.Digest
	KeyID   string
	Created string
}

type sigEntry struct {
	at   time.Time
	sigs []sigInfo
}

// signatures lists the signature referrers of d, reusing a listing for
// signatureTTL.
func (h *Handler) signatures(ctx context.Context, name string, d digest.Digest) []sigInfo {
	key := name + "@" + string(d)
	if e, ok := h.cache.sigs(key); ok && time.Since(e.at) < signatureTTL {
		return e.sigs
	}
	refs, err := h.store.Referrers(ctx, name, d, bundleMediaType)
	if err != nil {
		return nil
	}
	var out []sigInfo
	for _, r := range refs {
		if len(out) >= maxReferrersShown {
			break
		}
		out = append(out, sigInfo{Digest: r.Digest, KeyID: r.Annotations[annotationKeyID], Created: r.Annotations[v1.AnnotationCreated]})
	}
	h.cache.putSigs(key, sigEntry{at: time.Now(), sigs: out})
	return out
}

// summaryCache is a bounded LRU of summaries by digest, and of signature
// listings by repository and digest.
type summaryCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[string]*list.Element
}

type cacheItem struct {
	key string
	val any
}

func newSummaryCache(max int) *summaryCache {
	return &summaryCache{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *summaryCache) lookup(key string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*cacheItem).val, true
}

func (c *summaryCache) store(key string, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		e.Value.(*cacheItem).val = v
		c.ll.MoveToFront(e)
		return
	}
	c.items[key] = c.ll.PushFront(&cacheItem{key: key, val: v})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*cacheItem).key)
	}
}

func (c *summaryCache) get(d digest.Digest) (summary, bool) {
	v, ok := c.lookup("m\x00" + string(d))
	if !ok {
		return summary{}, false
	}
	return v.(summary), true
}

func (c *summaryCache) put(d digest.Digest, s summary) { c.store("m\x00"+string(d), s) }

func (c *summaryCache) sigs(key string) (sigEntry, bool) {
	v, ok := c.lookup("s\x00" + key)
	if !ok {
		return sigEntry{}, false
	}
	return v.(sigEntry), true
}

func (c *summaryCache) putSigs(key string, e sigEntry) { c.store("s\x00"+key, e) }
