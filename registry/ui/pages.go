package ui

import (
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/registry"
	"github.com/modelctl/modelctl/registry/storage"
)

// ---- repositories ----

type repoRow struct {
	Name   string
	URL    string
	Tags   int
	Latest time.Time
	Size   int64
}

func (h *Handler) serveRepositories(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	names, err := h.store.Catalog(ctx, -1, "")
	if err != nil {
		h.storageFail(w, r, "list repositories", err)
		return
	}
	var rows []repoRow
	for _, name := range names {
		if !h.visible(r, name) {
			continue
		}
		tags, err := h.loadTags(ctx, name, false)
		if err != nil {
			if errors.Is(err, storage.ErrNameUnknown) {
				continue
			}
			h.storageFail(w, r, "repository "+name, err)
			return
		}
		row := repoRow{Name: name, URL: h.repoURL(name), Tags: len(tags)}
		blobs := map[digest.Digest]int64{}
		for _, t := range tags {
			if t.Created.After(row.Latest) {
				row.Latest = t.Created
			}
			for d, n := range t.Blobs {
				blobs[d] = n
			}
		}
		for _, n := range blobs {
			row.Size += n
		}
		rows = append(rows, row)
	}
	h.render(w, r, http.StatusOK, "repositories", "Repositories", rows)
}

// ---- one repository ----

type repoPage struct {
	Name           string
	URL            string
	Rows           []tagRow
	RowsHTML       template.HTML
	OptionsHTML    template.HTML
	Chart          *chart
	Tags           []string
	CompareURL     string
	DeploymentsURL string
	Deployed       map[digest.Digest]int
}

func (h *Handler) serveRepository(w http.ResponseWriter, r *http.Request, name string) {
	ctx := r.Context()
	rows, err := h.loadTags(ctx, name, true)
	if err != nil {
		h.storageFail(w, r, "repository "+name, err)
		return
	}
	p := repoPage{Name: name, URL: h.repoURL(name), Rows: rows, CompareURL: h.repoURL(name) + "/-/compare",
		DeploymentsURL: h.repoURL(name) + "/-/deployments", Deployed: map[digest.Digest]int{}}
	for _, t := range rows {
		p.Tags = append(p.Tags, t.Tag)
	}
	sort.Strings(p.Tags)
	p.Chart = newChart(rows)
	if ds, err := registry.Deployments(ctx, h.store, name); err == nil {
		for _, d := range ds {
			p.Deployed[d.Digest]++
		}
	}
	p.RowsHTML = h.tagRowsHTML(name, rows, p.Deployed)
	p.OptionsHTML = optionsHTML(p.Tags)
	h.render(w, r, http.StatusOK, "repository", name, p)
}

// ---- one artifact ----

type kv struct{ Key, Value string }

type fileRow struct {
	Path      string
	Size      int64
	MediaType string
	Digest    digest.Digest
}

type benchTable struct {
	Title string
	Rows  []kv
}

type link struct {
	Name   string
	Digest digest.Digest
	URL    string
	Tags   []string
	Note   string
	Prec   string
}

type moveRow struct {
	Time     time.Time
	From, To digest.Digest
	FromURL  string
	ToURL    string
	User     string
	Kind     string
}

type tagHistory struct {
	Tag   string
	Moves []moveRow
}

type refRow struct {
	Digest       digest.Digest
	ArtifactType string
	Created      string
}

type artifactPage struct {
	Name         string
	RepoURL      string
	Digest       digest.Digest
	MediaType    string
	Summary      summary
	Tags         []string
	Files        []fileRow
	Annotations  []kv
	Bench        []benchTable
	Parent       *link
	Children     []link
	Signatures   []sigInfo
	Referrers    []refRow
	History      []tagHistory
	Deployments  []registry.DeploymentTarget
	CompareURL   string
	ParentCmpURL string
}

// fullManifest reads and parses one manifest of name.
func (h *Handler) fullManifest(r *http.Request, name, ref string) (storage.ManifestInfo, *v1.Manifest, error) {
	info, body, err := h.store.GetManifest(r.Context(), name, ref)
	if err != nil {
		return info, nil, err
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return info, nil, errors.Join(storage.ErrManifestUnknown, err)
	}
	return info, &m, nil
}

func (h *Handler) serveArtifact(w http.ResponseWriter, r *http.Request, name string, d digest.Digest) {
	ctx := r.Context()
	info, m, err := h.fullManifest(r, name, string(d))
	if err != nil {
		h.storageFail(w, r, "artifact "+name+"@"+string(d), err)
		return
	}
	p := artifactPage{Name: name, RepoURL: h.repoURL(name), Digest: d, MediaType: info.MediaType,
		Summary: h.summarize(ctx, name, d), CompareURL: h.repoURL(name) + "/-/compare"}
	for _, l := range m.Layers {
		path := l.Annotations[manifests.AnnotationFilepath]
		if path == "" {
			path = l.Annotations[v1.AnnotationTitle]
		}
		p.Files = append(p.Files, fileRow{Path: path, Size: l.Size, MediaType: l.MediaType, Digest: l.Digest})
	}
	p.Annotations, p.Bench = annotationTables(m.Annotations)
	tags, err := h.loadTags(ctx, name, false)
	if err != nil {
		h.storageFail(w, r, "repository "+name, err)
		return
	}
	for _, t := range tags {
		if t.Digest == d {
			p.Tags = append(p.Tags, t.Tag)
		}
	}
	sort.Strings(p.Tags)
	p.Parent = h.parentLink(r, name, p.Summary)
	if p.Parent != nil && p.Parent.Name == name {
		p.ParentCmpURL = p.CompareURL + "?a=" + string(p.Parent.Digest) + "&b=" + string(d)
	}
	p.Children = h.children(r, name, d)
	p.Signatures = h.signatures(ctx, name, d)
	if refs, err := h.store.Referrers(ctx, name, d, ""); err == nil {
		for _, ref := range refs {
			if len(p.Referrers) >= maxReferrersShown {
				break
			}
			p.Referrers = append(p.Referrers, refRow{Digest: ref.Digest, ArtifactType: ref.ArtifactType, Created: ref.Annotations[v1.AnnotationCreated]})
		}
	}
	// The history of every tag that points here, and, in a repository
	// small enough to read every history, of the tags that did once (a
	// version rolled back from is found by the tag it left).
	pointsHere := map[string]bool{}
	for _, t := range p.Tags {
		pointsHere[t] = true
	}
	for _, t := range tags {
		if !pointsHere[t.Tag] && len(tags) > maxHistoryScan {
			continue
		}
		moves, err := h.store.TagHistory(ctx, name, t.Tag)
		if err != nil || (!pointsHere[t.Tag] && !mentions(moves, d)) {
			continue
		}
		p.History = append(p.History, tagHistory{Tag: t.Tag, Moves: h.moveRows(name, moves)})
	}
	sort.Slice(p.History, func(i, j int) bool { return p.History[i].Tag < p.History[j].Tag })
	if ds, err := registry.Deployments(ctx, h.store, name); err == nil {
		for _, dep := range ds {
			if dep.Digest == d {
				p.Deployments = append(p.Deployments, dep)
			}
		}
	}
	h.render(w, r, http.StatusOK, "artifact", name+"@"+short(d), p)
}

// maxHistoryScan is the most tags whose histories an artifact page reads
// to find the tags that pointed at it once.
const maxHistoryScan = 100

func mentions(moves []storage.TagMove, d digest.Digest) bool {
	for _, mv := range moves {
		if mv.From == d || mv.To == d {
			return true
		}
	}
	return false
}

// moveRows labels a tag's moves: created, moved, rolled back (to a digest
// the tag held before), deleted.
func (h *Handler) moveRows(name string, moves []storage.TagMove) []moveRow {
	seen := map[digest.Digest]bool{}
	out := make([]moveRow, 0, len(moves))
	for _, mv := range moves {
		row := moveRow{Time: mv.Time, From: mv.From, To: mv.To, User: mv.User}
		switch {
		case mv.To == "":
			row.Kind = "deleted"
		case mv.From == "":
			row.Kind = "created"
		case seen[mv.To]:
			row.Kind = "rollback"
		default:
			row.Kind = "moved"
		}
		if mv.From != "" {
			row.FromURL = h.artifactURL(name, mv.From)
			seen[mv.From] = true
		}
		if mv.To != "" {
			row.ToURL = h.artifactURL(name, mv.To)
		}
		out = append(out, row)
	}
	// Newest first, as one reads during an incident.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// annotationTables returns every annotation sorted by key, and the bench
// report regrouped into one table per top-level section.
func annotationTables(a map[string]string) ([]kv, []benchTable) {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	all := make([]kv, 0, len(keys))
	sections := map[string]*benchTable{}
	var order []string
	for _, k := range keys {
		all = append(all, kv{k, a[k]})
		rest, ok := strings.CutPrefix(k, manifests.AnnotationBenchPrefix)
		if !ok {
			continue
		}
		sec, field, found := strings.Cut(rest, ".")
		if !found {
			sec, field = "summary", rest
		}
		t, ok := sections[sec]
		if !ok {
			t = &benchTable{Title: sec}
			sections[sec] = t
			order = append(order, sec)
		}
		t.Rows = append(t.Rows, kv{field, a[k]})
	}
	sort.SliceStable(order, func(i, j int) bool { return benchRank(order[i]) < benchRank(order[j]) })
	bench := make([]benchTable, 0, len(order))
	for _, s := range order {
		bench = append(bench, *sections[s])
	}
	return all, bench
}

func benchRank(section string) int {
	for i, s := range []string{"summary", "model", "baseline", "quality_worst", "quality", "gates"} {
		if s == section {
			return i
		}
	}
	return 100
}

// parentLink finds the parent of an artifact: in the repository its
// reference names when this registry has it and the user may pull it, else
// in this repository, else it is shown unlinked.
func (h *Handler) parentLink(r *http.Request, name string, s summary) *link {
	if s.Parent == "" {
		return nil
	}
	var candidates []string
	if repo := repoOfRef(s.ParentRef); repo != "" && repo != name {
		candidates = append(candidates, repo)
	}
	candidates = append(candidates, name)
	for _, c := range candidates {
		if storage.ValidateName(c) != nil || !h.visible(r, c) {
			continue
		}
		if _, err := h.store.ResolveManifest(r.Context(), c, string(s.Parent)); err == nil {
			ps := h.summarize(r.Context(), c, s.Parent)
			return &link{Name: c, Digest: s.Parent, URL: h.artifactURL(c, s.Parent), Note: s.ParentRef, Prec: ps.Precision}
		}
	}
	return &link{Digest: s.Parent, Note: s.ParentRef + " (not in this registry, or not visible to you)"}
}

// repoOfRef returns the repository of "host[:port]/repo[:tag|@digest]".
func repoOfRef(ref string) string {
	_, rest, ok := strings.Cut(ref, "/")
	if !ok {
		return ""
	}
	rest, _, _ = strings.Cut(rest, "@")
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		rest = rest[:i]
	}
	return rest
}

// children lists the tagged manifests, in every repository the user may
// pull, whose parent is d.
func (h *Handler) children(r *http.Request, name string, d digest.Digest) []link {
	ctx := r.Context()
	all, err := h.store.Catalog(ctx, -1, "")
	if err != nil {
		return nil
	}
	// The artifact's own repository first: most children live there, and
	// it is read even when the scan bound stops the others.
	names := []string{name}
	for _, n := range all {
		if n != name {
			names = append(names, n)
		}
	}
	byDigest := map[string]*link{}
	var out []*link
	scanned := 0
	for _, n := range names {
		if scanned > maxChildScan || ctx.Err() != nil {
			break
		}
		if !h.visible(r, n) {
			continue
		}
		tags, err := h.loadTags(ctx, n, false)
		if err != nil {
			continue
		}
		scanned += len(tags)
		for _, t := range tags {
			if t.Parent != d {
				continue
			}
			key := n + "@" + string(t.Digest)
			l, ok := byDigest[key]
			if !ok {
				l = &link{Name: n, Digest: t.Digest, URL: h.artifactURL(n, t.Digest), Prec: t.Precision}
				if l.Prec == "" {
					l.Prec = t.Quant
				}
				byDigest[key] = l
				out = append(out, l)
			}
			l.Tags = append(l.Tags, t.Tag)
		}
	}
	res := make([]link, len(out))
	for i, l := range out {
		sort.Strings(l.Tags)
		res[i] = *l
	}
	return res
}

// ---- compare ----

type cmpSide struct {
	Ref     string
	Digest  digest.Digest
	URL     string
	Summary summary
	Files   map[string]fileRow
	Bench   map[string]string
}

type cmpRow struct {
	Key   string
	A, B  string
	Delta string
	Same  bool
}

type comparePage struct {
	Name    string
	RepoURL string
	Action  string
	Tags    []string
	A, B    string
	Err     string
	Left    *cmpSide
	Right   *cmpSide
	Figures []cmpRow
	Files   []cmpRow
	Bench   []cmpRow
}

func (h *Handler) serveCompare(w http.ResponseWriter, r *http.Request, name string) {
	ctx := r.Context()
	q := r.URL.Query()
	p := comparePage{Name: name, RepoURL: h.repoURL(name), Action: h.repoURL(name) + "/-/compare", A: q.Get("a"), B: q.Get("b")}
	tags, err := h.store.Tags(ctx, name, -1, "")
	if err != nil {
		h.storageFail(w, r, "repository "+name, err)
		return
	}
	p.Tags = tags
	if p.A == "" || p.B == "" {
		h.render(w, r, http.StatusOK, "compare", "Compare · "+name, p)
		return
	}
	left, err := h.compareSide(r, name, p.A)
	if err != nil {
		p.Err = "A: " + err.Error()
		h.render(w, r, http.StatusNotFound, "compare", "Compare · "+name, p)
		return
	}
	right, err := h.compareSide(r, name, p.B)
	if err != nil {
		p.Err = "B: " + err.Error()
		h.render(w, r, http.StatusNotFound, "compare", "Compare · "+name, p)
		return
	}
	p.Left, p.Right = left, right
	ls, rs := left.Summary, right.Summary
	fig := func(key string, a, b string, an, bn float64, numeric bool) {
		row := cmpRow{Key: key, A: a, B: b, Same: a == b}
		if numeric && an != 0 {
			row.Delta = strconv.FormatFloat(bn/an, 'f', 3, 64) + "×"
		}
		p.Figures = append(p.Figures, row)
	}
	fig("digest", string(ls.Digest), string(rs.Digest), 0, 0, false)
	fig("created", when(ls.Created), when(rs.Created), 0, 0, false)
	fig("precision", ls.Precision, rs.Precision, 0, 0, false)
	fig("quantization", ls.Quant, rs.Quant, 0, 0, false)
	fig("files", strconv.Itoa(ls.Files), strconv.Itoa(rs.Files), float64(ls.Files), float64(rs.Files), true)
	fig("size", humanBytes(ls.Size), humanBytes(rs.Size), float64(ls.Size), float64(rs.Size), true)
	fig("p50 latency (ms)", optNum(ls.P50, ls.HasP50), optNum(rs.P50, rs.HasP50), ls.P50, rs.P50, ls.HasP50 && rs.HasP50)
	fig("speedup vs parent", optNum(ls.Speedup, ls.HasSpeed), optNum(rs.Speedup, rs.HasSpeed), 0, 0, false)
	fig("size vs parent", optNum(ls.SizeRatio, ls.HasRatio), optNum(rs.SizeRatio, rs.HasRatio), 0, 0, false)
	fig("worst cosine", optNum(ls.WorstCos, ls.HasCos), optNum(rs.WorstCos, rs.HasCos), 0, 0, false)
	fig("gates", ls.Gate, rs.Gate, 0, 0, false)
	paths := map[string]bool{}
	for k := range left.Files {
		paths[k] = true
	}
	for k := range right.Files {
		paths[k] = true
	}
	for _, k := range sortedKeys(paths) {
		a, aok := left.Files[k]
		b, bok := right.Files[k]
		row := cmpRow{Key: k, A: "—", B: "—"}
		if aok {
			row.A = humanBytes(a.Size)
		}
		if bok {
			row.B = humanBytes(b.Size)
		}
		row.Same = aok && bok && a.Digest == b.Digest
		switch {
		case row.Same:
			row.Delta = "same content"
		case aok && bok:
			row.Delta = "differs"
			if a.Size > 0 {
				row.Delta += " (" + strconv.FormatFloat(float64(b.Size)/float64(a.Size), 'f', 3, 64) + "×)"
			}
		case aok:
			row.Delta = "only in A"
		default:
			row.Delta = "only in B"
		}
		p.Files = append(p.Files, row)
	}
	keys := map[string]bool{}
	for k := range left.Bench {
		keys[k] = true
	}
	for k := range right.Bench {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		a, b := left.Bench[k], right.Bench[k]
		row := cmpRow{Key: k, A: a, B: b, Same: a == b}
		af, aerr := strconv.ParseFloat(a, 64)
		bf, berr := strconv.ParseFloat(b, 64)
		if aerr == nil && berr == nil && af != 0 && !row.Same {
			row.Delta = strconv.FormatFloat(bf/af, 'f', 3, 64) + "×"
		}
		p.Bench = append(p.Bench, row)
	}
	h.render(w, r, http.StatusOK, "compare", "Compare · "+name, p)
}

func (h *Handler) compareSide(r *http.Request, name, ref string) (*cmpSide, error) {
	if strings.Contains(ref, ":") {
		if _, err := storage.ParseDigest(ref); err != nil {
			return nil, errors.New("not a tag or digest")
		}
	} else if storage.ValidateTag(ref) != nil {
		return nil, errors.New("not a tag or digest")
	}
	info, m, err := h.fullManifest(r, name, ref)
	if err != nil {
		return nil, errors.New(ref + " is not in " + name)
	}
	s := &cmpSide{Ref: ref, Digest: info.Digest, URL: h.artifactURL(name, info.Digest),
		Summary: h.summarize(r.Context(), name, info.Digest), Files: map[string]fileRow{}, Bench: manifests.Benchmark(m.Annotations)}
	for _, l := range m.Layers {
		path := l.Annotations[manifests.AnnotationFilepath]
		if path == "" {
			path = l.Annotations[v1.AnnotationTitle]
		}
		s.Files[path] = fileRow{Path: path, Size: l.Size, MediaType: l.MediaType, Digest: l.Digest}
	}
	return s, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- deployments ----

type depRow struct {
	registry.DeploymentTarget
	URL  string
	Tags []string
}

type depByDigest struct {
	Digest digest.Digest
	URL    string
	Tags   []string
	Hosts  []string
}

type deploymentsPage struct {
	Name     string
	RepoURL  string
	Rows     []depRow
	ByDigest []depByDigest
}

func (h *Handler) serveDeployments(w http.ResponseWriter, r *http.Request, name string) {
	ctx := r.Context()
	ds, err := registry.Deployments(ctx, h.store, name)
	if err != nil {
		h.storageFail(w, r, "deployments of "+name, err)
		return
	}
	tags, err := h.loadTags(ctx, name, false)
	if err != nil {
		h.storageFail(w, r, "repository "+name, err)
		return
	}
	tagsOf := map[digest.Digest][]string{}
	for _, t := range tags {
		tagsOf[t.Digest] = append(tagsOf[t.Digest], t.Tag)
	}
	p := deploymentsPage{Name: name, RepoURL: h.repoURL(name)}
	idx := map[digest.Digest]int{}
	for _, d := range ds {
		p.Rows = append(p.Rows, depRow{DeploymentTarget: d, URL: h.artifactURL(name, d.Digest), Tags: tagsOf[d.Digest]})
		i, ok := idx[d.Digest]
		if !ok {
			i = len(p.ByDigest)
			idx[d.Digest] = i
			p.ByDigest = append(p.ByDigest, depByDigest{Digest: d.Digest, URL: h.artifactURL(name, d.Digest), Tags: tagsOf[d.Digest]})
		}
		host := d.Host
		if !containsString(p.ByDigest[i].Hosts, host) {
			p.ByDigest[i].Hosts = append(p.ByDigest[i].Hosts, host)
		}
	}
	h.render(w, r, http.StatusOK, "deployments", "Deployments · "+name, p)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
