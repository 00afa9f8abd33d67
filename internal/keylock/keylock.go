// Package keylock serializes work per key (an upload session, a user name, a
// client address) without keeping anything for keys no longer in use.
package keylock

import (
	"context"
	"sync"
)

// Map hands out one lock per key. An entry exists only while someone holds
// or waits for its key, so memory follows the keys in use, never the keys
// ever asked for: a stream of distinct keys from a client leaves nothing
// behind. The zero Map is ready to use.
type Map struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	sem  chan struct{} // holds one token while the key is locked
	refs int           // holders and waiters
}

// Lock waits until key is free or ctx ends, and returns the function that
// frees it (safe to call more than once).
func (m *Map) Lock(ctx context.Context, key string) (unlock func(), err error) {
	m.mu.Lock()
	if m.m == nil {
		m.m = map[string]*entry{}
	}
	e := m.m[key]
	if e == nil {
		e = &entry{sem: make(chan struct{}, 1)}
		m.m[key] = e
	}
	e.refs++
	m.mu.Unlock()

	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		m.release(key, e)
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.sem
			m.release(key, e)
		})
	}, nil
}

func (m *Map) release(key string, e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(m.m, key)
	}
}

// Len is the number of keys held or waited for.
func (m *Map) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.m)
}
