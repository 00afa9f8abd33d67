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
// number of connections. A body is read in small chunks first; only when a
// small chunk fills (the bytes are flowing) does the copy take a large
// buffer, and only if the budget has one free: otherwise it goes on in small
// chunks. A body that trickles (a byte a second, or a client that stalls)
// never holds more than one small buffer, so a thousand of them cost what
// a thousand idle connections cost, and a fast client still gets the large
// buffers that keep syscalls, hashing and direct writes cheap.
const (
	// SmallBufferSize is the chunk every body is read in until it flows:
	// 32 KiB (a multiple of the direct-I/O block), about what net/http
	// itself holds per connection.
	SmallBufferSize = 32 << 10
	// LargeBufferSize is the chunk of a flowing body (see copyBufferSize's
	// history in docs/registry.md: 4 MiB took less CPU than 1 MiB).
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

// smallBuffers are per request, so they are not budgeted: one is what a
// waiting body holds, like the connection's own buffers. They are aligned so
// that the filesystem driver can write a full one directly.
var smallBuffers = sync.Pool{New: func() any { b := directio.Buffer(SmallBufferSize); return &b }}

// Copy copies r into w through the server's buffer budget (see
// LargeBuffers), for drivers that store a stream (S3 PutStream).
func Copy(w io.Writer, r io.Reader) (int64, error) {
	return copyChunks(w, nil, r, 0, LargeBuffers)
}

// copyHashed copies r into w and h, keeping them in step: h sees exactly the
// bytes w accepted, even when w fails part-way. pos is where the copy
// starts in the object being written: the first chunk is cut so that the
// following ones start on block boundaries (the filesystem driver writes
// aligned chunks directly).
func copyHashed(w io.Writer, h hash.Hash, r io.Reader, pos int64) (int64, error) {
	return copyChunks(w, h, r, pos, LargeBuffers)
}

// copyChunks is copyHashed with h optional and the budget given. Reading
// the next chunk, writing the current one and hashing it run at the same
// time, so on a host with cores to spare an upload goes at the speed of the
// slowest of the three (hashing, here) rather than of their sum.
func copyChunks(w io.Writer, h hash.Hash, r io.Reader, pos int64, pool *BufferPool) (int64, error) {
	type chunk struct {
		buf   *[]byte
		large bool
		n     int
		err   error // the read error that followed these n bytes
	}
	// At most two small buffers: one being read into while the other is
	// written. The reader takes the second only when the first is still
	// being written, so a waiting body holds one.
	smalls := make(chan *[]byte, 2)
	// Unbuffered: a chunk is the writer's once it is received, else the
	// reader's, which puts it back when the copy ends early.
	full := make(chan chunk)
	quit := make(chan struct{})
	release := func(c chunk) {
		if c.large {
			pool.Put(c.buf)
		} else {
			smalls <- c.buf
		}
	}
	defer func() {
		close(quit)
		for {
			select {
			case bp := <-smalls:
				smallBuffers.Put(bp)
			default:
				return
			}
		}
	}()
	skew := int(pos % directio.Align)
	go func() {
		taken := 0
		for {
			var sp *[]byte
			select {
			case sp = <-smalls:
			case <-quit:
				return
			default:
				if taken < 2 {
					taken++
					sp = smallBuffers.Get().(*[]byte)
					break
				}
				select {
				case sp = <-smalls:
				case <-quit:
					return
				}
			}
			want := SmallBufferSize - skew
			n, err := io.ReadFull(r, (*sp)[:want])
			c := chunk{buf: sp, n: n, err: err}
			if err == nil {
				// The small chunk filled: the body flows. Go on in a large
				// buffer if the budget has one free.
				if lp := pool.TryGet(); lp != nil {
					copy(*lp, (*sp)[:n])
					smalls <- sp
					m, err := io.ReadFull(r, (*lp)[n:pool.Size()-skew])
					c = chunk{buf: lp, large: true, n: n + m, err: err}
				}
			}
			skew = 0
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
		case c.err == io.EOF || c.err == io.ErrUnexpectedEOF:
			return total, nil
		case c.err != nil:
			return total, c.err
		}
	}
}
