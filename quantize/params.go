package quantize

import "math"

// qrange is the integer range weights are quantized to, as onnxruntime's
// quantizer chooses it (quant_utils.get_qmin_qmax_for_qType).
func qrange(uint8w, reduce bool) (qmin, qmax float32) {
	switch {
	case uint8w && reduce:
		return 0, 127
	case uint8w:
		return 0, 255
	case reduce:
		// 7 bits: u8 activations × s8 weights summed in pairs stay inside
		// int16, so AVX2 kernels without VNNI (vpmaddubsw) never saturate.
		return -64, 64
	}
	return -127, 127
}

// scaleZP computes scale and zero point for values in [rmin, rmax]: int8
// weights are symmetric (zero point 0), uint8 weights asymmetric, as in
// onnxruntime's compute_scale_zp.
func scaleZP(rmin, rmax float32, uint8w, reduce bool) (scale, zp float32) {
	qmin, qmax := qrange(uint8w, reduce)
	rmin, rmax = min(rmin, 0), max(rmax, 0)
	if !uint8w {
		a := max(-rmin, rmax)
		rmin, rmax = -a, a
	}
	scale = (rmax - rmin) / (qmax - qmin)
	if scale == 0 || math.IsInf(float64(scale), 0) || math.IsNaN(float64(scale)) {
		// All zeros (or non-finite values, refused earlier): any scale works.
		return 1, 0
	}
	if !uint8w {
		return scale, 0
	}
	zp = float32(math.RoundToEven(float64(qmin - rmin/scale)))
	return scale, min(max(zp, qmin), qmax)
}

// quant rounds x/scale half to even (numpy.rint), adds zp and clamps.
func quant(x, inv, zp, qmin, qmax float32) float32 {
	return min(max(rne(x*inv)+zp, qmin), qmax)
}
