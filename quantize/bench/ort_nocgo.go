//go:build !cgo

package bench

import (
	"context"
	"time"
)

// Session is a loaded model; without cgo it cannot exist.
type Session struct{}

// Runtime needs cgo.
func Runtime(string) (*RuntimeInfo, error) { return nil, ErrNoCgo }

// Load needs cgo.
func Load(context.Context, string, Options) (*Session, error) { return nil, ErrNoCgo }

// LoadBytes needs cgo.
func LoadBytes(context.Context, string, []byte, string, Options) (*Session, error) {
	return nil, ErrNoCgo
}

// Run needs cgo.
func Run(context.Context, string, []Tensor, Options) ([]Tensor, error) { return nil, ErrNoCgo }

func (*Session) Provider() string                                  { return "" }
func (*Session) Info() *ModelInfo                                  { return nil }
func (*Session) SetInputs([]Tensor) error                          { return ErrNoCgo }
func (*Session) RunOnce(context.Context) (time.Duration, error)    { return 0, ErrNoCgo }
func (*Session) Outputs() ([]Tensor, error)                        { return nil, ErrNoCgo }
func (*Session) Infer(context.Context, []Tensor) ([]Tensor, error) { return nil, ErrNoCgo }
func (*Session) Close() error                                      { return nil }

func runtimeVersion() string { return "" }

func availableProviders() []string { return nil }

// cgoEnabled: this build cannot load onnxruntime.
const cgoEnabled = false
