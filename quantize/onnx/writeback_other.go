//go:build !linux

package onnx

import "os"

func startWriteback(*os.File, int64, int64) {}
