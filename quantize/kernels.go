package quantize

import (
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"runtime/debug"
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

// errFault is a memory fault while reading mapped weights: the file
// shrank under us. Faults become this error instead of crashing.
var errFault = errors.New("memory fault reading the weights (was the model's data file truncated while quantizing?)")

// parallel splits [0, n) into one contiguous part per CPU (parts are
// multiples of align) and runs fn on each. Small inputs run inline.
func parallel(n, align int, fn func(lo, hi int)) error {
	workers := runtime.GOMAXPROCS(0)
	if n < 1<<16 || workers == 1 {
		return guard(func() { fn(0, n) })
	}
	per := (n/workers + align - 1) / align * align
	var wg sync.WaitGroup
	var mu sync.Mutex
	var err error
	for lo := 0; lo < n; lo += per {
		hi := min(n, lo+per)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e := guard(func() { fn(lo, hi) }); e != nil {
				mu.Lock()
				err = e
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return err
}

// guard runs fn with memory faults (SIGBUS on a mapped file that was
// truncated) turned into errFault.
func guard(fn func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if e := recover(); e != nil {
			// SetPanicOnFault panics with a runtime.Error that has Addr.
			if _, ok := e.(interface{ Addr() uintptr }); ok {
				err = errFault
				return
			}
			panic(e)
		}
	}()
	fn()
	return nil
}

// rangeOf returns min and max of v (0 included, as the quantizers want),
// and whether v holds NaN or Inf.
func rangeOf(v []float32) (lo, hi float32, bad bool, err error) {
	var mu sync.Mutex
	err = parallel(len(v), 1, func(a, b int) {
		l, h, nan := rangeSeq(v[a:b])
		mu.Lock()
		lo, hi, bad = min(lo, l), max(hi, h), bad || nan
		mu.Unlock()
	})
	bad = bad || math.IsInf(float64(lo), 0) || math.IsInf(float64(hi), 0)
	return lo, hi, bad, err
}

// rangeSeq keeps four independent minima and maxima so that the loop is not
// one long dependency chain (twice as fast as the plain loop).
func rangeSeq(v []float32) (lo, hi float32, nan bool) {
	var l0, l1, l2, l3, h0, h1, h2, h3 float32
	i := 0
	for ; i+4 <= len(v); i += 4 {
		x := v[i : i+4 : i+4]
		a, b, c, d := x[0], x[1], x[2], x[3]
		if a < l0 {
			l0 = a
		}
		if a > h0 {
			h0 = a
		}
		if b < l1 {
			l1 = b
		}
		if b > h1 {
			h1 = b
		}
		if c < l2 {
			l2 = c
		}
		if c > h2 {
			h2 = c
		}
		if d < l3 {
			l3 = d
		}
		if d > h3 {
			h3 = d
		}
		nan = nan || a != a || b != b || c != c || d != d
	}
	for ; i < len(v); i++ {
		if v[i] < l0 {
			l0 = v[i]
		}
		if v[i] > h0 {
			h0 = v[i]
		}
		nan = nan || v[i] != v[i]
	}
	return min(l0, l1, l2, l3), max(h0, h1, h2, h3), nan
}

// columnRanges folds the rows of v (row length n) into per-column lo/hi.
func columnRanges(v []float32, n int, lo, hi []float32) (bad bool, err error) {
	var mu sync.Mutex
	err = parallel(len(v), n, func(a, b int) {
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
	return bad, err
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
func quantizeTo(q []byte, v []float32, inv, zp []float32, qmin, qmax float32) error {
	n := len(inv)
	return parallel(len(v), n, func(a, b int) {
		if n == 1 {
			quantizeSeq(q[a:b], v[a:b], inv[0], zp[0], qmin, qmax)
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

// quantizeSeq is the per-tensor loop, kept free of captured variables so
// the compiler holds everything in registers.
func quantizeSeq(q []byte, v []float32, inv, zp, qmin, qmax float32) {
	q = q[:len(v)]
	for i, x := range v {
		q[i] = clampByte(rne(x*inv)+zp, qmin, qmax)
	}
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
