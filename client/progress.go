package client

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelctl/modelctl/internal/humanize"
)

// progress draws one line per file on a terminal: bytes, rate, ETA. A nil
// *progress (no terminal) costs nothing.
type progress struct {
	w     io.Writer
	mu    sync.Mutex
	files []*fileProgress
	stop  chan struct{}
	done  chan struct{}
	lines int
}

// fileProgress counts the bytes of one file; its methods are nil-safe.
type fileProgress struct {
	name    string
	total   int64
	n       atomic.Int64
	start   atomic.Int64 // unix nanos of the (re)start
	base    atomic.Int64 // bytes present before this run (resumed, cached)
	settled atomic.Bool
}

func newProgress(w io.Writer) *progress {
	if w == nil {
		return nil
	}
	p := &progress{w: w, stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *progress) file(name string, total int64) *fileProgress {
	if p == nil {
		return nil
	}
	f := &fileProgress{name: name, total: total}
	f.start.Store(time.Now().UnixNano())
	p.mu.Lock()
	p.files = append(p.files, f)
	p.mu.Unlock()
	return f
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.draw()
			return
		case <-t.C:
			p.draw()
		}
	}
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	if p.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.lines)
	}
	for _, f := range p.files {
		n := f.n.Load()
		el := time.Since(time.Unix(0, f.start.Load())).Seconds()
		rate := float64(n-f.base.Load()) / max(el, 0.001)
		eta := "--"
		if f.settled.Load() || n >= f.total {
			eta = "done"
		} else if rate > 0 {
			eta = (time.Duration(float64(f.total-n)/rate) * time.Second / time.Second).Round(time.Second).String()
		}
		pct := 100.0
		if f.total > 0 {
			pct = 100 * float64(n) / float64(f.total)
		}
		fmt.Fprintf(&b, "\x1b[2K%-32.32s %5.1f%% %9s/%-9s %9s/s  %s\n", f.name, pct, humanize.Bytes(n), humanize.Bytes(f.total), humanize.Bytes(int64(rate)), eta)
	}
	p.lines = len(p.files)
	io.WriteString(p.w, b.String())
}

func (p *progress) close() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
}

func (f *fileProgress) add(n int64) {
	if f != nil {
		f.n.Add(n)
	}
}

// set moves the counter to an absolute offset (a resumed transfer).
func (f *fileProgress) set(n int64) {
	if f != nil {
		f.n.Store(n)
		f.base.Store(n)
		f.start.Store(time.Now().UnixNano())
	}
}

func (f *fileProgress) done() {
	if f != nil {
		f.n.Store(f.total)
		f.settled.Store(true)
	}
}
