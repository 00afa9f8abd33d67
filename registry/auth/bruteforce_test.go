package auth

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// bruteServer guards a handler with an Authenticator over one user whose
// hash costs cost.
func bruteServer(t *testing.T, cost, maxFailures int) *httptest.Server {
	t.Helper()
	line, err := hashPassword("admin", "RIGHT", cost)
	if err != nil {
		t.Fatal(err)
	}
	users, err := ParseHtpasswd(strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Users: users, MaxFailures: maxFailures, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.Authorize(w, r, "r", ActionPull); ok {
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(ts.Close)
	return ts
}

// burst sends one request per password at the same moment and counts the
// answers by status.
func burst(t *testing.T, url string, passwords []string) (codes map[int]int, byPassword map[string]int) {
	t.Helper()
	var mu sync.Mutex
	codes, byPassword = map[int]int{}, map[string]int{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: len(passwords)}}
	defer client.CloseIdleConnections()
	for _, p := range passwords {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.SetBasicAuth("admin", p)
			<-start
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			byPassword[p] = resp.StatusCode
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return codes, byPassword
}

// The failure limit must hold against guesses sent at once: the "blocked?"
// check ran before bcrypt and the failure was counted after it, so 40
// concurrent wrong passwords all got checked, and a right one late in a
// burst of 30 got in.
func TestFailureLimitHoldsUnderConcurrency(t *testing.T) {
	ts := bruteServer(t, 8, 10)
	var pw []string
	for i := 1; i <= 40; i++ {
		pw = append(pw, fmt.Sprintf("wrong%d", i))
	}
	codes, _ := burst(t, ts.URL, pw)
	if codes[http.StatusUnauthorized] > 10 || codes[http.StatusTooManyRequests] < 30 {
		t.Fatalf("40 wrong passwords at once: %v; want at most 10 checked (401), the rest 429", codes)
	}
	// Once blocked, the right password is refused as well.
	codes, _ = burst(t, ts.URL, []string{"RIGHT"})
	if codes[http.StatusTooManyRequests] != 1 {
		t.Fatalf("right password after the limit: %v, want 429", codes)
	}

	// The repro: 30 at once, the 29th right. At most 10 checks may
	// run; the right one gets in only if it was among them.
	ts = bruteServer(t, 8, 10)
	pw = pw[:0]
	for i := 1; i <= 30; i++ {
		p := fmt.Sprintf("wrong%d", i)
		if i == 29 {
			p = "RIGHT"
		}
		pw = append(pw, p)
	}
	codes, by := burst(t, ts.URL, pw)
	checked := codes[http.StatusUnauthorized] + codes[http.StatusOK]
	if codes[http.StatusUnauthorized] > 10 || checked > 11 {
		t.Fatalf("30 guesses at once: %v; want at most 10 failures checked", codes)
	}
	t.Logf("30 guesses at once: %v (right password: %d)", codes, by["RIGHT"])
}

// Serializing the checks must not refuse legitimate clients that log in at
// the same moment with the right password.
func TestConcurrentRightPasswordsAllPass(t *testing.T) {
	ts := bruteServer(t, 8, 10)
	pw := make([]string, 16)
	for i := range pw {
		pw[i] = "RIGHT"
	}
	t0 := time.Now()
	codes, _ := burst(t, ts.URL, pw)
	if codes[http.StatusOK] != 16 {
		t.Fatalf("16 right passwords at once: %v, want 16 × 200", codes)
	}
	t.Logf("16 concurrent logins in %v", time.Since(t0))
}
