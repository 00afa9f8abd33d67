package bench

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrNoCgo is returned by everything that needs onnxruntime in a binary
// built with CGO_ENABLED=0.
var ErrNoCgo = errors.New("this modelctl was built without cgo, so it cannot load onnxruntime: rebuild with CGO_ENABLED=1")

// Options says how a model is run.
type Options struct {
	// LibraryPath is the onnxruntime shared library; "" finds it with
	// LibraryPath("").
	LibraryPath string
	// Threads is onnxruntime's intra-op thread count; 0 leaves its default
	// (one per physical core).
	Threads int
	// Provider is the execution provider: auto, cpu, cuda, directml or
	// coreml; "" means cpu. auto tries cuda, directml and coreml in turn and
	// falls back to cpu with a warning.
	Provider string
	// Warn receives warnings such as a provider fallback; nil discards them.
	Warn io.Writer
}

// Provider names accepted by Options.Provider, and the onnxruntime names of
// the execution providers behind them.
var providerNames = map[string]string{
	"cpu":      "CPUExecutionProvider",
	"cuda":     "CUDAExecutionProvider",
	"directml": "DmlExecutionProvider",
	"coreml":   "CoreMLExecutionProvider",
}

// autoOrder is the order auto tries accelerated providers in.
var autoOrder = []string{"cuda", "directml", "coreml"}

func (o Options) provider() (string, error) {
	p := strings.ToLower(o.Provider)
	switch p {
	case "":
		return "cpu", nil
	case "auto", "cpu", "cuda", "directml", "coreml":
		return p, nil
	}
	return "", fmt.Errorf("--provider %q: want auto, cpu, cuda, directml or coreml", o.Provider)
}

func (o Options) warnf(format string, args ...any) {
	if o.Warn != nil {
		fmt.Fprintf(o.Warn, "warning: "+format+"\n", args...)
	}
}

// ProviderStatus says whether one execution provider is compiled into the
// library and whether it initializes on this machine.
type ProviderStatus struct {
	Name string `json:"name"` // cpu, cuda, directml, coreml
	// ORTName is onnxruntime's name, e.g. CUDAExecutionProvider.
	ORTName string `json:"ort_name"`
	// Available: the library lists it (GetAvailableProviders).
	Available bool `json:"available"`
	// Initializes: a session with it could be created.
	Initializes bool `json:"initializes"`
	// Error says why it does not initialize.
	Error string `json:"error,omitempty"`
}

// RuntimeInfo describes the loaded onnxruntime.
type RuntimeInfo struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	// Build is onnxruntime's build description (git commit, build type).
	Build string `json:"build,omitempty"`
	// Available lists GetAvailableProviders' answer verbatim.
	Available []string         `json:"available_providers"`
	Providers []ProviderStatus `json:"providers"`
}
