package modelfile_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/modelfile"
	"github.com/modelctl/modelctl/modelfile/gguf"
	"github.com/modelctl/modelctl/modelfile/modelfiletest"
	"github.com/modelctl/modelctl/quantize/synth"
)

func open(t *testing.T, path string, format modelfile.Format) *modelfile.Model {
	t.Helper()
	m, err := modelfile.Open(context.Background(), path, modelfile.Options{Format: format})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func openErr(t *testing.T, path string, want string) {
	t.Helper()
	_, err := modelfile.Open(context.Background(), path, modelfile.Options{})
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open(%s) = %v, want an error saying %q", path, err, want)
	}
}

// files renders a model's files as "path:kind" in order.
func files(m *modelfile.Model) string {
	var parts []string
	for _, f := range m.Files {
		parts = append(parts, f.Path+":"+string(f.Kind))
	}
	return strings.Join(parts, " ")
}

func checkFacts(t *testing.T, m *modelfile.Model, want map[string]string) {
	t.Helper()
	got := m.Annotations()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected fact %s = %q", k, got[k])
		}
	}
}

func writeFile(t *testing.T, p string, data string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func onnxModel(t *testing.T, dir string) string {
	t.Helper()
	p, err := synth.Generate(dir, synth.Config{Layers: 1, Hidden: 16, Name: "audio.onnx"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	idx := modelfiletest.ShardedSafetensors(t, dir)
	cases := []struct {
		path string
		want modelfile.Format
	}{
		{modelfiletest.GGUF(t, dir, "solar.gguf"), modelfile.FormatGGUF},
		// Content decides, not the name.
		{modelfiletest.GGUF(t, dir, "model.bin"), modelfile.FormatGGUF},
		{filepath.Join(dir, modelfiletest.ShardName("model", 2, 3)), modelfile.FormatSafetensors},
		{idx, modelfile.FormatSafetensorsIndex},
		{onnxModel(t, filepath.Join(dir, "onnx")), modelfile.FormatONNX},
		{writeFile(t, filepath.Join(dir, "broken.onnx"), "not a graph"), modelfile.FormatONNX},
		{dir, modelfile.FormatDirectory},
	}
	for _, c := range cases {
		got, err := modelfile.Detect(c.path)
		if err != nil || got != c.want {
			t.Errorf("Detect(%s) = %q, %v; want %q", filepath.Base(c.path), got, err, c.want)
		}
	}
	for _, p := range []string{
		writeFile(t, filepath.Join(dir, "notes.txt"), "hello"),
		writeFile(t, filepath.Join(dir, "config.json"), `{"architectures":["X"]}`),
		writeFile(t, filepath.Join(dir, "empty"), ""),
	} {
		_, err := modelfile.Detect(p)
		if !errors.Is(err, modelfile.ErrUnknownFormat) || !strings.Contains(err.Error(), "--format raw") || !strings.Contains(err.Error(), "GGUF") {
			t.Errorf("Detect(%s) = %v, want ErrUnknownFormat naming the formats and --format raw", filepath.Base(p), err)
		}
		if _, err := modelfile.Open(context.Background(), p, modelfile.Options{}); !errors.Is(err, modelfile.ErrUnknownFormat) {
			t.Errorf("Open(%s) = %v", filepath.Base(p), err)
		}
	}
	if _, err := modelfile.Detect(filepath.Join(dir, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent: %v", err)
	}
}

func TestOpenGGUF(t *testing.T) {
	p := modelfiletest.GGUF(t, t.TempDir(), "solar.gguf")
	m := open(t, p, modelfile.FormatAuto)
	if m.Format != modelfile.FormatGGUF || m.Entry != "solar.gguf" || m.Root != filepath.Dir(p) || files(m) != "solar.gguf:weight" {
		t.Errorf("format %s entry %s root %s files %s", m.Format, m.Entry, m.Root, files(m))
	}
	if m.Files[0].MediaType() != manifests.MediaTypeWeightRaw || m.Files[0].Source != p {
		t.Errorf("file %+v", m.Files[0])
	}
	st, _ := os.Stat(p)
	if m.Files[0].Size != st.Size() {
		t.Errorf("size %d, want %d", m.Files[0].Size, st.Size())
	}
	checkFacts(t, m, map[string]string{
		manifests.AnnotationFormat:          "gguf",
		manifests.AnnotationFiles:           "1",
		manifests.AnnotationGGUFVersion:     "3",
		manifests.AnnotationArchitecture:    modelfiletest.WantGGUFArchitecture,
		manifests.AnnotationName:            modelfiletest.WantGGUFName,
		manifests.AnnotationParameters:      strconv.Itoa(modelfiletest.WantGGUFParameters),
		manifests.AnnotationContextLength:   strconv.Itoa(modelfiletest.WantGGUFContextLength),
		manifests.AnnotationGGUFFileType:    modelfiletest.WantGGUFFileType,
		manifests.AnnotationGGUFTensors:     strconv.Itoa(modelfiletest.WantGGUFTensors),
		manifests.AnnotationGGUFTensorTypes: modelfiletest.WantGGUFTensorType,
		manifests.AnnotationEntry:           "solar.gguf",
	})
	if c := m.Config(); c.Format != "gguf" || c.Architecture != "llama" || c.ParamSize != "410K" {
		t.Errorf("config %+v", c)
	}
	if m.GGUF == nil || m.GGUF.Architecture() != "llama" {
		t.Error("no parsed header")
	}
	// The facts go into a manifest as they are.
	if _, err := manifests.Pack([]manifests.File{{Path: "solar.gguf", Digest: digest.Digest("sha256:" + strings.Repeat("a", 64)), Size: 1}},
		manifests.PackOptions{Annotations: m.Annotations()}); err != nil {
		t.Errorf("pack with the facts: %v", err)
	}
}

func TestOpenGGUFRefusesHostileHeader(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "evil.gguf")
	// A tokenizer array that claims 2^40 strings in a small file.
	b := []byte("GGUF\x03\x00\x00\x00")
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0 /* tensors */, 1, 0, 0, 0, 0, 0, 0, 0 /* kvs */)
	b = append(b, 1, 0, 0, 0, 0, 0, 0, 0, 't', 9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0)
	writeFile(t, p, string(b))
	openErr(t, p, "strings cannot fit")
	openErr(t, p, p) // the error names the file
}

// Naming any split of a gguf-split set opens the whole set; the entry is
// the first split, which llama.cpp loads.
func TestOpenGGUFSplitSet(t *testing.T) {
	dir := t.TempDir()
	paths := writeSplits(t, dir, 3)
	for _, p := range paths {
		m := open(t, p, modelfile.FormatAuto)
		if files(m) != "llm-00001-of-00003.gguf:weight llm-00002-of-00003.gguf:weight llm-00003-of-00003.gguf:weight" || m.Entry != "llm-00001-of-00003.gguf" {
			t.Errorf("%s: files %s entry %s", filepath.Base(p), files(m), m.Entry)
		}
		a := m.Annotations()
		if a[manifests.AnnotationGGUFTensors] != "3" || a[manifests.AnnotationParameters] != strconv.Itoa(256*64+256+256*256) {
			t.Errorf("%s: facts %v", filepath.Base(p), a)
		}
	}
	os.Remove(paths[2])
	openErr(t, paths[0], "split llm-00003-of-00003.gguf is missing")
	// A split whose name does not say its set points at the directory.
	renamed := filepath.Join(dir, "llm-part.gguf")
	os.Rename(paths[0], renamed)
	openErr(t, renamed, "split 1 of 3 (gguf-split) but not named PREFIX-00001-of-00003.gguf: push the directory")
}

func writeSplits(t *testing.T, dir string, n int) []string {
	t.Helper()
	var paths []string
	for i := 0; i < n; i++ {
		spec := modelfiletest.LlamaGGUF()
		spec.Tensors = spec.Tensors[i : i+1]
		spec.KVs = append(spec.KVs,
			modelfiletest.GGUFKV{Key: "split.no", Type: gguf.TypeUint16, Value: uint16(i)},
			modelfiletest.GGUFKV{Key: "split.count", Type: gguf.TypeUint16, Value: uint16(n)})
		p := filepath.Join(dir, fmt.Sprintf("llm-%05d-of-%05d.gguf", i+1, n))
		if err := modelfiletest.WriteGGUF(p, spec); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func shardedFacts() map[string]string {
	return map[string]string{
		manifests.AnnotationFormat:             "safetensors",
		manifests.AnnotationFiles:              "4",
		manifests.AnnotationParameters:         strconv.Itoa(modelfiletest.WantShardedParameters),
		manifests.AnnotationSafetensorsTensors: strconv.Itoa(modelfiletest.WantShardedTensors),
		manifests.AnnotationSafetensorsDTypes:  modelfiletest.WantShardedDTypes,
		manifests.AnnotationSafetensorsShards:  strconv.Itoa(modelfiletest.WantShards),
		manifests.AnnotationEntry:              "model.safetensors.index.json",
	}
}

func TestOpenShardedSafetensors(t *testing.T) {
	dir := t.TempDir()
	idx := modelfiletest.ShardedSafetensors(t, dir)
	wantFiles := "model-00001-of-00003.safetensors:weight model-00002-of-00003.safetensors:weight model-00003-of-00003.safetensors:weight model.safetensors.index.json:weight.config"
	for _, named := range []string{idx, filepath.Join(dir, modelfiletest.ShardName("model", 2, 3))} {
		m := open(t, named, modelfile.FormatAuto)
		if m.Format != modelfile.FormatSafetensors || files(m) != wantFiles || m.Root != dir || m.Entry != "model.safetensors.index.json" || m.Path != named {
			t.Errorf("%s: format %s files %s root %s entry %s path %s", filepath.Base(named), m.Format, files(m), m.Root, m.Entry, m.Path)
		}
		checkFacts(t, m, shardedFacts())
		if len(m.Safetensors) != 3 {
			t.Errorf("%d headers", len(m.Safetensors))
		}
	}
	// --format safetensors reads the index too.
	if m := open(t, idx, modelfile.FormatSafetensors); files(m) != wantFiles {
		t.Errorf("forced: %s", files(m))
	}
}

func TestOpenShardedSafetensorsBroken(t *testing.T) {
	shard2 := modelfiletest.ShardName("model", 2, 3)
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
	}{
		{"missing shard", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, shard2)) },
			"shard " + shard2 + " (3 tensors): missing"},
		{"corrupt shard", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, shard2), "\x40\x00\x00\x00\x00\x00\x00\x00{}")
		}, "safetensors file " + filepath.Join("DIR", shard2) + ": safetensors: header length 64 runs past the end of the 10-byte file"},
		{"shard lacks a mapped tensor", func(t *testing.T, dir string) {
			if err := modelfiletest.WriteSafetensors(filepath.Join(dir, shard2), modelfiletest.ThreeShards()[1][:2], nil); err != nil {
				t.Fatal(err)
			}
		}, `maps tensor "model.layers.1.input_layernorm.weight" to ` + shard2 + ", which does not hold it"},
		{"tensor in two shards", func(t *testing.T, dir string) {
			ts := append(modelfiletest.ThreeShards()[1], modelfiletest.ThreeShards()[0][0])
			if err := modelfiletest.WriteSafetensors(filepath.Join(dir, shard2), ts, nil); err != nil {
				t.Fatal(err)
			}
		}, "holds it too"},
		{"shard outside the directory", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "model.safetensors.index.json"), `{"weight_map":{"a":"../x.safetensors"}}`)
		}, `contains ".."`},
		{"bad index", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "model.safetensors.index.json"), `{"weight_map":{"a":7}}`)
		}, "weight_map of strings"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			idx := modelfiletest.ShardedSafetensors(t, dir)
			c.break_(t, dir)
			want := strings.ReplaceAll(c.want, "DIR", dir)
			_, err := modelfile.Open(context.Background(), idx, modelfile.Options{Format: modelfile.FormatSafetensors})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Open = %v, want %q", err, want)
			}
			// The same break inside a directory is refused too.
			if _, err := modelfile.Open(context.Background(), dir, modelfile.Options{}); err == nil {
				t.Fatal("directory with a broken set accepted")
			}
		})
	}
}

func TestOpenShardWithoutIndex(t *testing.T) {
	dir := t.TempDir()
	modelfiletest.ShardedSafetensors(t, dir)
	os.Remove(filepath.Join(dir, "model.safetensors.index.json"))
	openErr(t, filepath.Join(dir, modelfiletest.ShardName("model", 1, 3)), "is shard 00001 of 00003, but no *.safetensors.index.json next to it maps it")
	openErr(t, dir, "shard 0000")
}

func TestOpenSingleSafetensors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.safetensors")
	if err := modelfiletest.WriteSafetensors(p, modelfiletest.ThreeShards()[0], map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	// An index beside it that does not name it is not its index.
	writeFile(t, filepath.Join(dir, "other.safetensors.index.json"), `{"weight_map":{"x":"other.safetensors"}}`)
	m := open(t, p, modelfile.FormatAuto)
	if files(m) != "model.safetensors:weight" {
		t.Errorf("files %s", files(m))
	}
	checkFacts(t, m, map[string]string{
		manifests.AnnotationFormat:             "safetensors",
		manifests.AnnotationFiles:              "1",
		manifests.AnnotationParameters:         strconv.Itoa(modelfiletest.WantShardedParameters / 3),
		manifests.AnnotationSafetensorsTensors: "3",
		manifests.AnnotationSafetensorsDTypes:  "BF16=2,F32=1",
		manifests.AnnotationSafetensorsShards:  "1",
		manifests.AnnotationEntry:              "model.safetensors",
	})
}

func TestOpenHFDirectory(t *testing.T) {
	dir := modelfiletest.HFDirectory(t, t.TempDir(), "llm")
	// What a pull leaves behind and git's metadata are not the model's.
	writeFile(t, filepath.Join(dir, ".modelctl", "installed.json"), "{}")
	writeFile(t, filepath.Join(dir, ".git", "HEAD"), "ref: refs/heads/main\n")
	writeFile(t, filepath.Join(dir, ".cache", "huggingface", "download", "x.metadata"), "x")
	m := open(t, dir, modelfile.FormatAuto)
	if m.Format != modelfile.FormatDirectory || m.Root != dir || m.Entry != "" || m.WeightsFormat != modelfile.FormatSafetensors {
		t.Errorf("format %s root %s entry %q weights %s", m.Format, m.Root, m.Entry, m.WeightsFormat)
	}
	if len(m.Files) != modelfiletest.WantHFFiles {
		t.Errorf("%d files: %s", len(m.Files), files(m))
	}
	for _, f := range m.Files {
		want := modelfiletest.HFFiles[f.Path]
		switch {
		case strings.HasSuffix(f.Path, ".safetensors"):
			want = "weight"
		case strings.HasSuffix(f.Path, ".index.json"):
			want = "weight.config"
		}
		if string(f.Kind) != want {
			t.Errorf("%s is %s, want %s", f.Path, f.Kind, want)
		}
		if f.Source != filepath.Join(dir, filepath.FromSlash(f.Path)) {
			t.Errorf("%s from %s", f.Path, f.Source)
		}
	}
	want := shardedFacts()
	want[manifests.AnnotationFormat] = "directory"
	want[manifests.AnnotationFiles] = strconv.Itoa(modelfiletest.WantHFFiles)
	want[manifests.AnnotationWeightsFormat] = "safetensors"
	want[manifests.AnnotationArchitecture] = modelfiletest.WantHFArchitecture
	want[manifests.AnnotationContextLength] = strconv.Itoa(modelfiletest.WantHFContextLength)
	delete(want, manifests.AnnotationEntry)
	checkFacts(t, m, want)
	if c := m.Config(); c.Format != "safetensors" || c.Architecture != modelfiletest.WantHFArchitecture {
		t.Errorf("config %+v", c)
	}
}

func TestOpenDirectoryNested(t *testing.T) {
	dir := t.TempDir()
	// A GGUF and an ONNX model with its data, in subdirectories, plus code
	// and docs: relative paths are kept and the largest model is the main one.
	modelfiletest.GGUF(t, filepath.Join(mkdir(t, dir, "gguf")), "llm.gguf")
	onnxPath := onnxModel(t, filepath.Join(dir, "onnx", "audio"))
	writeFile(t, filepath.Join(dir, "src", "run.py"), "print(1)\n")
	writeFile(t, filepath.Join(dir, "NOTICE"), "n\n")
	m := open(t, dir, modelfile.FormatAuto)
	want := "NOTICE:doc gguf/llm.gguf:weight onnx/audio/audio.onnx:weight onnx/audio/audio.onnx.data:weight src/run.py:code"
	if files(m) != want {
		t.Errorf("files %s\nwant  %s", files(m), want)
	}
	for _, f := range m.Files {
		if f.Path == "onnx/audio/audio.onnx.data" {
			st, _ := os.Stat(onnxPath + ".data")
			if f.MinSize <= 0 || f.MinSize > st.Size() {
				t.Errorf("data min size %d of %d", f.MinSize, st.Size())
			}
		}
	}
	if m.WeightsFormat != modelfile.FormatGGUF {
		t.Errorf("weights format %s", m.WeightsFormat)
	}
	if got := m.Annotations()[manifests.AnnotationGGUFFileType]; got != modelfiletest.WantGGUFFileType {
		t.Errorf("file type %q", got)
	}
}

func mkdir(t *testing.T, parts ...string) string {
	p := filepath.Join(parts...)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenDirectoryGGUFSplits(t *testing.T) {
	dir := t.TempDir()
	paths := writeSplits(t, dir, 3)
	m := open(t, dir, modelfile.FormatAuto)
	a := m.Annotations()
	// Three splits of one tensor each: the first three tensors of LlamaGGUF.
	if a[manifests.AnnotationGGUFTensors] != "3" || a[manifests.AnnotationParameters] != strconv.Itoa(256*64+256+256*256) ||
		a[manifests.AnnotationGGUFTensorTypes] != "Q4_K=2,F32=1" || a[manifests.AnnotationArchitecture] != "llama" {
		t.Errorf("facts %v", a)
	}
	os.Remove(paths[1])
	openErr(t, dir, "2 of its 3 splits are here")
}

func TestOpenDirectoryRefuses(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"empty", func(t *testing.T, dir string) { mkdir(t, dir, "sub") }, "no files"},
		{"corrupt gguf", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "x.gguf"), "GGUF\x09\x00\x00\x00") }, "version 9 is not supported"},
		{"gguf by content under another name", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "weights.bin"), "GGUF\x03\x00\x00") }, "weights.bin"},
		{"corrupt safetensors", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "m.safetensors"), "\xff\xff\x00\x00\x00\x00\x00\x00{")
		}, "runs past the end"},
		{"corrupt onnx", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "m.onnx"), "\x0a\xff") }, "m.onnx"},
		{"symlink out", func(t *testing.T, dir string) {
			outside := writeFile(t, filepath.Join(t.TempDir(), "secret"), "s")
			if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
				t.Skip("no symlinks here:", err)
			}
		}, "outside"},
		{"symlink to a directory", func(t *testing.T, dir string) {
			mkdir(t, dir, "d")
			writeFile(t, filepath.Join(dir, "d", "f"), "x")
			if err := os.Symlink(filepath.Join(dir, "d"), filepath.Join(dir, "dlink")); err != nil {
				t.Skip("no symlinks here:", err)
			}
		}, "not a regular file"},
		{"name Windows cannot hold", func(t *testing.T, dir string) {
			if runtime.GOOS == "windows" {
				t.Skip("cannot create it here either")
			}
			writeFile(t, filepath.Join(dir, "a:b"), "x")
		}, "colon"},
		{"names that differ only in case", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "README.md"), "x")
			if err := os.WriteFile(filepath.Join(dir, "readme.md"), []byte("y"), 0o644); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) < 2 {
				t.Skip("case-insensitive file system")
			}
		}, "are the same file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.setup(t, dir)
			openErr(t, dir, c.want)
		})
	}
}

func TestOpenDirectorySymlinkInside(t *testing.T) {
	dir := t.TempDir()
	target := writeFile(t, filepath.Join(dir, "blobs", "abc"), "tokenizer")
	if err := os.Symlink(target, filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Skip("no symlinks here:", err)
	}
	m := open(t, dir, modelfile.FormatAuto)
	if files(m) != "blobs/abc:weight tokenizer.json:weight.config" {
		t.Errorf("files %s", files(m))
	}
}

func TestOpenDirectoryCancel(t *testing.T) {
	dir := modelfiletest.HFDirectory(t, t.TempDir(), "llm")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := modelfile.Open(ctx, dir, modelfile.Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open = %v, want context.Canceled", err)
	}
}

func TestOpenONNX(t *testing.T) {
	p := onnxModel(t, t.TempDir())
	m := open(t, p, modelfile.FormatAuto)
	if m.Format != modelfile.FormatONNX || files(m) != "audio.onnx:weight audio.onnx.data:weight" || m.ONNX == nil {
		t.Fatalf("format %s files %s", m.Format, files(m))
	}
	st, _ := os.Stat(p + ".data")
	if d := m.Files[1]; d.Size != st.Size() || d.MinSize <= 0 || d.MinSize > d.Size {
		t.Errorf("data %+v", d)
	}
	// Every FP32 weight is in the data file, so it counts them all (within
	// the few small embedded initializers).
	params, _ := strconv.ParseInt(m.Annotations()[manifests.AnnotationParameters], 10, 64)
	if params < m.Files[1].MinSize/4 || params > m.Files[1].MinSize/4+4096 {
		t.Errorf("parameters %d for %d data bytes", params, m.Files[1].MinSize)
	}
	// A missing data file is refused, as push always did.
	os.Remove(p + ".data")
	openErr(t, p, "audio.onnx.data")
}

func TestOpenRaw(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "README.md"), "# hi\n")
	m := open(t, p, modelfile.FormatRaw)
	if m.Format != modelfile.FormatRaw || files(m) != "README.md:doc" || m.Files[0].Size != 5 {
		t.Errorf("format %s files %s", m.Format, files(m))
	}
	checkFacts(t, m, map[string]string{manifests.AnnotationFormat: "raw", manifests.AnnotationFiles: "1", manifests.AnnotationEntry: "README.md"})
	if _, err := modelfile.Open(context.Background(), dir, modelfile.Options{Format: modelfile.FormatRaw}); err == nil {
		t.Error("raw directory accepted")
	}
	// A forced format that the content is not: the parser says why.
	if _, err := modelfile.Open(context.Background(), p, modelfile.Options{Format: modelfile.FormatGGUF}); err == nil || !strings.Contains(err.Error(), "not a GGUF file") {
		t.Errorf("forced gguf: %v", err)
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]modelfile.Format{"": modelfile.FormatAuto, "auto": modelfile.FormatAuto, "RAW": modelfile.FormatRaw, "gguf": modelfile.FormatGGUF, "safetensors": modelfile.FormatSafetensors, "onnx": modelfile.FormatONNX, "directory": modelfile.FormatDirectory} {
		if got, err := modelfile.ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := modelfile.ParseFormat("pickle"); err == nil {
		t.Error("pickle accepted")
	}
}

func TestKindOf(t *testing.T) {
	for p, want := range map[string]modelfile.Kind{
		"config.json": "weight.config", "generation_config.json": "weight.config", "tokenizer.json": "weight.config",
		"tokenizer.model": "weight.config", "tokenizer_config.json": "weight.config", "special_tokens_map.json": "weight.config",
		"vocab.txt": "weight.config", "merges.txt": "weight.config", "vocab.json": "weight.config", "sub/preprocessor_config.json": "weight.config",
		"model.safetensors.index.json": "weight.config", "qwen.tiktoken": "weight.config",
		"README.md": "doc", "LICENSE": "doc", "licence.txt": "doc", "NOTICE": "doc", "docs/usage.md": "doc", "notes.txt": "doc",
		"modeling_llama.py": "code", "model.safetensors": "weight", "model.gguf": "weight", "model.onnx.data": "weight", "pytorch_model.bin": "weight",
	} {
		if got := modelfile.KindOf(p); got != want {
			t.Errorf("KindOf(%s) = %s, want %s", p, got, want)
		}
	}
}

func TestDescribe(t *testing.T) {
	m := open(t, modelfiletest.GGUF(t, t.TempDir(), "m.gguf"), modelfile.FormatAuto)
	var got []string
	for _, l := range modelfile.Describe(m.Annotations()) {
		got = append(got, l.Label+": "+l.Value)
	}
	want := []string{
		"format: gguf", "name: tiny-llama-test", "architecture: llama", "parameters: 409856 (410K)",
		"context length: 4096", "gguf version: 3", "quantization: Q4_K_M", "tensors: 6",
		"tensor types: Q4_K=3,F32=1,Q8_0=1,Q6_K=1", "files: 1", "entry: m.gguf",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Describe:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A header's control characters never reach a terminal.
	lines := modelfile.Describe(map[string]string{manifests.AnnotationName: "evil\x1b[2Jname", manifests.AnnotationParameters: "8030261248"})
	if len(lines) != 2 || strings.ContainsRune(lines[0].Value, 0x1b) || lines[1].Value != "8030261248 (8.03B)" {
		t.Errorf("%q", lines)
	}
}

// The helpers' Want values are what a JSON round trip of the index says.
func TestHelpersIndex(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(modelfiletest.ShardedSafetensors(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	var ix struct {
		Metadata struct {
			TotalSize int64 `json:"total_size"`
		} `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &ix); err != nil {
		t.Fatal(err)
	}
	if len(ix.WeightMap) != modelfiletest.WantShardedTensors || ix.Metadata.TotalSize != 3*(2*64*128*2+128*4) {
		t.Errorf("index %+v", ix)
	}
}

// Open reads headers only: a multi-GiB model costs what its header costs.
// The files are sparse, so the test writes no data either.
func TestOpenReadsOnlyHeaders(t *testing.T) {
	dir := t.TempDir()
	g := filepath.Join(dir, "big.gguf")
	if err := modelfiletest.WriteSparseGGUF(g, modelfiletest.LargeGGUF(8<<30)); err != nil {
		t.Fatal(err)
	}
	s := filepath.Join(dir, "big.safetensors")
	if err := modelfiletest.WriteSparseSafetensors(s, []modelfiletest.STensor{
		{Name: "embed", DType: "BF16", Shape: []int64{1 << 20, 1 << 10}},
		{Name: "lm_head", DType: "F32", Shape: []int64{1 << 20, 1 << 9}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path   string
		size   int64
		params string
	}{
		{g, 8 << 30, strconv.Itoa(1024 * (8 << 30) / 4096)},
		{s, 4 << 30, strconv.Itoa(3 << 29)},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := open(t, c.path, modelfile.FormatAuto)
		runtime.ReadMemStats(&after)
		if got := m.Annotations()[manifests.AnnotationParameters]; got != c.params {
			t.Errorf("%s: parameters %s, want %s", filepath.Base(c.path), got, c.params)
		}
		if m.Files[0].Size < c.size {
			t.Errorf("%s: size %d", filepath.Base(c.path), m.Files[0].Size)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 2<<20 {
			t.Errorf("%s: Open allocated %d bytes", filepath.Base(c.path), grew)
		}
	}
}

func TestInstallDir(t *testing.T) {
	dirArtifact := map[string]string{manifests.AnnotationFormat: "directory"}
	for _, c := range []struct {
		modelPath   string
		annotations map[string]string
		want        string
	}{
		{filepath.Join("models", "llm", "solar.gguf"), map[string]string{manifests.AnnotationFormat: "gguf"}, filepath.Join("models", "llm")},
		{filepath.Join("models", "hf", "model.safetensors.index.json"), map[string]string{manifests.AnnotationFormat: "safetensors"}, filepath.Join("models", "hf")},
		{filepath.Join("models", "onnx", "a.onnx"), nil, filepath.Join("models", "onnx")},
		{filepath.Join("models", "hf") + string(filepath.Separator), dirArtifact, filepath.Join("models", "hf")},
	} {
		if got := modelfile.InstallDir(c.modelPath, c.annotations); got != c.want {
			t.Errorf("InstallDir(%s) = %s, want %s", c.modelPath, got, c.want)
		}
	}
}
