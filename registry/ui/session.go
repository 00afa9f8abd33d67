package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Cookies. The session cookie is "user|expiry|nonce|mac", signed with the
// handler's key, so any request proves its login without server state; the
// CSRF token of a logged-in form is derived from it. Before login, the form
// is guarded by a double-submit cookie instead.
const (
	sessionCookie   = "modelctl_session"
	loginCSRFCookie = "modelctl_login_csrf"
	maxUserLen      = 256
	maxPasswordLen  = 1024
	maxFormBody     = 8 << 10
)

type sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

func newSessions(key []byte, ttl time.Duration) (*sessions, error) {
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("ui: session key: %w", err)
		}
	}
	return &sessions{key: key, ttl: ttl, now: time.Now}, nil
}

func (s *sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// issue returns a session cookie value for user.
func (s *sessions) issue(user string) (string, time.Time) {
	exp := s.now().Add(s.ttl)
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	u := base64.RawURLEncoding.EncodeToString([]byte(user))
	e := strconv.FormatInt(exp.Unix(), 10)
	n := hex.EncodeToString(nonce)
	return u + "|" + e + "|" + n + "|" + s.mac("session", u, e, n), exp
}

// user returns the logged-in user of r; ok is false without a valid,
// unexpired session.
func (s *sessions) user(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	parts := strings.Split(c.Value, "|")
	if len(parts) != 4 {
		return "", false
	}
	want := s.mac("session", parts[0], parts[1], parts[2])
	if subtle.ConstantTimeCompare([]byte(want), []byte(parts[3])) != 1 {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || s.now().Unix() >= exp {
		return "", false
	}
	u, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || len(u) == 0 {
		return "", false
	}
	return string(u), true
}

// csrf is the token the forms of a logged-in page carry.
func (s *sessions) csrf(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	return s.mac("csrf", c.Value)[:32]
}

func (s *sessions) checkCSRF(r *http.Request, token string) bool {
	want := s.csrf(r)
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(token)) == 1
}

func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     h.cfg.Prefix,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	}
	if expires.IsZero() {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	http.SetCookie(w, c)
}

// sameOrigin refuses cross-site form posts a browser marks as such (the
// cookies' SameSite already keeps them from carrying a session).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

type loginData struct {
	Next    string
	CSRF    string
	Message string
	User    string
}

func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) {
	if h.auth == nil {
		http.Redirect(w, r, h.cfg.Prefix, http.StatusSeeOther)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.loginForm(w, r, http.StatusOK, safeNext(h.cfg.Prefix, r.URL.Query().Get("next")), "", "")
	case http.MethodPost:
		h.loginPost(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		h.fail(w, r, http.StatusMethodNotAllowed, "log in with the form")
	}
}

func (h *Handler) loginForm(w http.ResponseWriter, r *http.Request, status int, next, user, msg string) {
	token := ""
	if c, err := r.Cookie(loginCSRFCookie); err == nil && len(c.Value) == 32 {
		token = c.Value
	} else {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		token = hex.EncodeToString(b)
		h.setCookie(w, r, loginCSRFCookie, token, h.sessions.now().Add(time.Hour))
	}
	h.render(w, r, status, "login", "Log in", loginData{Next: next, CSRF: token, Message: msg, User: user})
}

func (h *Handler) loginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, http.StatusBadRequest, "unreadable form")
		return
	}
	next := safeNext(h.cfg.Prefix, r.PostForm.Get("next"))
	c, err := r.Cookie(loginCSRFCookie)
	if !sameOrigin(r) || err != nil || len(c.Value) != 32 ||
		subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostForm.Get("csrf"))) != 1 {
		h.loginForm(w, r, http.StatusForbidden, next, "", "The form expired or came from another site; log in again.")
		return
	}
	user, pass := r.PostForm.Get("user"), r.PostForm.Get("password")
	if user == "" || len(user) > maxUserLen || len(pass) > maxPasswordLen || strings.ContainsAny(user, ":\x00\r\n") {
		h.loginForm(w, r, http.StatusUnauthorized, next, "", "Invalid user name or password.")
		return
	}
	// Ask the registry's authorizer about a request that carries the
	// credentials as a client would: the same password check, the same
	// failure limits per client address and per user.
	probe, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "/v2/", nil)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "login failed")
		return
	}
	probe.RemoteAddr, probe.Host, probe.TLS = r.RemoteAddr, r.Host, r.TLS
	probe.SetBasicAuth(user, pass)
	rec := &discardWriter{header: http.Header{}}
	got, ok := h.auth.Authorize(rec, probe, "")
	if !ok || got != user {
		msg := "Invalid user name or password."
		if rec.status == http.StatusTooManyRequests {
			msg = "Too many failed logins; try again later."
		}
		h.loginForm(w, r, http.StatusUnauthorized, next, user, msg)
		return
	}
	v, exp := h.sessions.issue(user)
	h.setCookie(w, r, sessionCookie, v, exp)
	h.setCookie(w, r, loginCSRFCookie, "", time.Time{})
	h.log.Info("ui login", "user", user, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		h.fail(w, r, http.StatusMethodNotAllowed, "log out with the button")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, http.StatusBadRequest, "unreadable form")
		return
	}
	if !sameOrigin(r) || !h.sessions.checkCSRF(r, r.PostForm.Get("csrf")) {
		h.fail(w, r, http.StatusForbidden, "the form expired or came from another site")
		return
	}
	h.setCookie(w, r, sessionCookie, "", time.Time{})
	http.Redirect(w, r, h.cfg.Prefix, http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on the UI: a path under prefix,
// never another host ("//evil", "/\evil").
func safeNext(prefix, next string) string {
	if !strings.HasPrefix(next, prefix) || strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "//") {
		return prefix
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return prefix
	}
	return next
}

// discardWriter records the status of the authorizer's answer to a probe.
type discardWriter struct {
	header http.Header
	status int
}

func (d *discardWriter) Header() http.Header { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	return len(b), nil
}
func (d *discardWriter) WriteHeader(status int) {
	if d.status == 0 {
		d.status = status
	}
}
