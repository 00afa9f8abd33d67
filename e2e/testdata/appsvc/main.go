// Command appsvc is a small real application for the end-to-end tests of
// sync's restart and health check: it reads its YAML config the way an
// application does (model_path relative to its working directory), loads
// the model through onnxruntime and answers GET /health with 200 only if
// the model runs on the input the application feeds it.
//
//	appsvc serve -config config/app.yaml -key audio -state run -shape 1x8x64
//	appsvc probe -state run      # exit 0 when /health answers 200
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/modelctl/modelctl/client/pin"
	"github.com/modelctl/modelctl/quantize/bench"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: appsvc serve|probe ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "probe":
		err = probe(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "appsvc:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	config := fs.String("config", "config/app.yaml", "config file")
	key := fs.String("key", "audio", "model section")
	state := fs.String("state", "run", "directory for pid and port files")
	shape := fs.String("shape", "1x8x64", "shape of the float input named 'input' the app feeds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := pin.Load(*config)
	if err != nil {
		return err
	}
	s, err := cfg.Section(*key)
	if err != nil {
		return err
	}
	dims, n, err := parseShape(*shape)
	if err != nil {
		return err
	}
	in := bench.Tensor{Name: "input", DType: "float32", Shape: dims, Data: make([]float32, n)}
	run := func(ctx context.Context) error {
		out, err := bench.Run(ctx, filepath.FromSlash(s.ModelPath), []bench.Tensor{in}, bench.Options{Threads: 1, Provider: "cpu"})
		if err != nil {
			return err
		}
		if len(out) == 0 {
			return errors.New("the model has no outputs")
		}
		return nil
	}
	// Loaded and run once at start, as a real service would.
	startErr := run(context.Background())
	if startErr != nil {
		fmt.Fprintf(os.Stderr, "appsvc: model %s does not run: %v\n", s.ModelPath, startErr)
	} else {
		fmt.Fprintf(os.Stderr, "appsvc: serving %s (%s)\n", s.ModelPath, s.Digest)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if startErr != nil {
			http.Error(w, "model "+s.ModelPath+" does not run: "+startErr.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := run(r.Context()); err != nil {
			http.Error(w, "model "+s.ModelPath+" does not run: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok %s %s\n", s.ModelPath, s.Digest)
	})
	if err := os.MkdirAll(*state, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*state, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := os.WriteFile(filepath.Join(*state, "port.tmp"), []byte(strconv.Itoa(port)), 0o644); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(*state, "port.tmp"), filepath.Join(*state, "port")); err != nil {
		return err
	}
	return http.Serve(l, mux)
}

func parseShape(s string) ([]int64, int, error) {
	n := 1
	var dims []int64
	for _, p := range strings.Split(s, "x") {
		d, err := strconv.Atoi(p)
		if err != nil || d <= 0 {
			return nil, 0, fmt.Errorf("shape %q: want dims like 1x8x64", s)
		}
		dims = append(dims, int64(d))
		n *= d
	}
	return dims, n, nil
}

func probe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	state := fs.String("state", "run", "directory of the port file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(*state, "port"))
	if err != nil {
		return fmt.Errorf("not started yet: %w", err)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + strings.TrimSpace(string(b)) + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Print(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s", resp.Status)
	}
	return nil
}
