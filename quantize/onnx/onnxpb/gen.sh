#!/usr/bin/env bash
# Regenerates onnx.pb.go from Debian libonnx-dev's onnx.proto (onnx 1.12, IR 8).
# Needs: apt-get install libonnx-dev protobuf-compiler, and
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
# Run with `go generate ./quantize/onnx/onnxpb`.
set -euo pipefail
cd "$(dirname "$0")"
src=${ONNX_PROTO:-/usr/include/onnx/onnx.proto}
cp "$src" onnx.proto
PATH="$(go env GOPATH)/bin:$(cd ../../.. && pwd)/.cache/bin:$PATH" \
protoc --proto_path=. \
	--go_out=. --go_opt=paths=source_relative \
	--go_opt=Monnx.proto=github.com/modelctl/modelctl/quantize/onnx/onnxpb \
	onnx.proto
