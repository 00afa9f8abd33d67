package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/quantize/synth"
	"github.com/opencontainers/go-digest"
)

// These tests run the real modelctl binary against real registries: CNCF
// distribution v3.1.2 and our own `modelctl serve`.

type cli struct {
	t     testing.TB
	cache string
	env   []string
}

func newCLI(t testing.TB) *cli {
	return &cli{t: t, cache: t.TempDir(), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
}

func (c *cli) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(testenv.Modelctl(c.t), args...)
	cmd.Env = append(os.Environ(), append([]string{"MODELCTL_CACHE=" + c.cache}, c.env...)...)
	return cmd
}

// run runs modelctl and returns stdout, failing the test on error.
func (c *cli) run(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("modelctl %s: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (c *cli) try(args ...string) (string, string, error) {
	cmd := c.cmd(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (c *cli) runJSON(v any, args ...string) {
	c.t.Helper()
	out := c.run(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("modelctl %s: bad JSON %v:\n%s", strings.Join(args, " "), err, out)
	}
}

func synthModel(t testing.TB, dir string, size int64) string {
	t.Helper()
	p, err := synth.Generate(dir, synth.Config{WeightBytes: size})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func onnxCheck(t testing.TB, model string) {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c", "import onnx,sys; onnx.checker.check_model(sys.argv[1], full_check=True)", model).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx.checker rejects %s: %v\n%s", model, err, out)
	}
}

func TestCLIQuantizePushPull(t *testing.T) {
	for _, s := range testenv.Registries {
		t.Run(s.Name, func(t *testing.T) {
			srv := s.Start(t)
			c := newCLI(t)
			work := t.TempDir()
			fp32 := synthModel(t, filepath.Join(work, "fp32"), 8<<20)
			int8 := filepath.Join(work, "int8", "model.onnx")
			c.run("quantize", fp32, "-o", int8)
			repo := srv.Addr + "/sarai/audio-core"
			c.run("push", fp32, repo+":fp32", "--precision", "fp32")
			bench := filepath.Join(work, "bench.json")
			os.WriteFile(bench, []byte(`{"schema":1,"model":{"latency_ms":{"p50":1.5,"p95":2.5},"peak_rss_bytes":{"run":1000}},"quality_worst":{"cosine":0.9997},"gates":{"min_cosine":0.99,"passed":true}}`), 0o644)
			var pushed client.PushResult
			c.runJSON(&pushed, "push", int8, repo+":int8", "--tag", "latest", "--bench", bench, "--parent", repo+":fp32",
				"--precision", "int8", "--quantization", "dynamic", "--quant-param", "per_channel=false")
			if len(pushed.Files) != 2 || pushed.Files[1].Path != "model.onnx.data" || len(pushed.Tags) != 2 {
				t.Fatalf("push result %+v", pushed)
			}

			out := filepath.Join(t.TempDir(), "model")
			var pulled client.PullResult
			c.runJSON(&pulled, "pull", repo+":latest", "-o", out)
			if pulled.Digest != pushed.Digest {
				t.Errorf("pulled %s, pushed %s", pulled.Digest, pushed.Digest)
			}
			for _, f := range []string{"model.onnx", "model.onnx.data"} {
				sameFile(t, filepath.Join(filepath.Dir(int8), f), filepath.Join(out, f))
			}
			onnxCheck(t, filepath.Join(out, "model.onnx"))

			var info struct {
				Digest    string            `json:"digest"`
				Benchmark map[string]string `json:"benchmark"`
				Manifest  struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"manifest"`
				Config struct {
					Config struct {
						Format, Precision, Quantization string
					} `json:"config"`
				} `json:"config"`
			}
			c.runJSON(&info, "inspect", repo+":int8")
			var parent struct{ Digest string }
			c.runJSON(&parent, "inspect", repo+":fp32")
			a := info.Manifest.Annotations
			if info.Benchmark["model.latency_ms.p50"] != "1.5" || info.Benchmark["quality_worst.cosine"] != "0.9997" ||
				a["dev.modelctl.parent.digest"] != parent.Digest || a["dev.modelctl.quantization.per_channel"] != "false" ||
				info.Config.Config.Format != "onnx" || info.Config.Config.Precision != "int8" || info.Config.Config.Quantization != "dynamic" {
				t.Errorf("inspect: %+v", info)
			}
			if got := c.run("ls", repo); got != "fp32\nint8\nlatest\n" {
				t.Errorf("ls tags = %q", got)
			}

			// Re-push of the unchanged model: nothing sent, same digest.
			var again client.PushResult
			c.runJSON(&again, "push", int8, repo+":int8", "--tag", "latest", "--bench", bench, "--parent", repo+":fp32",
				"--precision", "int8", "--quantization", "dynamic", "--quant-param", "per_channel=false")
			if again.Transferred != 0 || again.Digest != pushed.Digest {
				t.Errorf("re-push sent %d bytes, digest %s (was %s)", again.Transferred, again.Digest, pushed.Digest)
			}
			// A second pull transfers nothing.
			var second client.PullResult
			c.runJSON(&second, "pull", repo+":int8", "-o", filepath.Join(t.TempDir(), "again"))
			if second.Transferred != 0 {
				t.Errorf("second pull transferred %d bytes", second.Transferred)
			}
		})
	}
}

func TestCLIPushRefusesShortDataFile(t *testing.T) {
	srv := testenv.StartDistribution(t)
	c := newCLI(t)
	model := synthModel(t, t.TempDir(), 1<<20)
	data := model + ".data"
	fi, _ := os.Stat(data)
	if err := os.Truncate(data, fi.Size()-1); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := c.try("push", model, srv.Addr+"/short/m:v1")
	if err == nil || !strings.Contains(stderr, "model.onnx.data") {
		t.Fatalf("push of a truncated data file: %v\n%s", err, stderr)
	}
	if strings.Count(stderr, "\n") != 1 {
		t.Errorf("error is not one line: %q", stderr)
	}
	if repos := c.run("ls", srv.Addr); repos != "" {
		t.Errorf("something was pushed: %q", repos)
	}
	os.Remove(data)
	if _, stderr, err := c.try("push", model, srv.Addr+"/short/m:v1"); err == nil || !strings.Contains(stderr, "model.onnx.data") {
		t.Fatalf("push with a missing data file: %v\n%s", err, stderr)
	}
}

func TestCLIOrasInterop(t *testing.T) {
	oras := testenv.Tool(t, "oras")
	for _, s := range testenv.Registries {
		t.Run(s.Name, func(t *testing.T) {
			srv := s.Start(t)
			c := newCLI(t)
			model := synthModel(t, t.TempDir(), 4<<20)
			dir := filepath.Dir(model)

			// modelctl push -> oras pull
			c.run("push", model, srv.Addr+"/interop/m:v1")
			orasOut := t.TempDir()
			if out, err := exec.Command(oras, "pull", "--plain-http", srv.Addr+"/interop/m:v1", "-o", orasOut).CombinedOutput(); err != nil {
				t.Fatalf("oras pull: %v\n%s", err, out)
			}
			for _, f := range []string{"model.onnx", "model.onnx.data"} {
				sameFile(t, filepath.Join(dir, f), filepath.Join(orasOut, f))
			}

			// oras push -> modelctl pull
			var diffIDs []string
			for _, f := range []string{"model.onnx", "model.onnx.data"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				diffIDs = append(diffIDs, `"`+digest.FromBytes(b).String()+`"`)
			}
			cfg := filepath.Join(t.TempDir(), "config.json")
			os.WriteFile(cfg, []byte(`{"descriptor":{"name":"from-oras"},"modelfs":{"type":"layers","diffIds":[`+strings.Join(diffIDs, ",")+`]},"config":{"format":"onnx"}}`), 0o644)
			push := exec.Command(oras, "push", "--plain-http", srv.Addr+"/interop/oras:v1",
				"--artifact-type", "application/vnd.cncf.model.manifest.v1+json",
				"--config", cfg+":application/vnd.cncf.model.config.v1+json",
				"model.onnx:application/vnd.cncf.model.weight.v1.raw", "model.onnx.data:application/vnd.cncf.model.weight.v1.raw")
			push.Dir = dir
			if out, err := push.CombinedOutput(); err != nil {
				t.Fatalf("oras push: %v\n%s", err, out)
			}
			out := filepath.Join(t.TempDir(), "m")
			c.run("pull", srv.Addr+"/interop/oras:v1", "-o", out)
			for _, f := range []string{"model.onnx", "model.onnx.data"} {
				sameFile(t, filepath.Join(dir, f), filepath.Join(out, f))
			}
			onnxCheck(t, filepath.Join(out, "model.onnx"))
		})
	}
}

func TestCLICorruptBlobFailsPull(t *testing.T) {
	for _, s := range testenv.Registries {
		t.Run(s.Name, func(t *testing.T) {
			srv := s.Start(t)
			c := newCLI(t)
			model := synthModel(t, t.TempDir(), 4<<20)
			var pushed client.PushResult
			c.runJSON(&pushed, "push", model, srv.Addr+"/corrupt/m:v1")
			data := pushed.Files[1]
			blob := findBlobOnDisk(t, srv.Root, data.Digest.Encoded(), data.Size)
			f, err := os.OpenFile(blob, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			f.ReadAt(b, data.Size/2)
			b[0] ^= 0xff
			f.WriteAt(b, data.Size/2)
			f.Close()

			target := filepath.Join(t.TempDir(), "target")
			fresh := newCLI(t)
			_, stderr, err := fresh.try("pull", srv.Addr+"/corrupt/m:v1", "-o", target)
			if err == nil || !strings.Contains(stderr, "digest mismatch") {
				t.Fatalf("pull of a corrupted blob: %v\n%s", err, stderr)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("error is not one line: %q", stderr)
			}
			if _, err := os.Lstat(target); !os.IsNotExist(err) {
				t.Errorf("the target exists after a failed pull: %v", err)
			}
		})
	}
}

// findBlobOnDisk finds the file holding a blob in a registry's storage.
func findBlobOnDisk(t testing.TB, root, hex string, size int64) string {
	t.Helper()
	var found string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() == size && strings.Contains(p, hex) {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("blob %s not found under %s", hex, root)
	}
	return found
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const killTestSize = 300 << 20

func TestCLIKillDuringPushResumes(t *testing.T) {
	for _, s := range testenv.Registries {
		for _, chunk := range []string{"16MiB", "auto"} {
			t.Run(s.Name+"/chunk="+chunk, func(t *testing.T) {
				srv := s.Start(t)
				c := newCLI(t)
				model := synthModel(t, t.TempDir(), killTestSize)
				ref := srv.Addr + "/kill/push:v1"
				cmd := c.cmd("push", model, ref, "--chunk-size", chunk, "--json")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				// Kill once the registry reports 100 MiB committed (with one
				// streamed PATCH, the local state only knows the session).
				var committed int64
				waitFor(t, "100 MiB committed on the registry", func() bool {
					committed = committedOnRegistry(c.cache)
					return committed >= 100<<20
				})
				cmd.Process.Kill()
				cmd.Wait()
				committed = committedOnRegistry(c.cache)

				var res client.PushResult
				c.runJSON(&res, "push", model, ref, "--chunk-size", chunk)
				data := res.Files[1]
				t.Logf("%s chunk=%s: killed with %d bytes committed; rerun resumed from %d, sent %d of %d (total %d of %d)",
					s.Name, chunk, committed, data.ResumedFrom, data.Transferred, data.Size, res.Transferred, res.Size)
				// The rerun sends at most what was missing: less when the
				// killed process's last PATCH was still being stored when the
				// rerun asked (the registry then holds more than it said).
				if data.Status != client.StatusResumed || data.ResumedFrom < committed || data.Transferred > data.Size-data.ResumedFrom || data.Transferred == 0 && data.ResumedFrom < data.Size {
					t.Fatalf("rerun did not continue the upload: %+v (committed %d)", data, committed)
				}
				out := filepath.Join(t.TempDir(), "m")
				c.run("pull", ref, "-o", out)
				sameFile(t, model+".data", filepath.Join(out, "model.onnx.data"))
			})
		}
	}
}

// committedOnRegistry asks the registry how much of the upload in the
// client's cache it holds (0 when there is none yet).
func committedOnRegistry(cache string) int64 {
	c, err := client.OpenCache(cache)
	if err != nil {
		return 0
	}
	ts, _ := c.Transfers()
	var best int64
	for _, tr := range ts {
		if tr.Kind != "upload" || tr.Size < 100<<20 {
			continue
		}
		resp, err := http.Get(tr.Location)
		if err != nil {
			continue
		}
		resp.Body.Close()
		// "0-END": END+1 bytes are committed ("0-0" is read as none).
		var end int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(resp.Header.Get("Range"), "bytes="), "0-%d", &end); err == nil && end > 0 && end+1 > best {
			best = end + 1
		}
	}
	return best
}

func TestCLIKillDuringPullResumes(t *testing.T) {
	srv := testenv.StartOurs(t)
	c := newCLI(t)
	model := synthModel(t, t.TempDir(), killTestSize)
	c.run("push", model, srv.Addr+"/kill/pull:v1")
	// Pulled through a proxy that holds blob bodies to 200 MB/s: at full
	// loopback speed a pull can end before its state records the 64 MiB
	// the kill waits for.
	var throttle atomic.Bool
	proxy := throttlingProxy(t, srv.Addr, func(r *http.Response) bool {
		return throttle.Load() && r.Request.Method == http.MethodGet && strings.Contains(r.Request.URL.Path, "/blobs/")
	}, 200e6)
	ref := proxy + "/kill/pull:v1"

	// The default fetches two ranges at once on loopback; --parallel 1
	// fetches one, the hash following the same piece it receives.
	for _, parallel := range []string{"0", "1"} {
		t.Run("parallel="+parallel, func(t *testing.T) {
			puller := newCLI(t)
			throttle.Store(true)
			out := filepath.Join(t.TempDir(), "m")
			cmd := puller.cmd("pull", ref, "-o", out, "--json", "--parallel", parallel)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a partial download", func() bool {
				return partialDone(puller.cache) >= 64<<20
			})
			cmd.Process.Kill()
			cmd.Wait()
			throttle.Store(false)
			have := partialDone(puller.cache)
			if _, err := os.Lstat(out); !os.IsNotExist(err) {
				t.Errorf("target exists after a killed pull: %v", err)
			}
			var res client.PullResult
			puller.runJSON(&res, "pull", ref, "-o", out, "--parallel", parallel)
			data := res.Files[1]
			t.Logf("parallel=%s: killed with %d bytes on disk; rerun transferred %d of %d", parallel, have, data.Transferred, data.Size)
			if data.Transferred != data.Size-have {
				t.Fatalf("rerun transferred %d, want %d", data.Transferred, data.Size-have)
			}
			sameFile(t, model+".data", filepath.Join(out, "model.onnx.data"))
			onnxCheck(t, filepath.Join(out, "model.onnx"))
		})
	}
}

// throttledBody delivers a body at no more than bytesPerSec.
type throttledBody struct {
	io.ReadCloser
	bytesPerSec float64
}

func (b *throttledBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	time.Sleep(time.Duration(float64(n) / b.bytesPerSec * float64(time.Second)))
	return n, err
}

// partialDone is how many bytes of the downloads in the client's cache
// are received and written.
func partialDone(cache string) int64 {
	c, err := client.OpenCache(cache)
	if err != nil {
		return 0
	}
	ts, _ := c.Transfers()
	var total int64
	for _, tr := range ts {
		if tr.Kind == "download" {
			total += tr.Done
		}
	}
	return total
}

func sameFile(t testing.TB, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ (%d vs %d bytes)", a, b, len(x), len(y))
	}
}

// throttlingProxy serves backend on a loopback port and returns its
// address; the bodies of answers slow says so for arrive at no more than
// bytesPerSec.
func throttlingProxy(t testing.TB, backend string, slow func(*http.Response) bool, bytesPerSec float64) string {
	u, _ := url.Parse("http://" + backend)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(r *http.Response) error {
		if slow(r) {
			r.Body = &throttledBody{ReadCloser: r.Body, bytesPerSec: bytesPerSec}
		}
		return nil
	}
	ps := httptest.NewServer(proxy)
	t.Cleanup(ps.Close)
	return strings.TrimPrefix(ps.URL, "http://")
}
