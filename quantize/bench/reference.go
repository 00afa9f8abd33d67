package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// ReferenceSchema is the version of the reference format.
const ReferenceSchema = 1

// MaxReferenceBytes bounds the tensors a report carries as its reference:
// the check travels with the artifact and is replayed on every server, so
// it stays small. A larger one is left out of the report (with a note).
const MaxReferenceBytes = 16 << 20

// Reference is what a server needs to check a model before switching to
// it: the inputs the model was benchmarked with, the baseline's (FP32
// parent's) outputs for them, and the gates it had to pass. bench --json
// embeds it in the report; push stores it with the artifact as a file
// (MODEL.check.json); sync --check replays it on the server's own CPU.
type Reference struct {
	Schema int   `json:"schema"`
	Gates  Gates `json:"gates"`
	// Quality is what the model scored where it was benchmarked.
	Quality map[string]Quality `json:"quality,omitempty"`
	Inputs  []EncodedTensor    `json:"inputs"`
	Outputs []EncodedTensor    `json:"outputs"`
}

// EncodedTensor is a tensor as a .npy file (base64 in JSON).
type EncodedTensor struct {
	Name string `json:"name"`
	NPY  []byte `json:"npy"`
}

// NewReference encodes inputs and the baseline's outputs; nil, with the
// reason, when they are over MaxReferenceBytes.
func NewReference(inputs, baseline []Tensor, g Gates, q map[string]Quality) (*Reference, string, error) {
	r := &Reference{Schema: ReferenceSchema, Gates: g, Quality: q}
	var size int64
	enc := func(ts []Tensor) ([]EncodedTensor, error) {
		var out []EncodedTensor
		for _, t := range ts {
			descr, ok := npyDescrOf(t.DType)
			if !ok {
				return nil, fmt.Errorf("reference: %s: dtype %s has no .npy equivalent", t.Name, t.DType)
			}
			var b bytes.Buffer
			if err := encodeNPY(&b, descr, t); err != nil {
				return nil, fmt.Errorf("reference: %s: %w", t.Name, err)
			}
			size += int64(b.Len())
			if size > MaxReferenceBytes {
				return nil, nil
			}
			out = append(out, EncodedTensor{Name: t.Name, NPY: b.Bytes()})
		}
		return out, nil
	}
	var err error
	if r.Inputs, err = enc(inputs); err != nil || size > MaxReferenceBytes {
		return nil, overReference(size), err
	}
	if r.Outputs, err = enc(baseline); err != nil || size > MaxReferenceBytes {
		return nil, overReference(size), err
	}
	return r, "", nil
}

func overReference(size int64) string {
	if size <= MaxReferenceBytes {
		return ""
	}
	return fmt.Sprintf("inputs and baseline outputs are over %d MiB: no reference for sync --check (use smaller --shape)", MaxReferenceBytes>>20)
}

// ParseReference decodes a reference (the MODEL.check.json file).
func ParseReference(b []byte) (*Reference, error) {
	var r Reference
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reference: %w", err)
	}
	if r.Schema != ReferenceSchema {
		return nil, fmt.Errorf("reference: schema %d, this modelctl reads %d", r.Schema, ReferenceSchema)
	}
	if len(r.Inputs) == 0 || len(r.Outputs) == 0 {
		return nil, fmt.Errorf("reference: no inputs or no outputs")
	}
	return &r, nil
}

func decodeTensors(ts []EncodedTensor) ([]Tensor, error) {
	out := make([]Tensor, 0, len(ts))
	for _, e := range ts {
		t, err := readNPY(bytes.NewReader(e.NPY), int64(len(e.NPY)), e.Name)
		if err != nil {
			return nil, fmt.Errorf("reference tensor %q: %w", e.Name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// CheckResult is a model replayed against its reference on this machine.
type CheckResult struct {
	Quality map[string]Quality `json:"quality"`
	Gates   GateResult         `json:"gates"`
	CPU     []string           `json:"cpu_features"`
}

// Check runs the model on the reference inputs through onnxruntime on this
// machine and judges its outputs against the reference (baseline) outputs
// with the reference's gates.
func Check(ctx context.Context, model string, ref *Reference, opts Options) (*CheckResult, error) {
	inputs, err := decodeTensors(ref.Inputs)
	if err != nil {
		return nil, err
	}
	want, err := decodeTensors(ref.Outputs)
	if err != nil {
		return nil, err
	}
	got, err := Run(ctx, model, inputs, opts)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", model, err)
	}
	q, err := compareOutputs(want, got)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", model, err)
	}
	r := &Report{Quality: q}
	r.Judge(ref.Gates)
	return &CheckResult{Quality: q, Gates: r.Gates, CPU: CPUFeatures()}, nil
}
