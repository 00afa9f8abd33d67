package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

// loadConfig sizes the load-and-fault test. `make test` runs the short one;
// MODELCTL_LOAD=full (make bench-load) the 2-minute run of docs/security.md.
type loadConfig struct {
	Clients     int
	ModelSize   int
	Duration    time.Duration
	SlowConns   int
	BodyTimeout time.Duration
}

func loadConfigFromEnv() loadConfig {
	c := loadConfig{Clients: 4, ModelSize: 4 << 20, Duration: 12 * time.Second, SlowConns: 50, BodyTimeout: 4 * time.Second}
	if os.Getenv("MODELCTL_LOAD") == "full" {
		c = loadConfig{Clients: 16, ModelSize: 64 << 20, Duration: 2 * time.Minute, SlowConns: 200, BodyTimeout: 30 * time.Second}
	}
	if v, err := strconv.Atoi(os.Getenv("MODELCTL_LOAD_SLOW")); err == nil {
		c.SlowConns = v
	}
	return c
}

// loadRSSGoalMiB bounds the server's peak RSS: issue 15's 128 MiB with up
// to 200 slow connections (both sizes of the test), and 128 KiB more for
// each one past that (MODELCTL_LOAD_SLOW): what a waiting connection costs
// is net/http's connection and goroutine, about 80 KiB of RSS measured,
// where it was megabytes when each held copy buffers.
func loadRSSGoalMiB(slow int) float64 { return 128 + float64(max(slow-200, 0))/8 }

// loadReport is what one run measured.
type loadReport struct {
	Backend        string  `json:"backend"`
	Clients        int     `json:"clients"`
	ModelMiB       int     `json:"modelMiB"`
	Seconds        float64 `json:"seconds"`
	SlowConns      int     `json:"slowConnections"`
	Pushes         int64   `json:"pushes"`
	Pulls          int64   `json:"pulls"`
	GiBMoved       float64 `json:"gibMoved"`
	Requests       uint64  `json:"requestsServed"`
	Server5xx      uint64  `json:"server5xx"`
	ClientErrors   int64   `json:"clientErrorsOutsideFault"`
	FaultRetries   int64   `json:"retriesAroundKill"`
	Injected       int64   `json:"injectedBadRequests"`
	InjectedWrong  int64   `json:"injectedAnsweredWrongly"`
	SlowCutOff     int64   `json:"slowBodiesCutOff"`
	PeakRSSMiB     float64 `json:"serverPeakRSSMiB"`
	BuffersMax     uint64  `json:"largeBuffersMostInUse"` // of the restarted server
	BuffersBudget  uint64  `json:"largeBuffersBudget"`
	GCDeleted      int     `json:"gcDeleted"`
	GCKept         int     `json:"gcKept"`
	GCSecondPass   int     `json:"gcSecondPassDeleted"`
	KeptVerified   int     `json:"keptModelsVerifiedAfterGC"`
	DeletedExpects int     `json:"deletedModels"`
}

// TestLoadAndFault: concurrent clients push and pull distinct models while
// another client holds slow bodies open and sends bad requests; half-way
// the server is killed with SIGKILL and restarted, and every client resumes
// and finishes. Then gc runs: it frees exactly the deleted models' blobs,
// and every kept model still verifies.
func TestLoadAndFault(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	cfg := loadConfigFromEnv()
	for _, backend := range []string{"filesystem", "s3"} {
		t.Run(backend, func(t *testing.T) {
			rep := runLoad(t, backend, cfg)
			b, _ := json.MarshalIndent(rep, "", "  ")
			t.Logf("load report:\n%s", b)
			if p := os.Getenv("MODELCTL_LOAD_REPORT"); p != "" {
				f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				if err == nil {
					_, _ = f.Write(append(b, '\n'))
					f.Close()
				}
			}
		})
	}
}

func runLoad(t *testing.T, backend string, cfg loadConfig) loadReport {
	rep := loadReport{Backend: backend, Clients: cfg.Clients, ModelMiB: cfg.ModelSize >> 20, SlowConns: cfg.SlowConns}
	addr := testenv.FreeAddr(t)
	var env, storageArgs []string
	switch backend {
	case "filesystem":
		storageArgs = []string{"--root", filepath.Join(t.TempDir(), "registry")}
	case "s3":
		gw := s3test.Start(t)
		env = []string{"AWS_ACCESS_KEY_ID=" + gw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + gw.SecretKey, "AWS_REGION=" + gw.Region}
		storageArgs = []string{"--storage", "s3://" + gw.Bucket + "/registry", "--s3-endpoint", gw.Endpoint}
	}
	serve := func() *testenv.Process {
		args := append([]string{"serve", "--addr", addr, "--log-level", "error", "--body-timeout", cfg.BodyTimeout.String()}, storageArgs...)
		return testenv.Start(t, addr, "http://%s/healthz", env, testenv.Modelctl(t), args...)
	}
	var srvMu sync.Mutex
	srv := serve()
	var peakRSS atomic.Int64
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		for {
			srvMu.Lock()
			p := srv
			srvMu.Unlock()
			if p == nil {
				return
			}
			if kb := vmHWM(p.Cmd.Process.Pid); kb > peakRSS.Load() {
				peakRSS.Store(kb)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var faultFrom, faultTo atomic.Int64 // unix nanos of the kill window

	var pushes, pulls, clientErrs, faultRetries, moved atomic.Int64
	type kept struct {
		ref  string
		want map[string]digest.Digest
	}
	var keptMu sync.Mutex
	var keptModels []kept
	deleted := 0

	// retry runs op until it succeeds, counting failures inside the kill
	// window (the server was down) apart from the others.
	// Each attempt has a time limit: a request the server never answers is
	// an error to count, not a hang.
	opTimeout := 60 * time.Second
	if cfg.ModelSize > 16<<20 {
		opTimeout = 5 * time.Minute
	}
	retry := func(what string, op func(ctx context.Context) error) {
		for attempt := 0; ; attempt++ {
			octx, ocancel := context.WithTimeout(ctx, opTimeout)
			err := op(octx)
			ocancel()
			if err == nil {
				return
			}
			now := time.Now().UnixNano()
			if f := faultFrom.Load(); f != 0 && now >= f && (faultTo.Load() == 0 || now <= faultTo.Load()+int64(10*time.Second)) {
				faultRetries.Add(1)
			} else {
				clientErrs.Add(1)
				t.Logf("%s: %v", what, err)
			}
			if attempt > 200 {
				t.Errorf("%s: gave up: %v", what, err)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	var wg sync.WaitGroup
	for k := 0; k < cfg.Clients; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work := t.TempDir()
			pusher, err := client.New(client.Options{CacheDir: filepath.Join(work, "push-cache"), Credentials: credentials.NewMemoryStore()})
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; time.Now().Before(deadline); i++ {
				src := filepath.Join(work, "model.bin")
				want := writeModel(t, src, cfg.ModelSize, uint64(k)<<32|uint64(i))
				refStr := fmt.Sprintf("%s/load/c%d:m%d", addr, k, i)
				ref, err := client.ParseReference(refStr)
				if err != nil {
					t.Error(err)
					return
				}
				var pushed digest.Digest
				retry("push "+refStr, func(ctx context.Context) error {
					res, err := pusher.Push(ctx, ref, client.PushOptions{
						Files: []client.PushFile{{Path: "model.bin", Source: src, MediaType: manifests.MediaTypeWeightRaw}},
						Pack:  manifests.PackOptions{Name: "load", Precision: "fp32"},
					})
					if err == nil {
						pushed = res.Digest
					}
					return err
				})
				pushes.Add(1)
				moved.Add(int64(cfg.ModelSize))
				// A fresh cache each time: the pull crosses the network.
				retry("pull "+refStr, func(ctx context.Context) error {
					dir := filepath.Join(work, "pull")
					os.RemoveAll(dir)
					cache := filepath.Join(work, "pull-cache")
					os.RemoveAll(cache)
					puller, err := client.New(client.Options{CacheDir: cache, Credentials: credentials.NewMemoryStore()})
					if err != nil {
						return err
					}
					if _, err := puller.Pull(ctx, ref, dir); err != nil {
						return err
					}
					got, err := fileDigest(filepath.Join(dir, "model.bin"))
					if err != nil {
						return err
					}
					if got != want {
						t.Errorf("pull %s: model.bin is %s, pushed %s", refStr, got, want)
					}
					return nil
				})
				pulls.Add(1)
				moved.Add(int64(cfg.ModelSize))
				if i%2 == 1 {
					// Every other model is deleted: gc must free exactly
					// those blobs.
					// A DELETE whose answer was lost (a transport error: the
					// server may have applied it, then died) and then 404s
					// was done; a 404 with no such attempt before is an error.
					maybeApplied := false
					retry("delete "+refStr, func(context.Context) error {
						err := deleteManifest(addr, fmt.Sprintf("load/c%d", k), pushed)
						var st *httpStatusError
						switch {
						case err == nil:
						case errors.As(err, &st) && st.code == http.StatusNotFound && maybeApplied:
							return nil
						case !errors.As(err, &st) && !errors.Is(err, syscall.ECONNREFUSED):
							maybeApplied = true // sent, answer lost
						}
						return err
					})
					keptMu.Lock()
					deleted++
					keptMu.Unlock()
				} else {
					keptMu.Lock()
					keptModels = append(keptModels, kept{ref: refStr, want: map[string]digest.Digest{"model.bin": want}})
					keptMu.Unlock()
				}
			}
		}()
	}

	// The hostile client: slow bodies held open, and bad requests.
	var injected, injectedWrong, slowCut atomic.Int64
	hostileDone := make(chan struct{})
	go func() {
		defer close(hostileDone)
		var hw sync.WaitGroup
		slots := make(chan struct{}, cfg.SlowConns)
		for time.Now().Before(deadline) {
			select {
			case slots <- struct{}{}:
				hw.Add(1)
				go func() {
					defer hw.Done()
					defer func() { <-slots }()
					if slowBody(addr, deadline) {
						slowCut.Add(1)
					}
				}()
				continue
			default:
			}
			injected.Add(1)
			if !badRequest(addr) {
				now := time.Now().UnixNano()
				if f := faultFrom.Load(); f == 0 || now < f || (faultTo.Load() != 0 && now > faultTo.Load()+int64(5*time.Second)) {
					injectedWrong.Add(1)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		hw.Wait()
	}()

	// Half-way: kill -9, restart on the same port and storage.
	time.Sleep(time.Until(start.Add(cfg.Duration / 2)))
	faultFrom.Store(time.Now().UnixNano())
	srvMu.Lock()
	srv.Kill()
	srvMu.Unlock()
	time.Sleep(time.Second)
	restarted := serve()
	srvMu.Lock()
	srv = restarted
	srvMu.Unlock()
	faultTo.Store(time.Now().UnixNano())

	wg.Wait()
	<-hostileDone
	rep.Seconds = time.Since(start).Seconds()
	rep.Requests, rep.Server5xx, rep.BuffersMax, rep.BuffersBudget = scrapeRequests(t, addr)
	srvMu.Lock()
	srv.Kill()
	srv = nil
	srvMu.Unlock()
	<-sampleDone
	rep.Pushes, rep.Pulls = pushes.Load(), pulls.Load()
	rep.GiBMoved = float64(moved.Load()) / (1 << 30)
	rep.ClientErrors, rep.FaultRetries = clientErrs.Load(), faultRetries.Load()
	rep.Injected, rep.InjectedWrong, rep.SlowCutOff = injected.Load(), injectedWrong.Load(), slowCut.Load()
	rep.PeakRSSMiB = float64(peakRSS.Load()) / 1024
	rep.DeletedExpects = deleted

	// gc with the server stopped, then again: the second pass finds
	// nothing, and every kept model is intact.
	gc := func() (deleted, kept int) {
		args := append([]string{"gc", "--grace", "0s", "--json"}, storageArgs...)
		cmd := exec.Command(testenv.Modelctl(t), args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gc: %v\n%s", err, out)
		}
		var res struct {
			Kept    int
			Deleted []string
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("gc output %q: %v", out, err)
		}
		return len(res.Deleted), res.Kept
	}
	rep.GCDeleted, rep.GCKept = gc()
	rep.GCSecondPass, _ = gc()
	srv = serve()
	puller, err := client.New(client.Options{CacheDir: t.TempDir(), Credentials: credentials.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range keptModels {
		ref, _ := client.ParseReference(m.ref)
		dir := filepath.Join(t.TempDir(), "out")
		if _, err := puller.Pull(ctx, ref, dir); err != nil {
			t.Errorf("after gc, pull %s: %v", m.ref, err)
			continue
		}
		for f, want := range m.want {
			if got, err := fileDigest(filepath.Join(dir, f)); err != nil || got != want {
				t.Errorf("after gc, %s %s: %s %v, want %s", m.ref, f, got, err, want)
				continue
			}
		}
		os.RemoveAll(dir)
		rep.KeptVerified++
	}
	srv.Kill()

	switch {
	case rep.ClientErrors > 0:
		t.Errorf("%d client errors outside the kill window", rep.ClientErrors)
	case rep.Server5xx > 0:
		t.Errorf("%d server 5xx answers", rep.Server5xx)
	case rep.InjectedWrong > 0:
		t.Errorf("%d bad requests answered other than with their 4xx", rep.InjectedWrong)
	case rep.GCSecondPass != 0:
		t.Errorf("a second gc deleted %d blobs: the first left dangling content", rep.GCSecondPass)
	case rep.KeptVerified != len(keptModels):
		t.Errorf("%d of %d kept models verified after gc", rep.KeptVerified, len(keptModels))
	case rep.Pushes < int64(cfg.Clients) || rep.Pulls < int64(cfg.Clients):
		t.Errorf("only %d pushes and %d pulls done", rep.Pushes, rep.Pulls)
	}
	// Issue 15's goal: the server's memory is bounded by its upload buffer
	// budget, not by the number of slow connections (docs/security.md).
	if goal := loadRSSGoalMiB(cfg.SlowConns); rep.PeakRSSMiB > goal {
		t.Errorf("server peak RSS %.1f MiB, over the %.0f MiB goal (%d slow connections)", rep.PeakRSSMiB, goal, cfg.SlowConns)
	}
	if rep.BuffersBudget > 0 && rep.BuffersMax > rep.BuffersBudget {
		t.Errorf("%d large upload buffers in use at once, over the budget of %d", rep.BuffersMax, rep.BuffersBudget)
	}
	if rep.GCDeleted < rep.DeletedExpects {
		t.Errorf("gc deleted %d blobs, but %d models (each one blob of its own) were deleted", rep.GCDeleted, rep.DeletedExpects)
	}
	return rep
}

// writeModel writes size bytes unique to seed (cheap to make, impossible to
// deduplicate across models) and returns their digest.
func writeModel(t *testing.T, path string, size int, seed uint64) digest.Digest {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), byte(seed >> 32), byte(seed >> 40), byte(seed >> 48), byte(seed >> 56)})
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= len(buf) {
		b := buf[:min(len(buf), left)]
		for i := 0; i+8 <= len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
		}
		h.Write(b)
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	return digest.NewDigest(digest.SHA256, h)
}

func fileDigest(path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return digest.FromReader(f)
}

func deleteManifest(addr, repo string, d digest.Digest) error {
	req, _ := http.NewRequest(http.MethodDelete, "http://"+addr+"/v2/"+repo+"/manifests/"+string(d), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return &httpStatusError{what: "DELETE manifest", code: resp.StatusCode}
	}
	return nil
}

// httpStatusError is an answer with an unexpected status (the request
// arrived and was not applied), as opposed to a transport error.
type httpStatusError struct {
	what string
	code int
}

func (e *httpStatusError) Error() string { return fmt.Sprintf("%s: %d", e.what, e.code) }

// slowBody opens an upload and sends its PATCH body at a byte a second
// after declaring 10 GiB, until the server cuts it off (true) or until.
func slowBody(addr string, until time.Time) bool {
	resp, err := http.Post("http://"+addr+"/v2/load/slow/blobs/uploads/", "", nil)
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		return false
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	fmt.Fprintf(c, "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", loc, int64(10)<<30)
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		_ = c.SetReadDeadline(until.Add(5 * time.Second))
		_, _ = bufio.NewReader(c).ReadString('\n')
	}()
	for time.Now().Before(until) {
		select {
		case <-answered:
			return true
		case <-time.After(time.Second):
		}
		if _, err := c.Write([]byte("x")); err != nil {
			return true
		}
	}
	return false
}

// badRequest sends one of the hostile requests of issue 15 and reports
// whether it got the 4xx it deserves.
func badRequest(addr string) bool {
	base := "http://" + addr
	do := func(method, url string, body io.Reader, hdr ...string) int {
		req, err := http.NewRequest(method, url, body)
		if err != nil {
			return 0
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	switch rand.IntN(5) {
	case 0: // a made-up 500 KB session id
		return do(http.MethodPatch, base+"/v2/load/bad/blobs/uploads/"+strings.Repeat("z", 500<<10), strings.NewReader("x")) == http.StatusNotFound
	case 1: // a range outside an empty blob
		return do(http.MethodGet, base+"/v2/load/bad/blobs/"+string(digest.FromString("")), nil, "Range", "bytes=-1") >= 400
	case 2: // thousands of tags
		var q strings.Builder
		for i := 0; i < 2000; i++ {
			fmt.Fprintf(&q, "tag=t%d&", i)
		}
		return do(http.MethodPut, base+"/v2/load/bad/manifests/sha256:"+strings.Repeat("0", 64)+"?"+q.String(), bytes.NewReader([]byte("{}"))) == http.StatusBadRequest
	case 3: // a name outside the grammar
		return do(http.MethodGet, base+"/v2/Load/Bad/manifests/x", nil) == http.StatusBadRequest
	default: // a manifest that is not JSON
		return do(http.MethodPut, base+"/v2/load/bad/manifests/v1", strings.NewReader("not json"), "Content-Type", "application/vnd.oci.image.manifest.v1+json") == http.StatusBadRequest
	}
}

// scrapeRequests reads the request counters of /metrics (all, and 5xx)
// and the upload buffer budget's most in use at once and size.
func scrapeRequests(t *testing.T, addr string) (total, fivexx, buffersMax, buffersBudget uint64) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Errorf("metrics: %v", err)
		return 0, 0, 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		n, _ := strconv.ParseUint(line[i+1:], 10, 64)
		switch {
		case strings.HasPrefix(line, "modelctl_http_requests_total{"):
			total += n
			if strings.Contains(line, `code="5`) {
				fivexx += n
			}
		case strings.HasPrefix(line, "modelctl_upload_buffers_max_in_use "):
			buffersMax = n
		case strings.HasPrefix(line, "modelctl_upload_buffers_budget "):
			buffersBudget = n
		}
	}
	return total, fivexx, buffersMax, buffersBudget
}

// vmHWM is a process's peak resident set in KiB, 0 when unknown.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
