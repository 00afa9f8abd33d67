package modelfiletest_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/modelfile/gguf"
	"github.com/modelctl/modelctl/modelfile/modelfiletest"
)

// A spec the format cannot hold is an error, and no file is left behind.
func TestWriteGGUFRefusesBadSpec(t *testing.T) {
	dir := t.TempDir()
	for name, spec := range map[string]modelfiletest.GGUFSpec{
		"string as uint32": {KVs: []modelfiletest.GGUFKV{{Key: "k", Type: gguf.TypeUint32, Value: "7"}}},
		"unknown type":     {KVs: []modelfiletest.GGUFKV{{Key: "k", Type: 42, Value: 1}}},
		"array of maps":    {KVs: []modelfiletest.GGUFKV{{Key: "k", Type: gguf.TypeArray, Value: []map[string]int{}}}},
		"partial block":    {Tensors: []modelfiletest.GGUFTensor{{Name: "t", Dims: []uint64{100}, Type: gguf.TensorQ4_K}}},
		"short data":       {Tensors: []modelfiletest.GGUFTensor{{Name: "t", Dims: []uint64{4}, Type: gguf.TensorF32, Data: []byte{1}}}},
	} {
		p := filepath.Join(dir, "x.gguf")
		if err := modelfiletest.WriteGGUF(p, spec); err == nil {
			t.Errorf("%s: written", name)
		}
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: left %s behind (%v)", name, p, err)
		}
	}
}

func TestEncodeSafetensorsRefusesBadTensor(t *testing.T) {
	for _, ts := range [][]modelfiletest.STensor{
		{{Name: "a", DType: "F128", Shape: []int64{1}}},
		{{Name: "a", DType: "F32", Shape: []int64{2}, Data: []byte{1, 2, 3}}},
	} {
		if err := modelfiletest.EncodeSafetensors(io.Discard, ts, nil); err == nil || !strings.Contains(err.Error(), "tensor a") {
			t.Errorf("%+v: %v", ts, err)
		}
	}
}

// Same spec, same bytes: digests in tests are stable.
func TestDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := modelfiletest.WriteHFDirectory(p); err != nil {
			t.Fatal(err)
		}
	}
	for name := range modelfiletest.HFFiles {
		x, _ := os.ReadFile(filepath.Join(a, name))
		y, _ := os.ReadFile(filepath.Join(b, name))
		if len(x) == 0 || string(x) != string(y) {
			t.Errorf("%s differs", name)
		}
	}
	x, _ := os.ReadFile(filepath.Join(a, modelfiletest.ShardName("model", 2, 3)))
	y, _ := os.ReadFile(filepath.Join(b, modelfiletest.ShardName("model", 2, 3)))
	z, _ := os.ReadFile(filepath.Join(b, modelfiletest.ShardName("model", 3, 3)))
	if len(x) == 0 || string(x) != string(y) || string(y) == string(z) {
		t.Error("shards are not deterministic and distinct")
	}
}
