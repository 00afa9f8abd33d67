package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
)

// Quality says how close an output is to the baseline's. A NaN metric means
// the outputs held NaN or Inf; gates treat it as a failure.
type Quality struct {
	// Cosine similarity of the flattened outputs, in [-1, 1]; 1 when both are zero.
	Cosine float64 `json:"cosine"`
	// MSE, MAE and MaxAbs are the mean squared, mean absolute and largest
	// absolute element-wise differences.
	MSE    float64 `json:"mse"`
	MAE    float64 `json:"mae"`
	MaxAbs float64 `json:"max_abs"`
	// Top1 is the fraction of rows (all axes but the last) whose argmax
	// agrees, set only when the output looks like class scores.
	Top1 *float64 `json:"top1_agreement,omitempty"`
}

// MarshalJSON writes NaN and Inf metrics as null, which encoding/json cannot
// represent as numbers.
func (q Quality) MarshalJSON() ([]byte, error) {
	num := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(struct {
		Cosine *float64 `json:"cosine"`
		MSE    *float64 `json:"mse"`
		MAE    *float64 `json:"mae"`
		MaxAbs *float64 `json:"max_abs"`
		Top1   *float64 `json:"top1_agreement,omitempty"`
	}{num(q.Cosine), num(q.MSE), num(q.MAE), num(q.MaxAbs), q.Top1})
}

// UnmarshalJSON reads what MarshalJSON writes, null as NaN.
func (q *Quality) UnmarshalJSON(b []byte) error {
	var raw struct {
		Cosine, MSE, MAE, MaxAbs *float64
		Top1                     *float64 `json:"top1_agreement"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	val := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	*q = Quality{Cosine: val(raw.Cosine), MSE: val(raw.MSE), MAE: val(raw.MAE), MaxAbs: val(raw.MaxAbs), Top1: raw.Top1}
	return nil
}

// Similarity compares an output with the baseline's (ref). Both must have
// the same shape and a floating-point type (float32, float16, bfloat16 or
// float64, converted as needed; their types may differ, e.g. an fp16 model
// against its fp32 parent).
func Similarity(ref, got Tensor) (Quality, error) {
	if !ref.IsFloat() || !got.IsFloat() {
		return Quality{}, fmt.Errorf("compare %q: similarity needs float outputs, got %s and %s", ref.Name, ref.DType, got.DType)
	}
	if !slices.Equal(ref.Shape, got.Shape) {
		return Quality{}, fmt.Errorf("compare %q: shape %v differs from the baseline's %v", ref.Name, got.Shape, ref.Shape)
	}
	a, err := ref.Float64s()
	if err != nil {
		return Quality{}, fmt.Errorf("compare %q: baseline: %w", ref.Name, err)
	}
	b, err := got.Float64s()
	if err != nil {
		return Quality{}, fmt.Errorf("compare %q: %w", ref.Name, err)
	}
	var dot, na, nb, se, ae, maxAbs float64
	for i := range a {
		d := b[i] - a[i]
		dot += a[i] * b[i]
		na += a[i] * a[i]
		nb += b[i] * b[i]
		se += d * d
		ae += math.Abs(d)
		// A NaN difference must poison MaxAbs, which math.Max does and > does not.
		maxAbs = math.Max(maxAbs, math.Abs(d))
	}
	q := Quality{MaxAbs: maxAbs}
	if n := float64(len(a)); n > 0 {
		q.MSE, q.MAE = se/n, ae/n
	}
	switch {
	case na == 0 && nb == 0:
		q.Cosine = 1
	case na == 0 || nb == 0:
		q.Cosine = 0
	default:
		q.Cosine = dot / (math.Sqrt(na) * math.Sqrt(nb))
		if q.Cosine > 1 { // rounding of identical vectors
			q.Cosine = 1
		}
	}
	if looksLikeScores(ref, a) {
		t := top1(a, b, int(ref.Shape[len(ref.Shape)-1]))
		q.Top1 = &t
	}
	return q, nil
}

var scoreName = regexp.MustCompile(`(?i)logit|score|prob|class|cls|softmax|label|pred`)

// looksLikeScores: a float output whose last axis has at least two entries
// and that is named like scores or whose rows are probability distributions.
func looksLikeScores(t Tensor, v []float64) bool {
	if len(t.Shape) < 2 || t.Shape[len(t.Shape)-1] < 2 || len(v) == 0 {
		return false
	}
	if scoreName.MatchString(t.Name) {
		return true
	}
	n := int(t.Shape[len(t.Shape)-1])
	for row := 0; row+n <= len(v); row += n {
		sum := 0.0
		for _, x := range v[row : row+n] {
			if x < 0 || x > 1 {
				return false
			}
			sum += x
		}
		if math.Abs(sum-1) > 1e-3 {
			return false
		}
	}
	return true
}

// top1 is the fraction of rows of length n whose argmax agrees.
func top1(a, b []float64, n int) float64 {
	rows, same := 0, 0
	for off := 0; off+n <= len(a); off += n {
		rows++
		if argmax(a[off:off+n]) == argmax(b[off:off+n]) {
			same++
		}
	}
	if rows == 0 {
		return 1
	}
	return float64(same) / float64(rows)
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
