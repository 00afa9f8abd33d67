// Package auth guards the registry: users from an htpasswd file (bcrypt),
// per-repository permissions from a policy file, the Docker/OCI token flow
// (a Bearer challenge and a token endpoint issuing short-lived signed JWTs),
// Basic credentials accepted directly, and failed logins rate-limited.
package auth

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// maxHtpasswdSize bounds the file read at start-up; a user list is small.
const maxHtpasswdSize = 16 << 20

// Htpasswd checks user names and passwords against an htpasswd file whose
// hashes are bcrypt ($2a$, $2b$, $2y$). Other schemes (MD5 "$apr1$", SHA1,
// crypt, plain) are refused when the file is loaded: they are weak, and
// silently ignoring a line would lock its user out without a word.
type Htpasswd struct {
	users map[string][]byte
	dummy []byte // hashed for unknown users so timing does not reveal who exists

	// A bcrypt check costs tens of milliseconds; a client sending Basic
	// credentials on every request would pay it each time. Successful
	// checks are remembered for a minute as an HMAC of the password under a
	// per-process key, never the password itself.
	mu      sync.Mutex
	key     []byte
	verdict map[string]cachedLogin
}

type cachedLogin struct {
	mac     []byte
	expires time.Time
}

const loginCacheTTL = time.Minute

// LoadHtpasswd reads an htpasswd file: "user:bcrypt-hash" lines, blank lines
// and "#" comments ignored.
func LoadHtpasswd(path string) (*Htpasswd, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	defer f.Close()
	h, err := ParseHtpasswd(io.LimitReader(f, maxHtpasswdSize+1))
	if err != nil {
		return nil, fmt.Errorf("htpasswd %s: %w", path, err)
	}
	return h, nil
}

// ParseHtpasswd parses htpasswd content.
func ParseHtpasswd(r io.Reader) (*Htpasswd, error) {
	users := map[string][]byte{}
	cost := bcrypt.MinCost
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" || hash == "" {
			return nil, fmt.Errorf("line %d: want user:hash", n)
		}
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("line %d (user %q): not a bcrypt hash (create it with `htpasswd -B` or `modelctl`-compatible tools): %w", n, user, err)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("line %d: user %q appears twice", n, user)
		}
		users[user] = []byte(hash)
		cost = max(cost, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("no users")
	}
	// The dummy costs what the dearest real hash costs, so an unknown user
	// takes as long to refuse as a known one.
	dummy, err := bcrypt.GenerateFromPassword([]byte("modelctl-dummy"), cost)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return &Htpasswd{users: users, dummy: dummy, key: key, verdict: map[string]cachedLogin{}}, nil
}

// Authenticate reports whether password is user's.
func (h *Htpasswd) Authenticate(user, password string) bool {
	hash, ok := h.users[user]
	mac := hmac.New(sha256.New, h.key)
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	sum := mac.Sum(nil)
	if ok {
		h.mu.Lock()
		c, hit := h.verdict[user]
		h.mu.Unlock()
		if hit && time.Now().Before(c.expires) && hmac.Equal(c.mac, sum) {
			return true
		}
	}
	if !ok {
		_ = bcrypt.CompareHashAndPassword(h.dummy, []byte(password))
		return false
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return false
	}
	h.mu.Lock()
	h.verdict[user] = cachedLogin{mac: sum, expires: time.Now().Add(loginCacheTTL)}
	h.mu.Unlock()
	return true
}

// Users returns the user names, for policy checks at start-up.
func (h *Htpasswd) Users() []string {
	out := make([]string, 0, len(h.users))
	for u := range h.users {
		out = append(out, u)
	}
	return out
}

// HashPassword returns a bcrypt htpasswd line for user, for tests and docs.
func HashPassword(user, password string) (string, error) {
	return hashPassword(user, password, bcrypt.DefaultCost)
}

func hashPassword(user, password string, cost int) (string, error) {
	if strings.ContainsAny(user, ":\n") {
		return "", fmt.Errorf("user name %q: no ':' or newline", user)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", err
	}
	return user + ":" + string(bytes.TrimSpace(hash)), nil
}
