// Package synth writes synthetic transformer-like FP32 ONNX models with
// external data of any size, for tests and benchmarks: MB-sized ones for
// unit tests, GB-sized ones for `make bench`. The data file is streamed, so
// memory does not grow with the model.
package synth

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/modelctl/modelctl/quantize/onnx"
	"github.com/modelctl/modelctl/quantize/onnx/onnxpb"
)

// Config shapes the model. Zero values pick defaults; WeightBytes, when
// set, decides the layer count (or the hidden size if Layers is set too).
type Config struct {
	WeightBytes int64 // total weight bytes (KB..GB), rounded up to whole layers
	Layers      int   // transformer blocks (default: from WeightBytes, else 2)
	Hidden      int   // model width (default 256; a multiple of 8)
	FFN         int   // feed-forward width multiplier (default 4)
	Seed        uint64
	Name        string // file name, default model.onnx (data: NAME.data)
}

// Opset of the default ONNX domain the models use (LayerNormalization is 17).
const Opset = 17

// BlockBytes is the FP32 weight bytes of one block of width h and FFN
// multiplier ffn: Q, K, V, O (h×h each), the FFN pair, biases and norms.
func BlockBytes(h, ffn int) int64 {
	hh := int64(h)
	return 4 * (4*hh*hh + 2*int64(ffn)*hh*hh + int64(ffn)*hh + hh + 4*hh)
}

func (c Config) resolve() (Config, error) {
	if c.FFN == 0 {
		c.FFN = 4
	}
	if c.Name == "" {
		c.Name = "model.onnx"
	}
	switch {
	case c.Hidden == 0 && c.WeightBytes > 0 && c.Layers > 0:
		per := float64(c.WeightBytes) / float64(c.Layers) / float64(4*(4+2*c.FFN))
		c.Hidden = max(8, int(math.Round(math.Sqrt(per)/8))*8)
	case c.Hidden == 0:
		c.Hidden = 256
	}
	if c.Layers == 0 {
		c.Layers = 2
		if c.WeightBytes > 0 {
			// Round up: a "4 GiB model" holds at least 4 GiB of weights.
			c.Layers = max(1, int(math.Ceil(float64(c.WeightBytes)/float64(BlockBytes(c.Hidden, c.FFN))-1e-9)))
		}
	}
	if c.Hidden <= 0 || c.Hidden%8 != 0 || c.Hidden > 1<<16 || c.Layers <= 0 || c.Layers > 1<<12 || c.FFN <= 0 || c.FFN > 64 {
		return c, fmt.Errorf("synth: config hidden=%d layers=%d ffn=%d: want hidden a multiple of 8 up to 65536, 1..4096 layers, ffn 1..64", c.Hidden, c.Layers, c.FFN)
	}
	if filepath.Base(c.Name) != c.Name {
		return c, fmt.Errorf("synth: name %q must be a file name", c.Name)
	}
	return c, nil
}

// Generate writes the model into dir (created if needed) and returns the
// .onnx path; its data file is next to it, named after it with ".data".
func Generate(dir string, cfg Config) (string, error) {
	return GenerateContext(context.Background(), dir, cfg)
}

// GenerateContext is Generate with cancellation.
func GenerateContext(ctx context.Context, dir string, cfg Config) (string, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("synth: %w", err)
	}
	path := filepath.Join(dir, cfg.Name)
	w, err := onnx.Create(path)
	if err != nil {
		return "", fmt.Errorf("synth: %w", err)
	}
	defer w.Abort()
	g := &builder{w: w, rng: cfg.Seed*0x9e3779b97f4a7c15 + 0x2545f4914f6cdd1d, ctx: ctx}
	h, f := int64(cfg.Hidden), int64(cfg.FFN)*int64(cfg.Hidden)
	x := "input"
	for l := 0; l < cfg.Layers; l++ {
		p := fmt.Sprintf("layers.%d.", l)
		n := g.layerNorm(p+"attn_norm", x, h)
		q := g.matmul(p+"attn.q", n, h, h)
		k := g.matmul(p+"attn.k", n, h, h)
		v := g.matmul(p+"attn.v", n, h, h)
		kt := g.node("Transpose", p+"attn.kt", []string{k}, ints("perm", 0, 2, 1))
		s := g.node("MatMul", p+"attn.scores", []string{q, kt})
		sc := g.scalar(p+"attn.scale", float32(1/math.Sqrt(float64(h))))
		s = g.node("Mul", p+"attn.scaled", []string{s, sc})
		s = g.node("Softmax", p+"attn.softmax", []string{s}, intAttr("axis", -1))
		a := g.node("MatMul", p+"attn.ctx", []string{s, v})
		o := g.matmul(p+"attn.o", a, h, h)
		x = g.node("Add", p+"attn.residual", []string{x, o})
		n = g.layerNorm(p+"ffn_norm", x, h)
		u := g.matmul(p+"ffn.up", n, h, f)
		u = g.node("Add", p+"ffn.up_bias", []string{u, g.weight(p+"ffn.up.bias", []int64{f}, 0.02)})
		sg := g.node("Sigmoid", p+"ffn.sigmoid", []string{u})
		u = g.node("Mul", p+"ffn.silu", []string{u, sg})
		d := g.matmul(p+"ffn.down", u, f, h)
		d = g.node("Add", p+"ffn.down_bias", []string{d, g.weight(p+"ffn.down.bias", []int64{h}, 0.02)})
		x = g.node("Add", p+"ffn.residual", []string{x, d})
	}
	out := g.layerNorm("final_norm", x, h)
	g.nodes = append(g.nodes, &onnxpb.NodeProto{Name: proto.String("output"), OpType: proto.String("Identity"), Input: []string{out}, Output: []string{"output"}})
	if g.err != nil {
		return "", fmt.Errorf("synth: %w", g.err)
	}
	io3 := func(name string) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(onnx.Float),
			Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
				{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
				{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "tokens"}},
				{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: h}},
			}},
		}}}}
	}
	m := &onnxpb.ModelProto{
		IrVersion:       proto.Int64(8),
		ProducerName:    proto.String("modelctl-synth"),
		ProducerVersion: proto.String("1"),
		OpsetImport:     []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(Opset)}},
		DocString:       proto.String(fmt.Sprintf("synthetic transformer: %d layers, hidden %d, ffn %d, seed %d", cfg.Layers, cfg.Hidden, cfg.FFN, cfg.Seed)),
		Graph: &onnxpb.GraphProto{
			Name:        proto.String("synth"),
			Node:        g.nodes,
			Initializer: g.inits,
			Input:       []*onnxpb.ValueInfoProto{io3("input")},
			Output:      []*onnxpb.ValueInfoProto{io3("output")},
		},
	}
	if err := w.Commit(m); err != nil {
		return "", fmt.Errorf("synth: %w", err)
	}
	return path, nil
}

type builder struct {
	w     *onnx.Writer
	ctx   context.Context
	rng   uint64
	nodes []*onnxpb.NodeProto
	inits []*onnxpb.TensorProto
	err   error
	buf   []byte
}

func (g *builder) node(op, name string, in []string, attrs ...*onnxpb.AttributeProto) string {
	g.nodes = append(g.nodes, &onnxpb.NodeProto{Name: proto.String(name), OpType: proto.String(op), Input: in, Output: []string{name}, Attribute: attrs})
	return name
}

func (g *builder) matmul(name, x string, k, n int64) string {
	w := g.weight(name+".weight", []int64{k, n}, float32(math.Sqrt(3/float64(k))))
	return g.node("MatMul", name, []string{x, w})
}

func (g *builder) layerNorm(name, x string, h int64) string {
	s := g.constant(name+".weight", h, 1)
	b := g.constant(name+".bias", h, 0)
	return g.node("LayerNormalization", name, []string{x, s, b}, intAttr("axis", -1), floatAttr("epsilon", 1e-5))
}

func (g *builder) scalar(name string, v float32) string {
	t := &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(onnx.Float), RawData: binary.LittleEndian.AppendUint32(nil, math.Float32bits(v))}
	g.inits = append(g.inits, t)
	return name
}

func (g *builder) constant(name string, n int64, v float32) string {
	return g.tensor(name, []int64{n}, func(b []byte) {
		for i := 0; i < len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], math.Float32bits(v))
		}
	})
}

// weight writes uniform values in [-a, a] from a seeded xorshift stream,
// so the same Config always gives the same bytes.
func (g *builder) weight(name string, dims []int64, a float32) string {
	return g.tensor(name, dims, func(b []byte) {
		s := g.rng
		for i := 0; i < len(b); i += 4 {
			s ^= s << 13
			s ^= s >> 7
			s ^= s << 17
			u := float32(s>>40) / (1 << 24) // [0,1)
			binary.LittleEndian.PutUint32(b[i:], math.Float32bits((2*u-1)*a))
		}
		g.rng = s
	})
}

func (g *builder) tensor(name string, dims []int64, fill func([]byte)) string {
	if g.err != nil {
		return name
	}
	t := &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(onnx.Float), Dims: dims}
	size, err := onnx.ByteSize(t)
	if err != nil {
		g.err = err
		return name
	}
	if g.buf == nil {
		g.buf = make([]byte, 1<<20)
	}
	g.err = g.w.Tensor(t, size, func(w io.Writer) error {
		for left := size; left > 0; {
			if err := g.ctx.Err(); err != nil {
				return err
			}
			chunk := g.buf[:min(left, int64(len(g.buf)))]
			fill(chunk)
			if _, err := w.Write(chunk); err != nil {
				return err
			}
			left -= int64(len(chunk))
		}
		return nil
	})
	g.inits = append(g.inits, t)
	return name
}

func ints(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func floatAttr(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

// ParseSize parses 123, 64KiB, 16MiB, 4GiB (also KB/MB/GB as powers of 1024).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 || v*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional KiB/MiB/GiB suffix", s)
	}
	return int64(v * float64(mult)), nil
}
