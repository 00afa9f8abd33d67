package modelfile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/modelfile/gguf"
	"github.com/modelctl/modelctl/modelfile/safetensors"
	"github.com/modelctl/modelctl/quantize/onnx"
)

// statInside stats the file at p, following symbolic links, and refuses a
// link whose target is outside rootReal (the directory with its own links
// resolved) or is not a regular file.
func statInside(rootReal, p string) (os.FileInfo, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(rootReal, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return nil, fmt.Errorf("%s links to %s, outside %s: copy the file in (cp -L) or push the directory it lives in", p, real, rootReal)
	}
	st, err := os.Stat(real)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s links to %s, which is not a regular file (%s)", p, real, st.Mode().Type())
	}
	return st, nil
}

// skipped says whether a directory of a model is left out: version control
// metadata, modelctl's own install metadata, and the download cache that
// huggingface-cli leaves in a --local-dir.
func skipped(rel string, name string) bool {
	return name == ".git" || strings.EqualFold(rel, manifests.ReservedDir) || rel == ".cache/huggingface"
}

// unit is one model inside a directory: a GGUF file or split set, a
// safetensors file or indexed set, or an ONNX graph with its data.
type unit struct {
	format Format
	bytes  int64
	facts  []Fact
}

var ggufSplitName = regexp.MustCompile(`^(.*)-(\d+)-of-(\d+)\.gguf$`)

func openDirectory(ctx context.Context, root string) (*Model, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("open model directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("open model directory %s: not a directory", root)
	}
	rootReal, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("open model directory: %w", err)
	}
	m := &Model{Format: FormatDirectory, Path: root, Root: root}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		relOS, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(relOS)
		if skipped(rel, d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		var info os.FileInfo
		switch t := d.Type(); {
		case t&fs.ModeSymlink != 0:
			if info, err = statInside(rootReal, p); err != nil {
				return err
			}
		case !t.IsRegular():
			return fmt.Errorf("%s is not a regular file (%s); a model directory holds only files and directories", p, t)
		default:
			if info, err = d.Info(); err != nil {
				return err
			}
		}
		if len(m.Files) >= maxFiles {
			return fmt.Errorf("more than %d files, the most one artifact holds", maxFiles)
		}
		m.Files = append(m.Files, File{Path: rel, Source: p, Kind: KindOf(rel), Size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open model directory %s: %w", root, err)
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("open model directory %s: no files", root)
	}
	units, err := m.checkModels(ctx)
	if err != nil {
		return nil, fmt.Errorf("open model directory %s: %w", root, err)
	}
	var main *unit
	for i := range units {
		if main == nil || units[i].bytes > main.bytes {
			main = &units[i]
		}
	}
	if main != nil {
		m.WeightsFormat = main.format
		m.Facts = main.facts
	}
	m.Facts = append(m.Facts, hfConfigFacts(m, root)...)
	return m, nil
}

// checkModels checks every model file in the directory and returns the
// models found.
func (m *Model) checkModels(ctx context.Context) ([]unit, error) {
	byPath := map[string]int{}
	for i, f := range m.Files {
		byPath[f.Path] = i
	}
	var units []unit
	headers := map[string]*safetensors.File{}
	var indexes []int
	splits := map[string][]*gguf.File{}
	splitBytes := map[string]int64{}
	for i, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		head, err := readHead(f.Source)
		if err != nil {
			return nil, err
		}
		lower := strings.ToLower(f.Path)
		switch {
		case strings.HasSuffix(lower, ".gguf") || len(head) >= 4 && string(head[:4]) == gguf.Magic:
			g, _, err := parseGGUF(f.Source)
			if err != nil {
				return nil, err
			}
			if _, _, ok := g.Split(); ok {
				key := f.Path
				if sm := ggufSplitName.FindStringSubmatch(f.Path); sm != nil {
					key = sm[1] + "-of-" + sm[3]
				}
				splits[key] = append(splits[key], g)
				splitBytes[key] += f.Size
				continue
			}
			units = append(units, unit{FormatGGUF, f.Size, ggufFacts(g)})
		case strings.HasSuffix(lower, ".safetensors") || safetensors.Sniff(head, f.Size):
			h, _, err := parseSafetensors(f.Source)
			if err != nil {
				return nil, err
			}
			headers[f.Path] = h
		case strings.HasSuffix(lower, safetensors.IndexSuffix):
			indexes = append(indexes, i)
		case strings.HasSuffix(lower, ".onnx"):
			u, err := m.checkONNX(f, byPath)
			if err != nil {
				return nil, err
			}
			units = append(units, u)
		}
	}

	covered := map[string]bool{}
	for _, i := range indexes {
		f := m.Files[i]
		ix, _, err := parseIndex(f.Source)
		if err != nil {
			return nil, err
		}
		dir := path.Dir(f.Path)
		set, err := checkIndexed(f.Source, ix,
			func(shard string) (string, error) {
				if err := manifests.ValidatePath(shard); err != nil {
					return "", err
				}
				rel := path.Join(dir, shard)
				if _, ok := byPath[rel]; !ok {
					return "", fmt.Errorf("missing: the set is incomplete (like a missing ONNX data file)")
				}
				return rel, nil
			},
			func(rel string) (*safetensors.File, error) {
				if h := headers[rel]; h != nil {
					return h, nil
				}
				h, _, err := parseSafetensors(m.Files[byPath[rel]].Source)
				return h, err
			})
		if err != nil {
			return nil, err
		}
		u := unit{format: FormatSafetensors}
		var hs []*safetensors.File
		for _, s := range set.shards {
			covered[s] = true
			u.bytes += m.Files[byPath[s]].Size
			hs = append(hs, set.headers[s])
		}
		u.facts = safetensorsFacts(hs)
		units = append(units, u)
	}
	for p, h := range headers {
		if covered[p] {
			continue
		}
		if sm := shardName.FindStringSubmatch(p); sm != nil && atoi(sm[2]) > 1 {
			return nil, fmt.Errorf("%s is shard %s of %s, but no *%s in the directory maps it", p, sm[1], sm[2], safetensors.IndexSuffix)
		}
		units = append(units, unit{FormatSafetensors, m.Files[byPath[p]].Size, safetensorsFacts([]*safetensors.File{h})})
	}
	for key, gs := range splits {
		u, err := ggufSplitUnit(key, gs, splitBytes[key])
		if err != nil {
			return nil, err
		}
		units = append(units, u)
	}
	return units, nil
}

// ggufSplitUnit checks that a gguf-split set is whole: every split number
// from 0 to count-1 once, all agreeing on the count.
func ggufSplitUnit(key string, gs []*gguf.File, bytes int64) (unit, error) {
	_, count, _ := gs[0].Split()
	seen := map[uint64]bool{}
	var first *gguf.File
	for _, g := range gs {
		no, c, _ := g.Split()
		if c != count || no >= count || seen[no] {
			return unit{}, fmt.Errorf("gguf split set %s: split %d of %d does not fit a set of %d", key, no+1, c, count)
		}
		seen[no] = true
		if no == 0 {
			first = g
		}
	}
	if uint64(len(gs)) != count {
		return unit{}, fmt.Errorf("gguf split set %s: %d of its %d splits are here; the set is incomplete", key, len(gs), count)
	}
	facts := ggufFacts(first)
	var params uint64
	tensors := 0
	counts := map[gguf.TensorType]int{}
	for _, g := range gs {
		params += g.ParameterCount()
		tensors += len(g.Tensors)
		for _, tc := range g.TensorTypes() {
			counts[tc.Type] += tc.Count
		}
	}
	var tcs []gguf.TypeCount
	for t, n := range counts {
		tcs = append(tcs, gguf.TypeCount{Type: t, Count: n})
	}
	gguf.SortTypeCounts(tcs)
	for i := range facts {
		switch facts[i].Key {
		case manifests.AnnotationParameters:
			facts[i].Value = strconv.FormatUint(params, 10)
		case manifests.AnnotationGGUFTensors:
			facts[i].Value = strconv.Itoa(tensors)
		case manifests.AnnotationGGUFTensorTypes:
			facts[i].Value = gguf.FormatTypeCounts(tcs)
		}
	}
	return unit{FormatGGUF, bytes, facts}, nil
}

func (m *Model) checkONNX(f File, byPath map[string]int) (unit, error) {
	om, err := onnx.Open(f.Source)
	if err != nil {
		return unit{}, err
	}
	data, err := om.DataFiles()
	if err != nil {
		return unit{}, err
	}
	u := unit{format: FormatONNX, bytes: f.Size, facts: onnxFacts(om)}
	for _, d := range data {
		rel := path.Join(path.Dir(f.Path), d.Path)
		i, ok := byPath[rel]
		if !ok {
			return unit{}, fmt.Errorf("onnx model %s: external data %s is not one of the directory's files", f.Path, rel)
		}
		m.Files[i].MinSize = max(m.Files[i].MinSize, d.MinSize)
		u.bytes += m.Files[i].Size
	}
	return u, nil
}

func readHead(p string) ([]byte, error) {
	f, _, err := openRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf [32]byte
	n, err := io.ReadFull(f, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return buf[:n], nil
}

// hfConfigFacts reads the architecture and context length of a Hugging
// Face directory from its config.json, where the weights did not say.
func hfConfigFacts(m *Model, root string) []Fact {
	have := m.Annotations()
	f, _, err := openRegular(filepath.Join(root, "config.json"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var cfg struct {
		Architectures []string `json:"architectures"`
		MaxPositions  *uint64  `json:"max_position_embeddings"`
	}
	// config.json is the model's, not modelctl's: a malformed one is not
	// this check's business, it just yields no facts.
	if err := json.NewDecoder(io.LimitReader(f, 1<<20)).Decode(&cfg); err != nil {
		return nil
	}
	var facts []Fact
	if _, ok := have[manifests.AnnotationArchitecture]; !ok && len(cfg.Architectures) > 0 && cfg.Architectures[0] != "" {
		facts = append(facts, Fact{manifests.AnnotationArchitecture, cfg.Architectures[0]})
	}
	if _, ok := have[manifests.AnnotationContextLength]; !ok && cfg.MaxPositions != nil {
		facts = append(facts, Fact{manifests.AnnotationContextLength, strconv.FormatUint(*cfg.MaxPositions, 10)})
	}
	return facts
}
