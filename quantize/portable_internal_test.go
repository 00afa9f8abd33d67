package quantize

import (
	"math/rand/v2"
	"testing"
)

func TestPortableScale(t *testing.T) {
	tests := []struct {
		name           string
		amax, pos, neg float32
		scale          float32
		narrowed       bool
	}{
		{"no pair past the largest weight", 1.27, 1.27, 0.5, 0.01, false},
		{"a pair just inside", 1.27, 1.27 * 127.99 / 127, 0, 0.01, false},
		{"two large neighbours of one sign", 1.27, 2.54, 0, 2.54 / pairSpan, true},
		{"negative pair", 1, 0.2, 1.9, 1.9 / pairSpan, true},
		{"all zero", 0, 0, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, n := portableScale(tc.amax, tc.pos, tc.neg)
			if n != tc.narrowed || abs(s-tc.scale) > 1e-6*tc.scale {
				t.Fatalf("portableScale(%v, %v, %v) = %v, %v; want %v, %v", tc.amax, tc.pos, tc.neg, s, n, tc.scale, tc.narrowed)
			}
			// Never wider than reduce-range's 7 bits.
			if tc.amax > 0 && s > tc.amax/63.5 {
				t.Fatalf("scale %v wider than reduce-range's %v", s, tc.amax/64)
			}
		})
	}
}

func TestPairPeaks(t *testing.T) {
	// 3 rows of 2 columns: pairs are rows (0,1) and (2, zero).
	v := []float32{
		1, -2,
		3, -1,
		-5, 4,
	}
	pos, neg := make([]float32, 2), make([]float32, 2)
	if err := pairPeaks(v, 2, pos, neg); err != nil {
		t.Fatal(err)
	}
	if pos[0] != 4 || neg[0] != 5 || pos[1] != 4 || neg[1] != 3 {
		t.Fatalf("per column: pos %v neg %v, want [4 4] [5 3]", pos, neg)
	}
	pos, neg = make([]float32, 1), make([]float32, 1)
	if err := pairPeaks(v, 2, pos, neg); err != nil {
		t.Fatal(err)
	}
	if pos[0] != 4 || neg[0] != 5 {
		t.Fatalf("per tensor: pos %v neg %v, want 4 5", pos, neg)
	}
}

func TestFixPairs(t *testing.T) {
	b := func(v ...int8) []byte {
		out := make([]byte, len(v))
		for i, x := range v {
			out[i] = byte(x)
		}
		return out
	}
	q := b(127, 64, -100, 127,
		10, 64, -29, -127)
	if n := PairOverflows(q, 4); n != 2 {
		t.Fatalf("PairOverflows = %d, want 2 (columns 0 and 2)", n)
	}
	if n := fixPairs(q, 4); n != 2 {
		t.Fatalf("fixPairs changed %d pairs, want 2", n)
	}
	want := b(118, 64, -99, 127,
		10, 64, -29, -127)
	for i := range q {
		if q[i] != want[i] {
			t.Fatalf("after fixPairs %v, want %v", q, want)
		}
	}
	if n := PairOverflows(q, 4); n != 0 {
		t.Fatalf("%d pairs still overflow", n)
	}
	// Random rows: after fixPairs nothing overflows, and only overflowing
	// pairs changed.
	r := rand.New(rand.NewPCG(1, 2))
	q = make([]byte, 64*33)
	for i := range q {
		q[i] = byte(int8(r.IntN(255) - 127))
	}
	orig := append([]byte(nil), q...)
	fixed := fixPairs(q, 33)
	if fixed == 0 || PairOverflows(q, 33) != 0 {
		t.Fatalf("fixed %d pairs, %d still overflow", fixed, PairOverflows(q, 33))
	}
	changed := int64(0)
	for i := range q {
		if q[i] != orig[i] {
			changed++
		}
	}
	if changed != fixed {
		t.Fatalf("%d bytes changed for %d pairs fixed", changed, fixed)
	}
}
