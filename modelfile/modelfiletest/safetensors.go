package modelfiletest

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/modelctl/modelctl/modelfile/safetensors"
)

// STensor is one safetensors tensor. Data nil means a deterministic fill.
type STensor struct {
	Name  string
	DType string
	Shape []int64
	Data  []byte
}

func (t STensor) bytes() (int64, error) {
	bits, ok := safetensors.DTypeBits(t.DType)
	if !ok {
		return 0, fmt.Errorf("tensor %s: unknown dtype %q", t.Name, t.DType)
	}
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n * bits / 8, nil
}

// EncodeSafetensors writes a safetensors file holding tensors (data in the
// order given) and metadata to w, the way the safetensors library does: the
// header JSON padded with spaces to a multiple of 8 bytes.
func EncodeSafetensors(w io.Writer, tensors []STensor, metadata map[string]string) error {
	_, err := encodeSafetensors(w, tensors, metadata, true)
	return err
}

// WriteSparseSafetensors writes the header to path and extends the file to
// its full size without writing the data (see WriteSparseGGUF).
func WriteSparseSafetensors(path string, tensors []STensor, metadata map[string]string) error {
	return writeSparse(path, func(w io.Writer) (int64, error) { return encodeSafetensors(w, tensors, metadata, false) })
}

func encodeSafetensors(w io.Writer, tensors []STensor, metadata map[string]string, withData bool) (int64, error) {
	header := map[string]any{}
	if metadata != nil {
		header[safetensors.MetadataKey] = metadata
	}
	var off int64
	for _, t := range tensors {
		n, err := t.bytes()
		if err != nil {
			return 0, err
		}
		if t.Data != nil && int64(len(t.Data)) != n {
			return 0, fmt.Errorf("tensor %s: %d bytes of data, want %d", t.Name, len(t.Data), n)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[t.Name] = map[string]any{"dtype": t.DType, "shape": shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(header)
	if err != nil {
		return 0, err
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	e := &encoder{w: bw}
	e.u64(uint64(len(js)))
	e.raw(js)
	total := e.n + off
	for i, t := range tensors {
		if !withData {
			break
		}
		if t.Data != nil {
			e.raw(t.Data)
			continue
		}
		n, _ := t.bytes()
		e.fill(n, uint64(i)+1000)
	}
	if e.err != nil {
		return 0, e.err
	}
	return total, bw.Flush()
}

// WriteSafetensors writes a safetensors file to path.
func WriteSafetensors(path string, tensors []STensor, metadata map[string]string) error {
	return writeFile(path, func(w io.Writer) error { return EncodeSafetensors(w, tensors, metadata) })
}

// ShardName is the file name transformers gives shard i (1-based) of n.
func ShardName(prefix string, i, n int) string {
	return fmt.Sprintf("%s-%05d-of-%05d.safetensors", prefix, i, n)
}

// WriteShardedSafetensors writes each element of shards as
// PREFIX-0000i-of-0000n.safetensors in dir, and PREFIX.safetensors.index.json
// mapping every tensor to its shard. It returns the index's path.
func WriteShardedSafetensors(dir, prefix string, shards [][]STensor) (string, error) {
	weightMap := map[string]string{}
	var total int64
	for i, tensors := range shards {
		name := ShardName(prefix, i+1, len(shards))
		if err := WriteSafetensors(filepath.Join(dir, name), tensors, map[string]string{"format": "pt"}); err != nil {
			return "", err
		}
		for _, t := range tensors {
			weightMap[t.Name] = name
			n, _ := t.bytes()
			total += n
		}
	}
	index := map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}
	js, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, prefix+safetensors.IndexSuffix)
	if err := os.WriteFile(p, js, 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// Facts of the set ThreeShards describes.
const (
	WantShards            = 3
	WantShardedTensors    = 9
	WantShardedDTypes     = "BF16=6,F32=3"
	WantShardedParameters = 3 * (64*128 + 128*64 + 128)
)

// ThreeShards describes a three-shard set of a tiny transformer: each
// shard holds one block (two BF16 matrices and an F32 norm).
func ThreeShards() [][]STensor {
	var shards [][]STensor
	for b := 0; b < 3; b++ {
		p := fmt.Sprintf("model.layers.%d.", b)
		shards = append(shards, []STensor{
			{Name: p + "mlp.up_proj.weight", DType: "BF16", Shape: []int64{64, 128}},
			{Name: p + "mlp.down_proj.weight", DType: "BF16", Shape: []int64{128, 64}},
			{Name: p + "input_layernorm.weight", DType: "F32", Shape: []int64{128}},
		})
	}
	return shards
}

// ShardedSafetensors writes ThreeShards into dir as model-0000i-of-00003
// with model.safetensors.index.json and returns the index's path.
func ShardedSafetensors(t testing.TB, dir string) string {
	t.Helper()
	p, err := WriteShardedSafetensors(dir, "model", ThreeShards())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// HFFiles are the files HFDirectory writes beside the shards and the
// index, with the kind modelfile must give each.
var HFFiles = map[string]string{
	"config.json":             "weight.config",
	"generation_config.json":  "weight.config",
	"tokenizer.json":          "weight.config",
	"tokenizer_config.json":   "weight.config",
	"special_tokens_map.json": "weight.config",
	"README.md":               "doc",
	"LICENSE":                 "doc",
}

// Facts of the directory HFDirectory writes, beyond the set's.
const (
	WantHFArchitecture  = "LlamaForCausalLM"
	WantHFContextLength = 2048
	WantHFFiles         = 7 + 3 + 1
)

// WriteHFDirectory writes a Hugging Face-style model directory into dir:
// config and tokenizer files, a README and a licence, three safetensors
// shards and their index.
func WriteHFDirectory(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	config := map[string]any{
		"architectures": []string{WantHFArchitecture}, "model_type": "llama",
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
		"max_position_embeddings": WantHFContextLength, "torch_dtype": "bfloat16",
	}
	vocab := map[string]int{}
	for i := 0; i < 32; i++ {
		vocab[fmt.Sprintf("t%d", i)] = i
	}
	contents := map[string]any{
		"config.json":             config,
		"generation_config.json":  map[string]any{"bos_token_id": 1, "eos_token_id": 2},
		"tokenizer.json":          map[string]any{"version": "1.0", "model": map[string]any{"type": "BPE", "vocab": vocab, "merges": []string{"t t"}}},
		"tokenizer_config.json":   map[string]any{"model_max_length": WantHFContextLength},
		"special_tokens_map.json": map[string]any{"bos_token": "<s>", "eos_token": "</s>"},
	}
	names := make([]string, 0, len(contents))
	for n := range contents {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		js, err := json.MarshalIndent(contents[n], "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, n), js, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# tiny-llama-test\n\nA model written by modelfiletest.\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "LICENSE"), []byte("Apache License 2.0 (test fixture)\n"), 0o644); err != nil {
		return err
	}
	_, err := WriteShardedSafetensors(dir, "model", ThreeShards())
	return err
}

// HFDirectory writes WriteHFDirectory's files into dir/name and returns
// that directory.
func HFDirectory(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := WriteHFDirectory(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// littleEndianU64 is the 8-byte header length prefix, for hostile tests.
func littleEndianU64(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }

// SafetensorsWithHeader returns a file whose header is the given JSON
// (unpadded) followed by data: the raw material of hostile tests.
func SafetensorsWithHeader(header string, data []byte) []byte {
	out := littleEndianU64(uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}
