package registry

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

// Request bodies must not hold a connection forever: a PATCH declaring
// 10 GiB that sends nothing, or a body at a few bytes a second, was held
// open indefinitely (only headers had a timeout).
func TestSlowBodiesAreCutOff(t *testing.T) {
	fs, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Store: storage.NewStore(fs), Logger: discardLogger(),
		BodyIdleTimeout: 300 * time.Millisecond, BodyGrace: 600 * time.Millisecond, BodyMinRate: 1024})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	addr := strings.TrimPrefix(ts.URL, "http://")

	start := func() string {
		resp, err := http.Post(ts.URL+"/v2/r/blobs/uploads/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Location")
	}
	// send writes a PATCH's headers and then feed's bytes, and returns how
	// long the server took to answer or close, and its status line.
	send := func(conn net.Conn, loc string, length int64, feed func(net.Conn)) (time.Duration, string) {
		t0 := time.Now()
		fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", loc, length)
		done := make(chan struct{})
		go func() { defer close(done); feed(conn) }()
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		_ = conn.SetReadDeadline(time.Time{})
		d := time.Since(t0)
		conn.Close()
		<-done
		return d, strings.TrimSpace(line)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	d, line := send(dial(), start(), 10<<30, func(net.Conn) {})
	if d > 3*time.Second {
		t.Errorf("10 GiB declared, nothing sent: held %v", d)
	}
	t.Logf("declared 10 GiB, sent nothing: %q after %v", line, d.Round(time.Millisecond))

	d, line = send(dial(), start(), 1000, func(c net.Conn) {
		for i := 0; i < 200; i++ {
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	if d > 3*time.Second {
		t.Errorf("a body at 20 bytes/s: held %v", d)
	}
	t.Logf("a body at 20 bytes/s: %q after %v", line, d.Round(time.Millisecond))

	// A body sent at once goes through, and the connection stays usable
	// after idling longer than the body bounds: the deadline left nothing
	// behind on it.
	loc := start()
	c := dial()
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", loc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH of 5 bytes: %d", resp.StatusCode)
	}
	time.Sleep(time.Second)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", loc)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the connection died after a completed body: %v", err)
	}
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Range") != "0-4" {
		t.Fatalf("upload status: %d Range %q, want 204 0-4", resp.StatusCode, resp.Header.Get("Range"))
	}
}
