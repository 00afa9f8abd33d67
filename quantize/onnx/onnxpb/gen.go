// Package onnxpb holds the Go types generated from onnx.proto (Debian's
// libonnx-dev, onnx 1.12). Never edit onnx.pb.go by hand: run gen.sh.
package onnxpb

//go:generate ./gen.sh
