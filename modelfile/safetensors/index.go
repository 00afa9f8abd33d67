package safetensors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// MaxIndex bounds the size of an index file. The largest real ones (tens of
// thousands of tensors) are a few MiB.
const MaxIndex = 64 << 20

// IndexSuffix ends the name of a sharded set's index
// (model.safetensors.index.json).
const IndexSuffix = ".safetensors.index.json"

// Index is a sharded set's index: which shard holds each tensor.
type Index struct {
	// WeightMap maps a tensor name to the shard file that holds it, a path
	// relative to the index's directory as written in the file.
	WeightMap map[string]string
	// TotalSize is metadata.total_size when the index states it.
	TotalSize int64
}

// SniffIndex reports whether the first bytes of a file look like JSON (an
// object); ParseIndex decides whether it is an index.
func SniffIndex(head []byte) bool {
	for _, c := range head {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

// ParseIndex reads an index (at most MaxIndex bytes) from r.
func ParseIndex(r io.Reader) (*Index, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxIndex+1))
	if err != nil {
		return nil, fmt.Errorf("safetensors index: read: %w", err)
	}
	if len(data) > MaxIndex {
		return nil, errf("index is over the %d MiB limit", MaxIndex>>20)
	}
	var raw struct {
		Metadata  map[string]any    `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, errf("index is not a JSON object with a weight_map of strings: %v", err)
	}
	if dec.More() {
		return nil, errf("index has data after its JSON object")
	}
	if len(raw.WeightMap) == 0 {
		return nil, errf("index has no weight_map (or an empty one)")
	}
	ix := &Index{WeightMap: raw.WeightMap}
	for name, shard := range raw.WeightMap {
		if shard == "" {
			return nil, errf("index maps tensor %q to an empty file name", name)
		}
	}
	if n, ok := raw.Metadata["total_size"].(json.Number); ok {
		if v, err := n.Int64(); err == nil && v >= 0 {
			ix.TotalSize = v
		}
	}
	return ix, nil
}

// Shards lists the shard files the index names, sorted.
func (ix *Index) Shards() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ix.WeightMap {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// TensorsIn lists the tensors the index maps to shard, sorted.
func (ix *Index) TensorsIn(shard string) []string {
	var out []string
	for name, s := range ix.WeightMap {
		if s == shard {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
