package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
)

// maxInputBytes bounds one generated input, so a typo in --shape fails
// clearly instead of exhausting memory.
const maxInputBytes = 4 << 30

// ParseShapeFlag parses a --shape value, NAME=1x16x128 (a scalar is NAME=).
func ParseShapeFlag(s string) (string, []int64, error) {
	name, dims, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", nil, fmt.Errorf("--shape %q: want NAME=DIMS, e.g. input_ids=1x16", s)
	}
	shape := []int64{}
	if dims == "" {
		return name, shape, nil
	}
	for _, d := range strings.Split(dims, "x") {
		v, err := strconv.ParseInt(d, 10, 64)
		if err != nil || v < 0 {
			return "", nil, fmt.Errorf("--shape %q: dimension %q is not a non-negative integer", s, d)
		}
		shape = append(shape, v)
	}
	return name, shape, nil
}

// ResolveShape binds an input's declared shape to a concrete one: the
// explicit shape when given (it must agree with every fixed dimension),
// otherwise the declared one with a dynamic leading (batch) dimension set
// to 1; any other dynamic dimension is an error naming the --shape flag.
func ResolveShape(in ValueInfo, explicit []int64) ([]int64, error) {
	example := func() string {
		parts := make([]string, len(in.Shape))
		for i, d := range in.Shape {
			parts[i] = d.String()
			if d.Value < 0 {
				parts[i] = "N"
				if i == 0 || isBatchName(d.Param) {
					parts[i] = "1"
				}
			}
		}
		return fmt.Sprintf("--shape %s=%s", in.Name, strings.Join(parts, "x"))
	}
	if explicit != nil {
		if in.Shape == nil {
			return explicit, nil
		}
		if len(explicit) != len(in.Shape) {
			return nil, fmt.Errorf("input %q: --shape has %d dimensions, the model declares %d (%s)", in.Name, len(explicit), len(in.Shape), dimsString(in.Shape))
		}
		for i, d := range in.Shape {
			if d.Value >= 0 && d.Value != explicit[i] {
				return nil, fmt.Errorf("input %q: --shape sets dimension %d to %d, the model fixes it at %d", in.Name, i, explicit[i], d.Value)
			}
		}
		return explicit, nil
	}
	if in.Shape == nil {
		return nil, fmt.Errorf("input %q declares no shape: give one with --shape %s=1x...", in.Name, in.Name)
	}
	shape := make([]int64, len(in.Shape))
	for i, d := range in.Shape {
		switch {
		case d.Value >= 0:
			shape[i] = d.Value
		case i == 0 || isBatchName(d.Param):
			shape[i] = 1
		default:
			name := d.Param
			if name == "" {
				name = "unnamed"
			}
			return nil, fmt.Errorf("input %q (%s): dimension %d (%s) is dynamic: bind it with %s", in.Name, dimsString(in.Shape), i, name, example())
		}
	}
	return shape, nil
}

var batchName = regexp.MustCompile(`(?i)^(n|b|batch|batch_?size|bs|unk__\d+_batch)$`)

func isBatchName(s string) bool { return batchName.MatchString(s) }

func dimsString(dims []Dim) string {
	parts := make([]string, len(dims))
	for i, d := range dims {
		parts[i] = d.String()
	}
	return "[" + strings.Join(parts, "x") + "]"
}

// GenerateInputs makes one seeded tensor for each declared input of the
// model, in declared order. shapes binds dynamic dimensions by input name.
// Values depend on the type and, for integers, on the name, so that common
// models accept them: floats are uniform in [-1, 1); masks are all ones;
// position ids count along the last axis; token type ids are 0; a sample
// rate ("sr") is 16000; other integers are uniform in [0, 32); booleans are
// true. Inputs that need other values are given as .npy files instead.
func GenerateInputs(modelPath string, shapes map[string][]int64, seed int64) ([]Tensor, error) {
	info, err := ReadModelInfo(modelPath)
	if err != nil {
		return nil, err
	}
	return generate(info, shapes, nil, seed)
}

// generate builds the inputs of a model: given ones (from .npy files) by
// name, generated ones for the rest.
func generate(info *ModelInfo, shapes map[string][]int64, given map[string]Tensor, seed int64) ([]Tensor, error) {
	known := map[string]bool{}
	for _, in := range info.Inputs {
		known[in.Name] = true
	}
	for name := range shapes {
		if !known[name] {
			return nil, fmt.Errorf("--shape %s: the model has no input %q (inputs: %s)", name, name, inputNames(info))
		}
	}
	for name := range given {
		if !known[name] {
			return nil, fmt.Errorf("--input %s: the model has no input %q (inputs: %s)", name, name, inputNames(info))
		}
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6d6f64656c63746c))
	out := make([]Tensor, 0, len(info.Inputs))
	for _, in := range info.Inputs {
		if in.NotTensor {
			return nil, fmt.Errorf("input %q is not a tensor (sequence, map or optional): the benchmark cannot feed it", in.Name)
		}
		if t, ok := given[in.Name]; ok {
			if t.DType != in.DType {
				// Floats convert (a float32 file for an fp16 model); other
				// mismatches are mistakes worth hearing about.
				c, err := castFloat(t, in.DType)
				if err != nil {
					return nil, fmt.Errorf("--input %s: the file holds %s, the model wants %s", in.Name, t.DType, in.DType)
				}
				t = c
			}
			if _, err := ResolveShape(in, t.Shape); err != nil {
				return nil, fmt.Errorf("--input %s: %w", in.Name, err)
			}
			t.Name = in.Name
			out = append(out, t)
			continue
		}
		shape, err := ResolveShape(in, shapes[in.Name])
		if err != nil {
			return nil, err
		}
		t, err := fill(in.Name, in.DType, shape, rng)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func inputNames(info *ModelInfo) string {
	names := make([]string, len(info.Inputs))
	for i, in := range info.Inputs {
		names[i] = in.Name
	}
	return strings.Join(names, ", ")
}

var (
	maskName     = regexp.MustCompile(`(?i)mask`)
	positionName = regexp.MustCompile(`(?i)position|pos_?ids`)
	typeName     = regexp.MustCompile(`(?i)token_?type|segment`)
	rateName     = regexp.MustCompile(`(?i)^(sr|sample_?rate|sampling_?rate)$`)
)

func fill(name, dtype string, shape []int64, rng *rand.Rand) (Tensor, error) {
	n, err := NumElements(shape)
	if err != nil {
		return Tensor{}, fmt.Errorf("input %q: %w", name, err)
	}
	size, ok := dtypeSize[dtype]
	if !ok {
		return Tensor{}, fmt.Errorf("input %q: cannot generate values of type %s: give it with --input %s=FILE.npy", name, dtype, name)
	}
	if n*int64(size) > maxInputBytes {
		return Tensor{}, fmt.Errorf("input %q: shape %v needs %d bytes, more than the %d allowed", name, shape, n*int64(size), int64(maxInputBytes))
	}
	last := int64(1)
	if len(shape) > 0 && shape[len(shape)-1] > 0 {
		last = shape[len(shape)-1]
	}
	intAt := func(i int64) int64 {
		switch {
		case maskName.MatchString(name):
			return 1
		case positionName.MatchString(name):
			return i % last
		case typeName.MatchString(name):
			return 0
		case rateName.MatchString(name):
			return 16000
		}
		return rng.Int64N(32)
	}
	t := Tensor{Name: name, DType: dtype, Shape: shape}
	switch dtype {
	case Float32:
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.Float64()*2 - 1)
		}
		t.Data = d
	case Float64:
		d := make([]float64, n)
		for i := range d {
			d[i] = rng.Float64()*2 - 1
		}
		t.Data = d
	case Float16, BFloat16:
		d := make([]uint16, n)
		for i := range d {
			f := float32(rng.Float64()*2 - 1)
			if dtype == Float16 {
				d[i] = Float32ToHalf(f)
			} else {
				d[i] = uint16(math.Float32bits(f) >> 16)
			}
		}
		t.Data = d
	case Int64:
		t.Data = intsFrom[int64](n, intAt)
	case Int32:
		t.Data = intsFrom[int32](n, intAt)
	case Uint32:
		t.Data = intsFrom[uint32](n, intAt)
	case Uint64:
		t.Data = intsFrom[uint64](n, intAt)
	case Int16:
		t.Data = intsFrom[int16](n, intAt)
	case Uint16:
		t.Data = intsFrom[uint16](n, intAt)
	case Int8:
		t.Data = intsFrom[int8](n, intAt)
	case Uint8:
		t.Data = intsFrom[uint8](n, intAt)
	case Bool:
		d := make([]bool, n)
		for i := range d {
			d[i] = true
		}
		t.Data = d
	}
	return t, nil
}

// intsFrom makes n integers of type T from the generator at.
func intsFrom[T int8 | uint8 | int16 | uint16 | int32 | uint32 | int64 | uint64](n int64, at func(int64) int64) []T {
	d := make([]T, n)
	for i := range d {
		d[i] = T(at(int64(i)))
	}
	return d
}
