package quantize

import (
	"encoding/binary"
	"math"
	"runtime"
	"sync"
	"unsafe"
)

// littleEndian: on such hosts (all that Go runs ONNX on in practice) raw
// little-endian float32 bytes are used in place, without a decoding copy.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// viewFloats views b as float32s in place, where the host's byte order
// and b's alignment allow it.
func viewFloats(b []byte) ([]float32, bool) {
	n := len(b) / 4
	if !littleEndian || n == 0 || uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n), true
}

// parallel splits [0, n) into one contiguous part per CPU (parts are
// multiples of align) and runs fn on each. Small inputs run inline.
func parallel(n, align int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < 1<<16 || workers == 1 {
		fn(0, n)
		return
	}
	per := (n/workers + align - 1) / align * align
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		hi := min(n, lo+per)
		wg.Add(1)
		go func() { defer wg.Done(); fn(lo, hi) }()
	}
	wg.Wait()
}

// rangeOf returns min and max of v (0 included, as the quantizers want),
// and whether v holds NaN or Inf.
func rangeOf(v []float32) (lo, hi float32, bad bool) {
	var mu sync.Mutex
	parallel(len(v), 1, func(a, b int) {
		var l, h float32
		nan := false
		for _, x := range v[a:b] {
			if x < l {
				l = x
			}
			if x > h {
				h = x
			}
			nan = nan || x != x
		}
		mu.Lock()
		lo, hi, bad = min(lo, l), max(hi, h), bad || nan
		mu.Unlock()
	})
	bad = bad || math.IsInf(float64(lo), 0) || math.IsInf(float64(hi), 0)
	return lo, hi, bad
}

// columnRanges folds the rows of v (row length n) into per-column lo/hi.
func columnRanges(v []float32, n int, lo, hi []float32) (bad bool) {
	var mu sync.Mutex
	parallel(len(v), n, func(a, b int) {
		l, h := make([]float32, n), make([]float32, n)
		nan := false
		for r := a; r < b; r += n {
			row := v[r : r+n]
			for j, x := range row {
				if x < l[j] {
					l[j] = x
				}
				if x > h[j] {
					h[j] = x
				}
				nan = nan || x != x
			}
		}
		mu.Lock()
		for j := range l {
			lo[j], hi[j] = min(lo[j], l[j]), max(hi[j], h[j])
		}
		bad = bad || nan
		mu.Unlock()
	})
	for j := range lo {
		bad = bad || math.IsInf(float64(lo[j]), 0) || math.IsInf(float64(hi[j]), 0)
	}
	return bad
}

// rne rounds half to even (numpy.rint) for |x| < 2^22: adding and
// subtracting 1.5·2^23 leaves no fraction bits, and float addition rounds
// to nearest even.
func rne(x float32) float32 {
	const magic = 12582912
	y := x + magic
	return y - magic
}

// quantizeTo writes clamp(rne(v·inv) + zp) as bytes. inv and zp have one
// entry (per tensor) or one per column of rows of length len(inv).
func quantizeTo(q []byte, v []float32, inv, zp []float32, qmin, qmax float32) {
	n := len(inv)
	parallel(len(v), n, func(a, b int) {
		if n == 1 {
			s, z := inv[0], zp[0]
			out := q[a:b]
			for i, x := range v[a:b] {
				out[i] = clampByte(rne(x*s)+z, qmin, qmax)
			}
			return
		}
		for r := a; r < b; r += n {
			row, out := v[r:r+n], q[r:r+n]
			inv, zp := inv[:len(row)], zp[:len(row)]
			for j, x := range row {
				out[j] = clampByte(rne(x*inv[j])+zp[j], qmin, qmax)
			}
		}
	})
}

// clampByte clamps an integral value to [qmin, qmax] and stores it as its
// int8 or uint8 byte. (Plain comparisons: the min/max builtins' NaN rules
// cost more, and weights were checked to be finite.)
func clampByte(x, qmin, qmax float32) byte {
	if x < qmin {
		x = qmin
	}
	if x > qmax {
		x = qmax
	}
	return byte(int32(x))
}
