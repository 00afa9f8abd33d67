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
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// maxBcryptCost is the dearest hash accepted, htpasswd's own limit.
const maxBcryptCost = 17

// maxHtpasswdSize bounds the file read at start-up; a user list is small.
const maxHtpasswdSize = 16 << 20

// Htpasswd checks user names and passwords against an htpasswd file whose
// hashes are bcrypt ($2a$, $2b$, $2y$). Other schemes (MD5 "$apr1$", SHA1,
// crypt, plain) are refused when the file is loaded: they are weak, and
// silently ignoring a line would lock its user out without a word.
type Htpasswd struct {
	users map[string][]byte
	// An unknown user is checked against a dummy hash so that refusing
	// them takes as long as refusing a real user. Real users' costs differ
	// (htpasswd -B defaults to 5, other tools to 10 or more), so one dummy
	// of any single cost would set unknown names apart: each unknown name
	// gets the cost of one real user, picked by a keyed hash of the name,
	// so unknown names spread over the costs as the real users do, and a
	// name answers the same way every time.
	dummies map[int][]byte // by cost
	costs   []int          // every user's cost, in user-name order

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
		if c > maxBcryptCost {
			// Each check would take minutes, and so would making the dummy
			// hash of that cost at start-up.
			return nil, fmt.Errorf("line %d (user %q): bcrypt cost %d is over %d (htpasswd -C takes 4 to 17)", n, user, c, maxBcryptCost)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("line %d: user %q appears twice", n, user)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("no users")
	}
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	costs := make([]int, len(names))
	dummies := map[int][]byte{}
	for i, u := range names {
		c, _ := bcrypt.Cost(users[u])
		costs[i] = c
		if dummies[c] == nil {
			d, err := bcrypt.GenerateFromPassword([]byte("modelctl-dummy"), c)
			if err != nil {
				return nil, err
			}
			dummies[c] = d
		}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return &Htpasswd{users: users, dummies: dummies, costs: costs, key: key, verdict: map[string]cachedLogin{}}, nil
}

// dummyFor is the hash an unknown user's password is checked against.
func (h *Htpasswd) dummyFor(user string) []byte {
	mac := hmac.New(sha256.New, h.key)
	mac.Write([]byte("dummy\x00"))
	mac.Write([]byte(user))
	i := binary.BigEndian.Uint64(mac.Sum(nil)) % uint64(len(h.costs))
	return h.dummies[h.costs[i]]
}

func (h *Htpasswd) mac(user, password string) []byte {
	mac := hmac.New(sha256.New, h.key)
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	return mac.Sum(nil)
}

// remembered reports whether password is user's according to a check that
// succeeded within the last minute: no bcrypt is run.
func (h *Htpasswd) remembered(user, password string) bool {
	if _, ok := h.users[user]; !ok {
		return false
	}
	h.mu.Lock()
	c, hit := h.verdict[user]
	h.mu.Unlock()
	return hit && time.Now().Before(c.expires) && hmac.Equal(c.mac, h.mac(user, password))
}

// Authenticate reports whether password is user's.
func (h *Htpasswd) Authenticate(user, password string) bool {
	hash, ok := h.users[user]
	if !ok {
		_ = bcrypt.CompareHashAndPassword(h.dummyFor(user), []byte(password))
		return false
	}
	if h.remembered(user, password) {
		return true
	}
	sum := h.mac(user, password)
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return false
	}
	h.mu.Lock()
	h.verdict[user] = cachedLogin{mac: sum, expires: time.Now().Add(loginCacheTTL)}
	h.mu.Unlock()
	return true
}

// Has reports whether user is in the file.
func (h *Htpasswd) Has(user string) bool {
	_, ok := h.users[user]
	return ok
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
