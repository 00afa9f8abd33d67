package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelctl/modelctl/registry/storage"

	"github.com/modelctl/modelctl/internal/keylock"
	"github.com/modelctl/modelctl/internal/keys"
)

// TokenPath is where the token endpoint is mounted.
const TokenPath = "/token"

// Config configures an Authenticator.
type Config struct {
	// Users checks passwords; required.
	Users *Htpasswd
	// Policy grants actions; nil lets every authenticated user do
	// everything.
	Policy *Policy
	// AnonymousPull lets requests without credentials pull every repository.
	AnonymousPull bool
	// Realm is the token endpoint's absolute URL announced in challenges.
	// Empty: this server's own TokenPath, as the client reached it.
	Realm string
	// Service names this registry in challenges and tokens (their audience).
	// Default "modelctl".
	Service string
	// Issuer is the tokens' iss. Default Service.
	Issuer string
	// Key signs tokens: ECDSA P-256 (ES256) or ed25519 (EdDSA). Nil: a fresh
	// P-256 key, so tokens die with the process; replicas behind one name
	// need a shared key.
	Key crypto.Signer
	// TokenTTL is the lifetime of an issued token. Default 5 minutes.
	TokenTTL time.Duration
	// MaxFailures failed logins within FailureWindow block a client IP, and
	// separately a user name, until the oldest failure leaves the window.
	// Defaults 10 and 5 minutes.
	MaxFailures   int
	FailureWindow time.Duration
	Logger        *slog.Logger
}

// Authenticator implements registry.Authorizer and serves the token
// endpoint.
type Authenticator struct {
	cfg    Config
	policy *Policy
	tokens *tokenSigner
	log    *slog.Logger
	ip     *limiter
	user   *limiter
	// checks serializes password checks per client IP and per user name,
	// so that a failure is counted before the next check of the same key
	// decides whether it is blocked.
	checks keylock.Map
}

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Users == nil {
		return nil, errors.New("auth: no users configured")
	}
	if cfg.Service == "" {
		cfg.Service = "modelctl"
	}
	if cfg.Issuer == "" {
		cfg.Issuer = cfg.Service
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 5 * time.Minute
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 10
	}
	if cfg.FailureWindow <= 0 {
		cfg.FailureWindow = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("auth: generate token key: %w", err)
		}
		cfg.Key = k
	}
	ts, err := newTokenSigner(cfg.Key, cfg.Issuer, cfg.Service)
	if err != nil {
		return nil, err
	}
	policy := cfg.Policy
	switch {
	case policy == nil:
		policy = AllowAll(cfg.AnonymousPull)
	case cfg.AnonymousPull:
		policy = policy.WithAnonymousPull()
	}
	return &Authenticator{
		cfg:    cfg,
		policy: policy,
		tokens: ts,
		log:    cfg.Logger,
		ip:     newLimiter(cfg.MaxFailures, cfg.FailureWindow),
		user:   newLimiter(cfg.MaxFailures, cfg.FailureWindow),
	}, nil
}

// SessionKey is a key for signing the web UI's session cookies, derived
// from the token key: replicas given one --token-key accept each other's
// logins, and a restart keeps them; without one (a fresh token key per
// process) it is fresh per process too. Knowing it gives nothing about the
// token key.
func (a *Authenticator) SessionKey() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(a.cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("auth: session key from the token key: %w", err)
	}
	m := hmac.New(sha256.New, der)
	m.Write([]byte("modelctl web UI session key, v1"))
	return m.Sum(nil), nil
}

// LoadKey reads a PEM private key for signing tokens: PKCS#8 ("PRIVATE
// KEY") or SEC 1 ("EC PRIVATE KEY"), ECDSA P-256 or ed25519.
func LoadKey(path string) (crypto.Signer, error) {
	k, err := keys.LoadPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return k, nil
}

// access is what a request asks for or a token grants on one resource.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

func (a access) scope() string {
	return a.Type + ":" + a.Name + ":" + strings.Join(a.Actions, ",")
}

// requested is the access a registry request needs.
func requested(name string, actions []string) []access {
	if len(actions) == 0 {
		return nil
	}
	if name == "" {
		// A registry-wide resource: "catalog", or "metrics".
		return []access{{Type: "registry", Name: actions[0], Actions: []string{"*"}}}
	}
	return []access{{Type: "repository", Name: name, Actions: actions}}
}

// policyActions maps a resource's actions to the policy's vocabulary.
func policyActions(a access) (name string, actions []string) {
	if a.Type == "registry" {
		if registryWide(a.Name) {
			return "", []string{a.Name}
		}
		return "", nil
	}
	return a.Name, a.Actions
}

// Authorize implements registry.Authorizer.
func (a *Authenticator) Authorize(w http.ResponseWriter, r *http.Request, name string, actions ...string) (string, bool) {
	if name == "" && len(actions) > 0 && !(len(actions) == 1 && registryWide(actions[0])) {
		return a.authorizeRegistryWide(w, r, actions)
	}
	want := requested(name, actions)
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		c, err := a.tokens.parse(strings.TrimSpace(cred))
		if err != nil {
			a.log.Info("bearer token refused", "err", err, "remote", clientIP(r), "path", r.URL.Path)
			a.challenge(w, r, want, "invalid_token", "the bearer token is invalid or expired")
			return "", false
		}
		want = a.withMountSource(r, c.Subject, name, want)
		if covers(c.Access, want) {
			return c.Subject, true
		}
		return a.refuse(w, r, c.Subject, want, "insufficient_scope")
	case strings.EqualFold(scheme, "Basic"):
		user, pass, ok := r.BasicAuth()
		if !ok {
			a.challenge(w, r, want, "", "malformed Basic credentials")
			return "", false
		}
		if !a.login(w, r, user, pass) {
			return "", false
		}
		if len(want) == 0 {
			return user, true
		}
		return a.refuse(w, r, user, a.withMountSource(r, user, name, want), "")
	case h != "":
		a.challenge(w, r, want, "", "unsupported authorization scheme")
		return "", false
	}
	want = a.withMountSource(r, "", name, want)
	if len(want) > 0 && a.permits("", want) {
		return "", true
	}
	a.challenge(w, r, want, "", "authentication required")
	return "", false
}

// refuse answers a request the credentials do not cover: ok when the policy
// allows it after all (Basic), a 401 asking for a wider token when the
// policy would grant one, 401 for anonymous, 403 for a user the policy
// denies, since logging in again cannot help.
func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, user string, want []access, tokenErr string) (string, bool) {
	if a.permits(user, want) {
		if tokenErr == "" {
			return user, true
		}
		a.challenge(w, r, want, tokenErr, "the token does not cover this request")
		return "", false
	}
	if user == "" {
		a.challenge(w, r, want, "", "authentication required")
		return "", false
	}
	a.log.Info("access denied", "user", user, "scope", scopes(want), "remote", clientIP(r), "method", r.Method, "path", r.URL.Path)
	writeError(w, http.StatusForbidden, "DENIED", fmt.Sprintf("user %q may not %s", user, scopes(want)))
	return "", false
}

func (a *Authenticator) permits(user string, want []access) bool {
	for _, w := range want {
		name, acts := policyActions(w)
		if len(acts) == 0 || len(a.policy.Allowed(user, name, acts)) != len(acts) {
			return false
		}
	}
	return true
}

// withMountSource adds pull of a cross-repository mount's source to what
// a request needs, when the policy lets user pull it: the server checks
// that pull with a second Authorize call, and a Bearer token scoped to the
// target repository alone would make the mount fall back to an upload. The
// challenge then asks the client for a token covering both, as Docker's
// clients request on their own.
func (a *Authenticator) withMountSource(r *http.Request, user, name string, want []access) []access {
	if r.Method != http.MethodPost || name == "" {
		return want
	}
	q := r.URL.Query()
	from := q.Get("from")
	if q.Get("mount") == "" || from == "" || from == name || storage.ValidateName(from) != nil {
		return want
	}
	if len(a.policy.Allowed(user, from, []string{ActionPull})) != 1 {
		return want
	}
	return append(want, access{Type: "repository", Name: from, Actions: []string{ActionPull}})
}

// authorizeRegistryWide answers a registry-wide check other than the
// catalog (name "", e.g. "pull" for a mount without a source repository):
// it holds when the caller's identity may do the actions on every
// repository. Only the server asks this, with a discarding writer, so it
// answers by identity and policy, not by token scope.
func (a *Authenticator) authorizeRegistryWide(w http.ResponseWriter, r *http.Request, actions []string) (string, bool) {
	var user string
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		c, err := a.tokens.parse(strings.TrimSpace(cred))
		if err != nil {
			a.challenge(w, r, nil, "invalid_token", "the bearer token is invalid or expired")
			return "", false
		}
		user = c.Subject
	case strings.EqualFold(scheme, "Basic"):
		u, p, ok := r.BasicAuth()
		if !ok || !a.login(w, r, u, p) {
			return "", false
		}
		user = u
	}
	for _, act := range actions {
		if !a.policy.Everywhere(user, act) {
			writeError(w, http.StatusForbidden, "DENIED", fmt.Sprintf("%s is not allowed on every repository", act))
			return "", false
		}
	}
	return user, true
}

func covers(granted, want []access) bool {
	for _, w := range want {
		ok := false
		for _, g := range granted {
			if g.Type == w.Type && g.Name == w.Name && containsAll(g.Actions, w.Actions) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func containsAll(have, want []string) bool {
	if slices.Contains(have, "*") {
		return true
	}
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func scopes(as []access) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.scope()
	}
	return strings.Join(s, " ")
}

// login checks a user's password, rate-limiting failures per client IP and
// per user. On failure it has answered the request. Passwords are never
// logged.
//
// Checks of one IP, and of one user, run one at a time: the limit is
// decided before bcrypt and a failure counted after it, so concurrent
// guesses would otherwise all pass the "blocked?" test before the first
// failure lands (40 guesses sent at once ran 40 bcrypt checks). A login
// remembered from the last minute needs no bcrypt and waits for nothing,
// so clients that send Basic on every request are not serialized.
func (a *Authenticator) login(w http.ResponseWriter, r *http.Request, user, pass string) bool {
	ip := clientIP(r)
	if a.tooMany(w, ip, user) {
		return false
	}
	if a.cfg.Users.remembered(user, pass) {
		return true
	}
	// IP before user, always, so two requests never wait on each other.
	unlockIP, err := a.checks.Lock(r.Context(), "ip\x00"+ip)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "request cancelled")
		return false
	}
	defer unlockIP()
	unlockUser, err := a.checks.Lock(r.Context(), "user\x00"+user)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "request cancelled")
		return false
	}
	defer unlockUser()
	if a.tooMany(w, ip, user) {
		return false
	}
	if a.cfg.Users.Authenticate(user, pass) {
		return true
	}
	a.ip.fail(ip)
	a.user.fail(user)
	a.log.Warn("failed login", "user", user, "remote", ip, "path", r.URL.Path)
	a.challenge(w, r, nil, "", "invalid user name or password")
	return false
}

// tooMany answers 429 when ip or user is over the failure limit.
func (a *Authenticator) tooMany(w http.ResponseWriter, ip, user string) bool {
	blocked, wait := a.blocked(ip, user)
	if !blocked {
		return false
	}
	a.log.Warn("login refused: too many failed logins", "user", user, "remote", ip, "retry_after", wait.Round(time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
	writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "too many failed logins; try again later")
	return true
}

func (a *Authenticator) blocked(ip, user string) (bool, time.Duration) {
	b1, w1 := a.ip.blocked(ip)
	b2, w2 := a.user.blocked(user)
	return b1 || b2, max(w1, w2)
}

// challenge answers 401 with the Bearer challenge naming the token endpoint
// and the scope the request needs.
func (a *Authenticator) challenge(w http.ResponseWriter, r *http.Request, want []access, tokenErr, msg string) {
	c := fmt.Sprintf("Bearer realm=%q,service=%q", a.realm(r), a.cfg.Service)
	if len(want) > 0 {
		c += fmt.Sprintf(",scope=%q", scopes(want))
	}
	if tokenErr != "" {
		c += fmt.Sprintf(",error=%q", tokenErr)
	}
	w.Header().Set("WWW-Authenticate", c)
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", msg)
}

// realm is the token endpoint as the client reached this server. The Host
// header is the client's own, but it is reduced to host characters so it
// cannot break out of the quoted challenge.
func (a *Authenticator) realm(r *http.Request) string {
	if a.cfg.Realm != "" {
		return a.cfg.Realm
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c) {
			return c
		}
		return -1
	}, r.Host)
	return scheme + "://" + host + TokenPath
}

// clientIP is the address of the connection's peer. Forwarded headers are
// not trusted: anyone can send them.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
