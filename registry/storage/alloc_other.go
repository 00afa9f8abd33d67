//go:build !unix

package storage

import "github.com/modelctl/modelctl/internal/directio"

func allocLarge(n int) []byte { return directio.Buffer(n) }
