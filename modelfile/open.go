package modelfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/modelfile/gguf"
	"github.com/modelctl/modelctl/modelfile/safetensors"
	"github.com/modelctl/modelctl/quantize/onnx"
)

// openONNX delegates to quantize/onnx, which push used before this package:
// the graph is parsed once and every external data reference checked.
func openONNX(path string) (*Model, error) {
	om, err := onnx.Open(path)
	if err != nil {
		return nil, err
	}
	data, err := om.DataFiles()
	if err != nil {
		return nil, err
	}
	st, err := statRegular(path)
	if err != nil {
		return nil, fmt.Errorf("open onnx model: %w", err)
	}
	root, base := filepath.Dir(path), filepath.Base(path)
	m := &Model{Format: FormatONNX, WeightsFormat: FormatONNX, Path: path, Root: root, Entry: base, ONNX: om,
		Files: []File{{Path: base, Source: path, Kind: KindWeight, Size: st.Size()}}}
	for _, d := range data {
		src := filepath.Join(root, filepath.FromSlash(d.Path))
		dst, err := statRegular(src)
		if err != nil {
			return nil, fmt.Errorf("open onnx model %s: external data: %w", path, err)
		}
		m.Files = append(m.Files, File{Path: d.Path, Source: src, Kind: KindWeight, Size: dst.Size(), MinSize: d.MinSize})
	}
	m.Facts = onnxFacts(om)
	return m, nil
}

func onnxFacts(om *onnx.Model) []Fact {
	var params uint64
	for _, t := range om.Graph().GetInitializer() {
		if n, err := onnx.NumElements(t.GetDims()); err == nil {
			params += uint64(n)
		}
	}
	return []Fact{{manifests.AnnotationParameters, strconv.FormatUint(params, 10)}}
}

// parseGGUF reads the header of one GGUF file.
func parseGGUF(path string) (*gguf.File, int64, error) {
	f, st, err := openRegular(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open gguf model: %w", err)
	}
	defer f.Close()
	g, err := gguf.Parse(f, st.Size())
	if err != nil {
		return nil, 0, fmt.Errorf("gguf model %s: %w", path, err)
	}
	return g, st.Size(), nil
}

func openGGUF(path string) (*Model, error) {
	g, size, err := parseGGUF(path)
	if err != nil {
		return nil, err
	}
	if _, _, ok := g.Split(); ok {
		return openGGUFSplits(path, g)
	}
	base := filepath.Base(path)
	return &Model{
		Format: FormatGGUF, WeightsFormat: FormatGGUF, Path: path, Root: filepath.Dir(path), Entry: base, GGUF: g,
		Files: []File{{Path: base, Source: path, Kind: KindWeight, Size: size}},
		Facts: ggufFacts(g),
	}, nil
}

// openGGUFSplits opens the gguf-split set a split belongs to: its files
// are named PREFIX-0000i-of-0000n.gguf (llama.cpp's llama_split_path), all
// in one directory; the entry is the first, which llama.cpp loads.
func openGGUFSplits(path string, g *gguf.File) (*Model, error) {
	no, count, _ := g.Split()
	dir, base := filepath.Dir(path), filepath.Base(path)
	sm := ggufSplitName.FindStringSubmatch(base)
	if sm == nil || uint64(atoi(sm[3])) != count {
		return nil, fmt.Errorf("gguf model %s is split %d of %d (gguf-split) but not named PREFIX-%05d-of-%05d.gguf: push the directory that holds all %d splits", path, no+1, count, no+1, count, count)
	}
	if count > maxFiles {
		return nil, fmt.Errorf("gguf model %s: split into %d files, more than one artifact holds", path, count)
	}
	m := &Model{Format: FormatGGUF, WeightsFormat: FormatGGUF, Path: path, Root: dir}
	var gs []*gguf.File
	var bytes int64
	for i := uint64(1); i <= count; i++ {
		name := fmt.Sprintf("%s-%0*d-of-%s.gguf", sm[1], len(sm[2]), i, sm[3])
		p := filepath.Join(dir, name)
		gi, size, err := parseGGUF(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("gguf split set %s: split %s is missing: the set is incomplete", path, name)
			}
			return nil, err
		}
		if i == 1 {
			m.Entry = name
			m.GGUF = gi
		}
		gs = append(gs, gi)
		bytes += size
		m.Files = append(m.Files, File{Path: name, Source: p, Kind: KindWeight, Size: size})
	}
	u, err := ggufSplitUnit(path, gs, bytes)
	if err != nil {
		return nil, err
	}
	m.Facts = u.facts
	return m, nil
}

func ggufFacts(g *gguf.File) []Fact {
	facts := []Fact{{manifests.AnnotationGGUFVersion, strconv.FormatUint(uint64(g.Version), 10)}}
	if s := g.Architecture(); s != "" {
		facts = append(facts, Fact{manifests.AnnotationArchitecture, s})
	}
	if s := g.Name(); s != "" {
		facts = append(facts, Fact{manifests.AnnotationName, s})
	}
	facts = append(facts, Fact{manifests.AnnotationParameters, strconv.FormatUint(g.ParameterCount(), 10)})
	if n, ok := g.ContextLength(); ok {
		facts = append(facts, Fact{manifests.AnnotationContextLength, strconv.FormatUint(n, 10)})
	}
	if ft, ok := g.FileType(); ok {
		facts = append(facts, Fact{manifests.AnnotationGGUFFileType, gguf.FileTypeName(ft)})
	}
	facts = append(facts,
		Fact{manifests.AnnotationGGUFTensors, strconv.Itoa(len(g.Tensors))},
		Fact{manifests.AnnotationGGUFTensorTypes, gguf.FormatTypeCounts(g.TensorTypes())})
	return facts
}

// parseSafetensors reads the header of one safetensors file.
func parseSafetensors(path string) (*safetensors.File, int64, error) {
	f, st, err := openRegular(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open safetensors file: %w", err)
	}
	defer f.Close()
	h, err := safetensors.Parse(f, st.Size())
	if err != nil {
		return nil, 0, fmt.Errorf("safetensors file %s: %w", path, err)
	}
	return h, st.Size(), nil
}

func parseIndex(path string) (*safetensors.Index, int64, error) {
	f, st, err := openRegular(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open safetensors index: %w", err)
	}
	defer f.Close()
	ix, err := safetensors.ParseIndex(f)
	if err != nil {
		return nil, 0, fmt.Errorf("safetensors index %s: %w", path, err)
	}
	return ix, st.Size(), nil
}

// shardName matches the names transformers gives shards.
var shardName = regexp.MustCompile(`-(\d+)-of-(\d+)\.safetensors$`)

// openSafetensors opens a single file, an index, or a shard of an indexed set.
func openSafetensors(path string) (*Model, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	fh, st, err := openRegular(path)
	if err != nil {
		return nil, fmt.Errorf("open safetensors model: %w", err)
	}
	format, err := sniff(fh, st.Size())
	fh.Close()
	if err != nil {
		return nil, fmt.Errorf("open safetensors model %s: %w", path, err)
	}
	if format == FormatSafetensorsIndex {
		return openIndexed(path)
	}
	index, err := findIndex(dir, base)
	if err != nil {
		return nil, err
	}
	if index != "" {
		m, err := openIndexed(filepath.Join(dir, index))
		if err != nil {
			return nil, err
		}
		m.Path = path
		return m, nil
	}
	if sm := shardName.FindStringSubmatch(base); sm != nil && atoi(sm[2]) > 1 {
		return nil, fmt.Errorf("safetensors model %s is shard %s of %s, but no *%s next to it maps it: push the index or the directory", path, sm[1], sm[2], safetensors.IndexSuffix)
	}
	h, size, err := parseSafetensors(path)
	if err != nil {
		return nil, err
	}
	return &Model{
		Format: FormatSafetensors, WeightsFormat: FormatSafetensors, Path: path, Root: dir, Entry: base,
		Files:       []File{{Path: base, Source: path, Kind: KindWeight, Size: size}},
		Safetensors: map[string]*safetensors.File{base: h},
		Facts:       safetensorsFacts([]*safetensors.File{h}),
	}, nil
}

// findIndex returns the name of the one index in dir that maps shard, or
// "" when none does.
func findIndex(dir, shard string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("look for the safetensors index of %s: %w", shard, err)
	}
	var found []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() && e.Type()&os.ModeSymlink == 0 || len(name) <= len(safetensors.IndexSuffix) || name[len(name)-len(safetensors.IndexSuffix):] != safetensors.IndexSuffix {
			continue
		}
		ix, _, err := parseIndex(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("look for the safetensors index of %s: %w", shard, err)
		}
		for _, s := range ix.Shards() {
			if s == shard {
				found = append(found, name)
				break
			}
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("safetensors shard %s is mapped by %d indexes (%v): push the one you mean", filepath.Join(dir, shard), len(found), found)
}

// indexedSet is a checked sharded set: the index and its shards, with
// paths relative to the index's directory.
type indexedSet struct {
	index   string
	shards  []string
	headers map[string]*safetensors.File
}

// checkIndexed checks the set an index describes. stat and parse resolve a
// relative shard path; they let a directory reuse what it already read.
func checkIndexed(indexPath string, ix *safetensors.Index, rel func(shard string) (string, error), parse func(rel string) (*safetensors.File, error)) (*indexedSet, error) {
	set := &indexedSet{headers: map[string]*safetensors.File{}}
	byShard := map[string][]string{}
	for name, shard := range ix.WeightMap {
		byShard[shard] = append(byShard[shard], name)
	}
	for _, shard := range ix.Shards() {
		r, err := rel(shard)
		if err != nil {
			return nil, fmt.Errorf("safetensors index %s: shard %s (%d tensors): %w", indexPath, shard, len(byShard[shard]), err)
		}
		h, err := parse(r)
		if err != nil {
			return nil, fmt.Errorf("safetensors index %s: %w", indexPath, err)
		}
		for _, name := range byShard[shard] {
			if _, ok := h.Tensor(name); !ok {
				return nil, fmt.Errorf("safetensors index %s maps tensor %q to %s, which does not hold it", indexPath, name, shard)
			}
		}
		for _, t := range h.Tensors {
			if other, ok := ix.WeightMap[t.Name]; ok && other != shard {
				return nil, fmt.Errorf("safetensors index %s maps tensor %q to %s, but %s holds it too", indexPath, t.Name, other, shard)
			}
		}
		set.shards = append(set.shards, r)
		set.headers[r] = h
	}
	return set, nil
}

// openIndexed opens the set of the index at indexPath.
func openIndexed(indexPath string) (*Model, error) {
	dir := filepath.Dir(indexPath)
	ix, size, err := parseIndex(indexPath)
	if err != nil {
		return nil, err
	}
	rootReal, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("safetensors index %s: %w", indexPath, err)
	}
	sizes := map[string]int64{}
	set, err := checkIndexed(indexPath, ix,
		func(shard string) (string, error) {
			if err := manifests.ValidatePath(shard); err != nil {
				return "", err
			}
			st, err := statInside(rootReal, filepath.Join(dir, filepath.FromSlash(shard)))
			if err != nil {
				if os.IsNotExist(err) {
					return "", fmt.Errorf("missing: the set is incomplete (like a missing ONNX data file)")
				}
				return "", err
			}
			sizes[shard] = st.Size()
			return shard, nil
		},
		func(rel string) (*safetensors.File, error) {
			h, _, err := parseSafetensors(filepath.Join(dir, filepath.FromSlash(rel)))
			return h, err
		})
	if err != nil {
		return nil, err
	}
	indexRel := filepath.Base(indexPath)
	m := &Model{
		Format: FormatSafetensors, WeightsFormat: FormatSafetensors, Path: indexPath, Root: dir, Entry: indexRel,
		Files:       []File{{Path: indexRel, Source: indexPath, Kind: KindWeightConfig, Size: size}},
		Safetensors: set.headers,
	}
	var headers []*safetensors.File
	for _, s := range set.shards {
		m.Files = append(m.Files, File{Path: s, Source: filepath.Join(dir, filepath.FromSlash(s)), Kind: KindWeight, Size: sizes[s]})
		headers = append(headers, set.headers[s])
	}
	m.Facts = safetensorsFacts(headers)
	return m, nil
}

func safetensorsFacts(headers []*safetensors.File) []Fact {
	var params uint64
	tensors := 0
	for _, h := range headers {
		params += h.ParameterCount()
		tensors += len(h.Tensors)
	}
	return []Fact{
		{manifests.AnnotationParameters, strconv.FormatUint(params, 10)},
		{manifests.AnnotationSafetensorsTensors, strconv.Itoa(tensors)},
		{manifests.AnnotationSafetensorsDTypes, safetensors.FormatDTypeCounts(safetensors.CountDTypes(headers...))},
		{manifests.AnnotationSafetensorsShards, strconv.Itoa(len(headers))},
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}
