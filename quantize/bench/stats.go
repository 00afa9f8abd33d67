package bench

import (
	"math"
	"slices"
	"time"
)

// Latency summarizes timed runs, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

// Summarize computes the latency statistics of runs: percentiles by linear
// interpolation between order statistics (so P95 >= P50 always), the
// sample standard deviation (0 for one run).
func Summarize(runs []time.Duration) Latency {
	if len(runs) == 0 {
		return Latency{}
	}
	ms := make([]float64, len(runs))
	for i, d := range runs {
		ms[i] = float64(d) / float64(time.Millisecond)
	}
	slices.Sort(ms)
	var sum float64
	for _, v := range ms {
		sum += v
	}
	mean := sum / float64(len(ms))
	var ss float64
	for _, v := range ms {
		ss += (v - mean) * (v - mean)
	}
	std := 0.0
	if len(ms) > 1 {
		std = math.Sqrt(ss / float64(len(ms)-1))
	}
	return Latency{
		P50: percentile(ms, 0.50), P95: percentile(ms, 0.95),
		Mean: mean, Std: std, Min: ms[0], Max: ms[len(ms)-1],
	}
}

// percentile of sorted values, q in [0, 1].
func percentile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}
