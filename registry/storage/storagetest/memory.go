package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
)

// UploadMemory checks that the memory of uploads in progress is bounded by
// the server's buffer budget, not by the number of requests: bodies that
// wait for bytes hold no large buffer (the heap grows by far less than a
// copy buffer per extra waiting body, from n to 4n of them), fast bodies
// share the budget without exceeding it and all arrive intact, and a copy
// that fails gives its buffers back. newDriver returns a driver over a
// fresh, empty store.
func UploadMemory(t *testing.T, newDriver func(t *testing.T) storage.Driver) {
	// A budget of its own, so that the high-water mark is this test's.
	defer func(p *storage.BufferPool) { storage.LargeBuffers = p }(storage.LargeBuffers)
	pool := storage.NewBufferPool(storage.LargeBufferSize, storage.DefaultLargeBuffers)
	storage.LargeBuffers = pool

	t.Run("WaitingBodies", func(t *testing.T) {
		store := storage.NewStore(newDriver(t))
		ctx := ctxFor(t)
		const n = 8
		var bodies []*slowBody
		defer func() {
			for _, b := range bodies {
				b.stop()
			}
		}()
		open := func(k int) {
			for i := 0; i < k; i++ {
				b, err := startSlowBody(ctx, store, "mem/slow")
				if err != nil {
					t.Fatal(err)
				}
				bodies = append(bodies, b)
			}
		}
		open(n)
		before := liveMemory()
		open(3 * n)
		after := liveMemory()
		perBody := (after - before) / (3 * n)
		t.Logf("live heap and stacks: %d KiB with %d waiting bodies, %d KiB with %d: %d KiB per body; large buffers out at most %d",
			before>>10, n, after>>10, 4*n, perBody>>10, pool.HighWater())
		// A large copy buffer is 4 MiB, a small one 32 KiB; a waiting body
		// holds neither, only its goroutines and a 512-byte read.
		if perBody > 64<<10 {
			t.Errorf("each waiting body holds %d KiB: memory grows with the number of slow connections", perBody>>10)
		}
		if hw := pool.HighWater(); hw != 0 {
			t.Errorf("waiting bodies took %d large buffers", hw)
		}
		for _, b := range bodies {
			b.stop()
		}
		for _, b := range bodies {
			if err := b.wait(); err == nil {
				t.Error("a body cut off with an error completed its chunk")
			}
			// What arrived before the cut is kept and counted.
			if u, err := store.UploadStatus(ctx, "mem/slow", b.id); err != nil || u.Offset != int64(len(slowPrefix)) {
				t.Errorf("upload %s after the cut: offset %d (%v), want %d", b.id, u.Offset, err, len(slowPrefix))
			}
		}
		bodies = nil
	})

	t.Run("FastBodiesShareTheBudget", func(t *testing.T) {
		store := storage.NewStore(newDriver(t))
		ctx := ctxFor(t)
		const clients = 12 // more than the budget serves at two buffers each
		size := 3*storage.LargeBufferSize + 12345
		var wg sync.WaitGroup
		errs := make([]error, clients)
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data := patternBytes(uint64(i), size)
				want := digest.FromBytes(data)
				var info storage.BlobInfo
				var err error
				if i%2 == 0 {
					// One request with the digest known (S3 streams it).
					info, err = store.PutBlob(ctx, "mem/fast", want, bytes.NewReader(data))
				} else {
					// Chunks of odd sizes, then the digest.
					info, err = chunkedUpload(ctx, store, "mem/fast", want, data)
				}
				if err == nil && (info.Digest != want || info.Size != int64(size)) {
					err = fmt.Errorf("stored %s (%d bytes), want %s (%d)", info.Digest, info.Size, want, size)
				}
				if err == nil {
					err = readBack(ctx, store, "mem/fast", want)
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d concurrent uploads: at most %d of %d large buffers out", clients, pool.HighWater(), pool.Cap())
		if pool.HighWater() > pool.Cap() || pool.HighWater() == 0 {
			t.Errorf("large buffers out at most: %d, budget %d (want 1 to %d)", pool.HighWater(), pool.Cap(), pool.Cap())
		}
		if pool.InUse() != 0 {
			t.Errorf("%d large buffers still out after every upload ended", pool.InUse())
		}
	})

	t.Run("FailedCopyGivesBuffersBack", func(t *testing.T) {
		store := storage.NewStore(newDriver(t))
		ctx := ctxFor(t)
		u, err := store.StartUpload(ctx, "mem/fail")
		if err != nil {
			t.Fatal(err)
		}
		data := patternBytes(7, 2*storage.LargeBufferSize+999)
		body := io.MultiReader(bytes.NewReader(data), iotestErrReader{errors.New("connection reset")})
		got, err := store.AppendUpload(ctx, "mem/fail", u.ID, -1, -1, body)
		if err == nil {
			t.Fatal("a body that failed was accepted")
		}
		if got.Offset != int64(len(data)) {
			t.Errorf("offset %d after the failure, want the %d bytes that arrived", got.Offset, len(data))
		}
		// The reader gives back what it holds as it ends; allow it a moment.
		for i := 0; pool.InUse() != 0 && i < 100; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if pool.InUse() != 0 {
			t.Errorf("%d large buffers still out after a failed copy", pool.InUse())
		}
	})
}

const slowPrefix = "the first bytes of a body that then waits"

// slowBody is an upload request whose body sent a few bytes and waits.
type slowBody struct {
	id   string
	pw   *io.PipeWriter
	done chan error
}

func startSlowBody(ctx context.Context, store *storage.Store, name string) (*slowBody, error) {
	u, err := store.StartUpload(ctx, name)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	b := &slowBody{id: u.ID, pw: pw, done: make(chan error, 1)}
	go func() {
		_, err := store.AppendUpload(ctx, name, u.ID, -1, -1, pr)
		b.done <- err
	}()
	// The write returns once the copy has read the bytes: it is then
	// waiting for more.
	if _, err := io.WriteString(pw, slowPrefix); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *slowBody) stop() { b.pw.CloseWithError(errors.New("client went away")) }

func (b *slowBody) wait() error { return <-b.done }

// liveMemory is the live heap and the goroutine stacks, after a collection.
func liveMemory() int {
	var ms runtime.MemStats
	for i := 0; i < 2; i++ {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return int(ms.HeapAlloc + ms.StackInuse)
}

func patternBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// chunkedUpload sends data as PATCHes of odd sizes, then completes.
func chunkedUpload(ctx context.Context, store *storage.Store, name string, want digest.Digest, data []byte) (storage.BlobInfo, error) {
	u, err := store.StartUpload(ctx, name)
	if err != nil {
		return storage.BlobInfo{}, err
	}
	for off := 0; off < len(data); {
		n := min(len(data)-off, 5<<20+4097)
		if _, err := store.AppendUpload(ctx, name, u.ID, int64(off), int64(n), bytes.NewReader(data[off:off+n])); err != nil {
			return storage.BlobInfo{}, err
		}
		off += n
	}
	return store.CompleteUpload(ctx, name, u.ID, want, int64(len(data)), nil)
}

func readBack(ctx context.Context, store *storage.Store, name string, want digest.Digest) error {
	r, _, err := store.OpenBlob(ctx, name, want, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return err
	}
	if got := digest.NewDigest(digest.SHA256, h); got != want {
		return fmt.Errorf("read back %s, want %s", got, want)
	}
	return nil
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }
