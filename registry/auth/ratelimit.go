package auth

import (
	"sync"
	"time"
)

// limiter counts failed logins per key (a client IP, a user name) in a
// sliding window. A key over the limit is refused without checking the
// password, which also keeps an attacker from burning CPU on bcrypt.
type limiter struct {
	mu      sync.Mutex
	max     int
	window  time.Duration
	now     func() time.Time
	entries map[string][]time.Time
}

// maxLimiterKeys bounds the limiter's memory under a flood of distinct
// names or addresses; past it, expired entries are swept.
const maxLimiterKeys = 100000

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, now: time.Now, entries: map[string][]time.Time{}}
}

// blocked reports whether key has failed max times within the window, and
// when the oldest of those failures leaves it.
func (l *limiter) blocked(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.live(key)
	if len(ts) < l.max {
		return false, 0
	}
	return true, ts[0].Add(l.window).Sub(l.now())
}

// fail records a failed login of key.
func (l *limiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.entries) >= maxLimiterKeys {
		l.sweep()
	}
	ts := append(l.live(key), l.now())
	if len(ts) > l.max {
		ts = ts[len(ts)-l.max:]
	}
	l.entries[key] = ts
}

// live drops failures older than the window; l.mu is held.
func (l *limiter) live(key string) []time.Time {
	ts := l.entries[key]
	cut := l.now().Add(-l.window)
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.entries, key)
		return nil
	}
	l.entries[key] = ts
	return ts
}

func (l *limiter) sweep() {
	for k := range l.entries {
		l.live(k)
	}
	if len(l.entries) >= maxLimiterKeys {
		// Still full of live entries: forget everything rather than grow
		// without bound; a flood this size is a DoS to handle upstream.
		clear(l.entries)
	}
}
