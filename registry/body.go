package registry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Defaults of the request body bounds (Config.BodyIdleTimeout, BodyGrace,
// BodyMinRate).
const (
	DefaultBodyIdleTimeout = 30 * time.Second
	DefaultBodyGrace       = 30 * time.Second
	DefaultBodyMinRate     = 16 << 10 // bytes per second
)

// errBodyTimeout ends a request body that stalled or crawled.
var errBodyTimeout = errors.New("request body too slow")

// deadlineBody bounds how long a request body may take, so a client cannot
// hold a connection, its goroutine and its buffers by declaring a large
// Content-Length and sending nothing, or by sending a byte a second. Headers
// have ReadHeaderTimeout; a whole-request ReadTimeout cannot be used for
// bodies of many GB. Before each read the connection's read deadline is set
// to the earlier of
//
//   - the idle bound: now + idle (no byte for that long ends the body), and
//   - the rate bound: start + grace + received/minRate (a body must average
//     minRate once the grace period is over).
//
// The clock starts at the handler's first read, so time spent before it
// (authentication, waiting for the upload's lock) is not the client's. When
// the body ends the deadline is cleared: net/http's background read of the
// idle connection must not inherit it.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	idle    time.Duration
	grace   time.Duration
	minRate float64
	start   time.Time
	n       int64
	off     bool // the connection cannot take deadlines
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if !b.off {
		now := time.Now()
		if b.start.IsZero() {
			b.start = now
		}
		d := now.Add(b.idle)
		if b.minRate > 0 {
			credit := time.Duration(min(float64(b.n)/b.minRate, 1e6) * float64(time.Second))
			if r := b.start.Add(b.grace + credit); r.Before(d) {
				d = r
			}
		}
		if err := b.rc.SetReadDeadline(d); err != nil {
			b.off = true
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		if !b.off {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w: %d bytes in %v: %w", errBodyTimeout, b.n, time.Since(b.start).Round(time.Millisecond), err)
	}
	return n, err
}
