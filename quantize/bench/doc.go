// Package bench measures ONNX models with onnxruntime and compares a model's
// outputs with a baseline's: latency, load time, peak memory, file sizes and
// output similarity, with quality gates on top.
//
// It is the only cgo package of modelctl (through github.com/yalue/onnxruntime_go,
// which loads the onnxruntime shared library at run time). Everything that does
// not call onnxruntime (tensors, .npy files, model input discovery, statistics,
// similarity, reports) is plain Go and builds with CGO_ENABLED=0; built without
// cgo, the functions that need onnxruntime return ErrNoCgo.
//
// onnxruntime is found by LibraryPath: an explicit path (--ort-lib), the
// ONNXRUNTIME_LIB environment variable, then the cache that `make ort` fills
// under the module root or next to the binary.
package bench
