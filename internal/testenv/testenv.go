// Package testenv gives tests the real tools and servers they need: the
// pinned third-party binaries that `make tools` installs into .cache/bin, the
// modelctl binary itself, and free loopback ports. A missing tool fails the
// test with the command that installs it; it never skips.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Root returns the module root (the directory holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// ToolDir is where `make tools` installs pinned tools.
func ToolDir(t testing.TB) string {
	if d := os.Getenv("MODELCTL_TOOLS"); d != "" {
		return d
	}
	return filepath.Join(Root(t), ".cache", "bin")
}

// Tool returns the path of an installed tool (oras, registry, conformance.test,
// versitygw, ...), failing the test when it is absent.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(ToolDir(t), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: %s is not installed at %s: run `make tools` first", name, p)
	}
	return p
}

// build is a binary of this checkout, built once per test process.
type build struct {
	once sync.Once
	path string
	err  error
}

// get builds ./cmd/modelctl into a temporary file named name, with env
// added to the go command's environment, the first time it is called.
func (b *build) get(t testing.TB, name string, env []string, flags ...string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "modelctl-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", b.path, "./cmd/modelctl")...)
		cmd.Dir = Root(t)
		cmd.Env = append(os.Environ(), env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/modelctl (%s): %v\n%s", strings.Join(env, " "), err, out.String())
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

var linuxBuild build

// Modelctl returns the path of a modelctl binary built from this checkout
// (once per test process), or $MODELCTL_BIN when set.
func Modelctl(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MODELCTL_BIN"); p != "" {
		return p
	}
	return linuxBuild.get(t, "modelctl", nil)
}

// FreeAddr returns a 127.0.0.1:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Process is a server started for a test.
type Process struct {
	Cmd  *exec.Cmd
	Addr string
	Log  *bytes.Buffer
	done chan struct{}
}

// Kill stops the process at once (SIGKILL) and waits for it.
func (p *Process) Kill() {
	if p.Cmd.Process != nil {
		_ = p.Cmd.Process.Kill()
	}
	<-p.done
}

// Stop asks the process to stop (SIGTERM), and kills it after 10 s.
func (p *Process) Stop() {
	if p.Cmd.Process != nil {
		_ = p.Cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

// Start runs a server command and waits until healthURL (formatted with the
// process address, e.g. "http://%s/healthz") answers anything below 500, or
// until the address accepts TCP connections when healthURL is "". The process
// is killed when the test ends.
func Start(t testing.TB, addr, healthURL string, env []string, name string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	// MODELCTL_TEST_LOGDIR keeps every server's whole output in a file of
	// its own, for a hang looked at from outside (kill -QUIT a Go server
	// and its goroutines land there).
	if dir := os.Getenv("MODELCTL_TEST_LOGDIR"); dir != "" {
		if f, err := os.CreateTemp(dir, filepath.Base(name)+"-*.log"); err == nil {
			t.Cleanup(func() { f.Close() })
			cmd.Stdout, cmd.Stderr = io.MultiWriter(log, f), io.MultiWriter(log, f)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Cmd: cmd, Addr: addr, Log: &log.Buffer, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			log.mu.Lock()
			t.Logf("%s output:\n%s", filepath.Base(name), tail(log.String(), 4000))
			log.mu.Unlock()
		}
	})
	if err := waitReady(addr, healthURL, p.done, 30*time.Second); err != nil {
		log.mu.Lock()
		out := log.String()
		log.mu.Unlock()
		t.Fatalf("%s %s did not become ready: %v\n%s", name, strings.Join(args, " "), err, tail(out, 4000))
	}
	return p
}

func waitReady(addr, healthURL string, done <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		select {
		case <-done:
			return fmt.Errorf("process exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if healthURL == "" {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				return nil
			}
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf(healthURL, addr), nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
	}
}

// StartServe starts `modelctl serve` on a free loopback port with the given
// extra arguments (e.g. --root DIR) and returns it once /healthz answers.
func StartServe(t testing.TB, env []string, args ...string) *Process {
	t.Helper()
	addr := FreeAddr(t)
	all := append([]string{"serve", "--addr", addr}, args...)
	return Start(t, addr, "http://%s/healthz", env, Modelctl(t), all...)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
