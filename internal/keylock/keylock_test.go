package keylock

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockSerializesAKeyAndForgetsIt(t *testing.T) {
	var m Map
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := m.Lock(context.Background(), "k")
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				old := most.Load()
				if n <= old || most.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			inside.Add(-1)
			unlock()
			unlock() // a second call is harmless
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d holders at once, want 1", most.Load())
	}
	if m.Len() != 0 {
		t.Fatalf("%d entries left after every holder left, want 0", m.Len())
	}
}

func TestLockKeepsNothingForDistinctKeysOrCancelledWaits(t *testing.T) {
	var m Map
	for i := 0; i < 1000; i++ {
		unlock, err := m.Lock(context.Background(), strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		unlock()
	}
	unlock, _ := m.Lock(context.Background(), "busy")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := m.Lock(ctx, "busy"); err == nil {
		t.Fatal("Lock of a held key returned before its context ended")
	}
	unlock()
	if m.Len() != 0 {
		t.Fatalf("%d entries left, want 0", m.Len())
	}
}
