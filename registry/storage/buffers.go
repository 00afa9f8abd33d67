package storage

import (
	"encoding"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"

	"github.com/modelctl/modelctl/internal/directio"
)

// Memory for request bodies is bounded by a server-wide budget, not by the
// number of connections. A body is waited for with a 512-byte read; bytes
// that come slower than that are written as they come (a trickle costs a
// small write, not a buffer held while it waits). A body whose read fills
// goes on in a small chunk, and once a small chunk fills (the bytes flow)
// in a large buffer, if the budget has one free: otherwise in small chunks.
// So a body that trickles (a byte a second, or a client that stalls) holds
// no buffer at all while it waits, a thousand of them cost what a thousand
// idle connections cost, and a fast client still gets the large buffers
// that keep syscalls, hashing and direct writes cheap.
const (
	// probeSize is the read that waits for a body's next bytes.
	probeSize = 512
	// SmallBufferSize is the chunk of a body that is not known to flow
	// yet: 32 KiB (a multiple of the direct-I/O block), about what
	// net/http itself holds per connection.
	SmallBufferSize = 32 << 10
	// LargeBufferSize is the chunk of a flowing body (4 MiB took less
	// CPU than 1 MiB: fewer syscalls, hash calls and direct writes).
	LargeBufferSize = 4 << 20
	// DefaultLargeBuffers is the budget's size in large buffers: 32 MiB.
	// One upload request uses at most two (one filling, one being written).
	DefaultLargeBuffers = 8
)

// BufferPool hands out at most a fixed number of equal, direct-I/O-aligned
// buffers. It never blocks: when the budget is spent TryGet says so and the
// caller carries on with less. Buffers are allocated on first use (outside
// the Go heap where the platform allows, see allocLarge) and then kept for
// reuse, so the pool's memory is at most count × size, ever.
type BufferPool struct {
	size   int
	tokens chan struct{} // one per buffer that may be out
	free   chan *[]byte  // allocated buffers not in use

	out, high atomic.Int64
}

// NewBufferPool returns a budget of count buffers of size bytes.
func NewBufferPool(size, count int) *BufferPool {
	p := &BufferPool{size: size, tokens: make(chan struct{}, count), free: make(chan *[]byte, count)}
	for i := 0; i < count; i++ {
		p.tokens <- struct{}{}
	}
	return p
}

// LargeBuffers is the process-wide budget of large copy buffers that every
// Store and driver of this process shares.
var LargeBuffers = NewBufferPool(LargeBufferSize, DefaultLargeBuffers)

// TryGet returns a buffer, or nil when all are out.
func (p *BufferPool) TryGet() *[]byte {
	select {
	case <-p.tokens:
	default:
		return nil
	}
	n := p.out.Add(1)
	for {
		h := p.high.Load()
		if n <= h || p.high.CompareAndSwap(h, n) {
			break
		}
	}
	select {
	case b := <-p.free:
		return b
	default:
		b := allocLarge(p.size)
		return &b
	}
}

// Put returns a buffer TryGet handed out.
func (p *BufferPool) Put(b *[]byte) {
	p.free <- b
	p.out.Add(-1)
	p.tokens <- struct{}{}
}

// Size is the size of each buffer.
func (p *BufferPool) Size() int { return p.size }

// Cap is how many buffers the budget holds.
func (p *BufferPool) Cap() int { return cap(p.tokens) }

// InUse is how many buffers are out now.
func (p *BufferPool) InUse() int { return int(p.out.Load()) }

// HighWater is the most buffers that were out at once.
func (p *BufferPool) HighWater() int { return int(p.high.Load()) }

// smallBuffers are taken per chunk, not per request: a body that waits
// holds none. They are aligned so that the filesystem driver could write
// one directly.
var smallBuffers = sync.Pool{New: func() any { b := directio.Buffer(SmallBufferSize); return &b }}

// Copy copies r into w through the server's buffer budget (see
// LargeBuffers), for drivers that store a stream (S3 PutStream).
func Copy(w io.Writer, r io.Reader) (int64, error) {
	return copyChunks(w, nil, r, 0, LargeBuffers)
}

// copyHashed copies r into w and h, keeping them in step: h sees exactly the
// bytes w accepted, even when w fails part-way. pos is where the copy
// starts in the object being written: chunks are cut so that full ones end
// on block boundaries (the filesystem driver writes aligned chunks
// directly).
func copyHashed(w io.Writer, h hash.Hash, r io.Reader, pos int64) (int64, error) {
	return copyChunks(w, h, r, pos, LargeBuffers)
}

type bufKind uint8

const (
	ownBuf   bufKind = iota // allocated for the chunk: a few bytes
	smallBuf                // from smallBuffers
	largeBuf                // from the budget
)

// copyChunks is copyHashed with h optional and the budget given. Until the
// body flows it reads and writes in the caller's goroutine: a waiting body
// costs no goroutine of its own either. Once a read fills, copyPipelined
// takes over.
func copyChunks(w io.Writer, h hash.Hash, r io.Reader, pos int64, pool *BufferPool) (int64, error) {
	probe := make([]byte, probeSize)
	var total int64
	for zero := 0; ; {
		n, err := r.Read(probe)
		if n == 0 && err == nil {
			if zero++; zero <= 100 {
				continue
			}
			err = io.ErrNoProgress
		}
		zero = 0
		if n == len(probe) && err == nil {
			m, err := copyPipelined(w, h, r, pos, pool, probe)
			return total + m, err
		}
		if n > 0 {
			// The writer first, then the hash over what it accepted.
			nw, werr := w.Write(probe[:n])
			if h != nil {
				h.Write(probe[:nw])
			}
			total += int64(nw)
			pos += int64(nw)
			if werr == nil && nw != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

// copyPipelined copies a body that flows, first (a full probe read) and
// then the rest of r. Reading the next chunk, writing the current one and
// hashing it run at the same time, so on a host with cores to spare an
// upload goes at the speed of the slowest of the three (hashing, here)
// rather than of their sum.
func copyPipelined(w io.Writer, h hash.Hash, r io.Reader, pos int64, pool *BufferPool, first []byte) (int64, error) {
	type chunk struct {
		buf  *[]byte
		kind bufKind
		n    int
		err  error // the read error that followed these n bytes
	}
	release := func(c chunk) {
		switch c.kind {
		case smallBuf:
			smallBuffers.Put(c.buf)
		case largeBuf:
			pool.Put(c.buf)
		}
	}
	// Unbuffered: a chunk is the writer's once it is received, else the
	// reader's, which puts it back when the copy ends early.
	full := make(chan chunk)
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		probe := first
		for zero := 0; ; {
			var n int
			var err error
			if first != nil {
				n, first = len(first), nil
			} else {
				n, err = r.Read(probe)
			}
			if n == 0 && err == nil {
				if zero++; zero > 100 {
					err = io.ErrNoProgress
				} else {
					continue
				}
			}
			zero = 0
			var c chunk
			if n < len(probe) || err != nil {
				// Not flowing, or the end: write what came.
				b := make([]byte, n)
				copy(b, probe[:n])
				c = chunk{buf: &b, kind: ownBuf, n: n, err: err}
			} else {
				// Cut full chunks to end on the block grid.
				skew := int(pos % directio.Align)
				sp := smallBuffers.Get().(*[]byte)
				copy(*sp, probe)
				m, err := io.ReadFull(r, (*sp)[n:SmallBufferSize-skew])
				c = chunk{buf: sp, kind: smallBuf, n: n + m, err: err}
				if err == nil {
					// The small chunk filled: the body flows. Go on in a
					// large buffer if the budget has one free.
					if lp := pool.TryGet(); lp != nil {
						copy(*lp, (*sp)[:c.n])
						smallBuffers.Put(sp)
						m, err := io.ReadFull(r, (*lp)[c.n:pool.Size()-skew])
						c = chunk{buf: lp, kind: largeBuf, n: c.n + m, err: err}
					}
				}
			}
			if c.err == io.ErrUnexpectedEOF {
				c.err = io.EOF
			}
			pos += int64(c.n)
			select {
			case full <- c:
			case <-quit:
				release(c)
				return
			}
			if c.err != nil {
				return
			}
		}
	}()

	var marshaler encoding.BinaryMarshaler
	if h != nil {
		marshaler, _ = h.(encoding.BinaryMarshaler)
	}
	hashed := make(chan struct{})
	var total int64
	for {
		c := <-full
		if c.n > 0 {
			b := (*c.buf)[:c.n]
			var before []byte
			if h != nil {
				if marshaler != nil {
					before, _ = marshaler.MarshalBinary()
				}
				go func() { h.Write(b); hashed <- struct{}{} }()
			}
			nw, werr := w.Write(b)
			if h != nil {
				<-hashed
			}
			total += int64(nw)
			if werr == nil && nw != c.n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				release(c)
				if h == nil {
					return total, werr
				}
				// The hash ran over the whole buffer; wind it back to what
				// the writer accepted.
				if before == nil {
					return total, fmt.Errorf("%w (and the hash cannot be rewound)", werr)
				}
				if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(before); err != nil {
					return total, err
				}
				h.Write(b[:nw])
				return total, werr
			}
		}
		release(c)
		switch {
		case c.err == io.EOF:
			return total, nil
		case c.err != nil:
			return total, c.err
		}
	}
}
