package s3_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelctl/modelctl/registry/storage/s3"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

const killHelperEnv = "MODELCTL_S3_KILL_HELPER"

// killHelper is the process that gets killed: it makes a write durable at
// one offset (what the layout records), Closes it again further on (not
// recorded), and is killed -9 while a third session uploads parts.
func killHelper(cfg s3.Config, data []byte, first, second int) error {
	ctx := context.Background()
	d, err := s3.New(ctx, cfg)
	if err != nil {
		return err
	}
	step := func(from, to int, closeIt bool) error {
		w, err := d.Writer(ctx, "uploads/k/data", int64(from))
		if err != nil {
			return err
		}
		for off := from; off < to; off += 65536 + 3 {
			if _, err := w.Write(data[off:min(off+65536+3, to)]); err != nil {
				return err
			}
		}
		if closeIt {
			return w.Close()
		}
		fmt.Println("writing")
		select {} // killed here
	}
	if err := step(0, first, true); err != nil {
		return err
	}
	fmt.Println("recorded", first)
	if err := step(first, second, true); err != nil {
		return err
	}
	return step(second, len(data), false)
}

func TestWriterSurvivesKill(t *testing.T) {
	data := pattern(11, 3*s3.MinPartSize+4567)
	first, second := s3.MinPartSize+1234, 2*s3.MinPartSize+77
	if os.Getenv(killHelperEnv) != "" {
		var cfg s3.Config
		f := strings.Split(os.Getenv(killHelperEnv), "\x1f")
		cfg.Bucket, cfg.Prefix, cfg.Endpoint, cfg.Region, cfg.AccessKey, cfg.SecretKey = f[0], f[1], f[2], f[3], f[4], f[5]
		cfg.PartSize = s3.MinPartSize
		if err := killHelper(cfg, data, first, second); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		return
	}
	srv := s3test.Start(t)
	cfg := testConfig(srv)
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriterSurvivesKill$")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+strings.Join([]string{cfg.Bucket, cfg.Prefix, cfg.Endpoint, cfg.Region, cfg.AccessKey, cfg.SecretKey}, "\x1f"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	recorded := int64(-1)
	lines := bufio.NewScanner(out)
	deadline := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for lines.Scan() {
		line := lines.Text()
		if v, ok := strings.CutPrefix(line, "recorded "); ok {
			recorded, _ = strconv.ParseInt(v, 10, 64)
		}
		if line == "writing" {
			break
		}
		if strings.HasPrefix(line, "error:") {
			t.Fatal(line)
		}
	}
	// Let the third session's part uploads get going, then kill it.
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if recorded != int64(first) {
		t.Fatalf("helper recorded offset %d, want %d", recorded, first)
	}

	// A restarted server resumes at the recorded offset.
	d := open(t, cfg)
	w, err := d.Writer(ctx(t), "uploads/k/data", recorded)
	if err != nil {
		t.Fatalf("resume after kill -9 at %d: %v", recorded, err)
	}
	if _, err := w.Write(data[recorded:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	r, err := d.Reader(ctx(t), "uploads/k/data", 0)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprintf("%x", h.Sum(nil)), fmt.Sprintf("%x", sha256.Sum256(data)); got != want || n != int64(len(data)) {
		t.Fatalf("after resume: %d bytes sha256 %s, want %d bytes %s", n, got, len(data), want)
	}
	// The killed session's multipart upload is the same one Commit
	// completed; nothing is left behind.
	if got := leftovers(t, srv, d); len(got) != 0 {
		t.Fatalf("left behind: %q", got)
	}
}
