// Package ui is the registry's read-only web UI, served by `modelctl serve`
// at /ui/: repositories, a repository's versions with their benchmarks and
// a server-side SVG chart, one artifact in full (files, annotations, bench
// report, lineage, signatures, tag history), two artifacts side by side,
// and where each version is deployed.
//
// Pages are html/template and embedded files only: no CDN, font or script,
// so they work offline, and the Content-Security-Policy forbids scripts
// altogether. Every value read from an artifact is attacker-controlled and
// goes through html/template's contextual escaping.
//
// With authentication on, the UI keeps a session cookie of its own (signed,
// HttpOnly, SameSite=Strict, Secure under TLS); a user sees only the
// repositories the policy lets them pull, and forms carry a CSRF token.
package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
)

//go:embed templates/*.html static/*
var files embed.FS

// Authorizer is the registry's authorizer (registry.Authorizer): the UI
// checks a login by asking it about a request carrying the credentials, so
// that failed logins count against the same limits as the API's.
type Authorizer interface {
	Authorize(w http.ResponseWriter, r *http.Request, name string, actions ...string) (user string, ok bool)
}

// Permitter answers from the policy whether user may do actions on a
// repository (auth.Authenticator implements it).
type Permitter interface {
	Permits(user, name string, actions ...string) bool
}

// Config configures the UI.
type Config struct {
	Store  *storage.Store
	Logger *slog.Logger
	// Auth, when set, must also be a Permitter; nil shows everything to
	// everyone (a registry without authentication).
	Auth Authorizer
	// SessionKey signs session cookies; nil draws a random key, so sessions
	// end with the process (replicas behind one name need a shared key).
	SessionKey []byte
	// SessionTTL is how long a login lasts. Default 12 hours.
	SessionTTL time.Duration
	// Prefix is where the UI is mounted. Default "/ui/".
	Prefix string
}

// Handler serves the UI.
type Handler struct {
	cfg      Config
	store    *storage.Store
	log      *slog.Logger
	auth     Authorizer
	permit   Permitter
	sessions *sessions
	tmpl     map[string]*template.Template
	static   http.Handler
	cache    *summaryCache
}

// New returns the UI handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("ui: no storage configured")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/ui/"
	}
	h := &Handler{cfg: cfg, store: cfg.Store, log: cfg.Logger, auth: cfg.Auth, cache: newSummaryCache(summaryCacheEntries)}
	if cfg.Auth != nil {
		p, ok := cfg.Auth.(Permitter)
		if !ok {
			return nil, errors.New("ui: the authorizer cannot say which repositories a user may pull (no Permits method)")
		}
		h.permit = p
	}
	s, err := newSessions(cfg.SessionKey, cfg.SessionTTL)
	if err != nil {
		return nil, err
	}
	h.sessions = s
	if h.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	h.static = http.StripPrefix(cfg.Prefix+"static/", http.FileServer(http.FS(sub)))
	return h, nil
}

func parseTemplates() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	pages, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", p)
		if err != nil {
			return nil, fmt.Errorf("ui: parse %s: %w", p, err)
		}
		out[name] = t
	}
	return out, nil
}

// ServeHTTP routes the UI's pages.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	// No script runs on these pages, whatever an annotation holds.
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "same-origin")
	rest, ok := strings.CutPrefix(r.URL.Path, h.cfg.Prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if strings.HasPrefix(rest, "static/") {
		hdr.Set("Cache-Control", "public, max-age=3600")
		h.static.ServeHTTP(w, r)
		return
	}
	hdr.Set("Cache-Control", "no-store")
	switch rest {
	case "login":
		h.serveLogin(w, r)
		return
	case "logout":
		h.serveLogout(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, r, http.StatusMethodNotAllowed, "the UI is read-only")
		return
	}
	if rest == "" {
		h.serveRepositories(w, r)
		return
	}
	repoPath, ok := strings.CutPrefix(rest, "r/")
	if !ok {
		h.fail(w, r, http.StatusNotFound, "no such page")
		return
	}
	// Repository names cannot hold a component starting with "-", so
	// "/-/" separates the name from the page within it.
	name, page, _ := strings.Cut(repoPath, "/-/")
	name = strings.TrimSuffix(name, "/")
	if storage.ValidateName(name) != nil {
		h.fail(w, r, http.StatusNotFound, "no such repository")
		return
	}
	if !h.mayPull(w, r, name) {
		return
	}
	switch {
	case page == "":
		h.serveRepository(w, r, name)
	case page == "compare":
		h.serveCompare(w, r, name)
	case page == "deployments":
		h.serveDeployments(w, r, name)
	case strings.HasPrefix(page, "a/"):
		d, err := storage.ParseDigest(strings.TrimPrefix(page, "a/"))
		if err != nil {
			h.fail(w, r, http.StatusNotFound, "not a digest")
			return
		}
		h.serveArtifact(w, r, name, d)
	default:
		h.fail(w, r, http.StatusNotFound, "no such page")
	}
}

// userKnower is what an Authorizer that can say whether a user still
// exists implements (auth.Authenticator does).
type userKnower interface {
	KnowsUser(user string) bool
}

// user is the request's logged-in user: a valid session of a user the
// server still knows.
func (h *Handler) user(r *http.Request) (string, bool) {
	user, ok := h.sessions.user(r)
	if ok {
		if k, isK := h.auth.(userKnower); isK && !k.KnowsUser(user) {
			return "", false
		}
	}
	return user, ok
}

// mayPull answers whether the request's user may see repository name; when
// not, it has answered: anonymous users are sent to the login page, others
// get the same 404 as for a repository that does not exist.
func (h *Handler) mayPull(w http.ResponseWriter, r *http.Request, name string) bool {
	if h.permit == nil {
		return true
	}
	user, loggedIn := h.user(r)
	if h.permit.Permits(user, name, "pull") {
		return true
	}
	if !loggedIn {
		http.Redirect(w, r, h.cfg.Prefix+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return false
	}
	h.fail(w, r, http.StatusNotFound, "no such repository")
	return false
}

// visible reports whether the request's user may pull name.
func (h *Handler) visible(r *http.Request, name string) bool {
	if h.permit == nil {
		return true
	}
	user, _ := h.user(r)
	return h.permit.Permits(user, name, "pull")
}

// page is what every template gets.
type page struct {
	Title    string
	Prefix   string
	User     string
	LoggedIn bool
	Auth     bool
	CSRF     string
	Data     any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	t, ok := h.tmpl[name]
	if !ok {
		h.log.Error("ui: no template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	user, loggedIn := h.user(r)
	p := page{Title: title, Prefix: h.cfg.Prefix, User: user, LoggedIn: loggedIn, Auth: h.auth != nil, Data: data}
	if loggedIn {
		p.CSRF = h.sessions.csrf(r)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		h.log.Error("ui: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, r, status, "error", http.StatusText(status), struct {
		Status  int
		Message string
	}{status, msg})
}

// storageFail answers a storage error: not-found kinds as 404, the rest as
// 500 with the detail logged, not shown.
func (h *Handler) storageFail(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, storage.ErrNameUnknown) || errors.Is(err, storage.ErrManifestUnknown) || errors.Is(err, storage.ErrBlobUnknown) {
		h.fail(w, r, http.StatusNotFound, what+": not found")
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	h.log.Error("ui: storage", "what", what, "path", r.URL.Path, "err", err)
	h.fail(w, r, http.StatusInternalServerError, what+": the storage failed; see the server log")
}

// Links. Names and digests are validated before they get here; the
// template escapes them again for the attribute.
func (h *Handler) repoURL(name string) string { return h.cfg.Prefix + "r/" + name }

func (h *Handler) artifactURL(name string, d digest.Digest) string {
	return h.cfg.Prefix + "r/" + name + "/-/a/" + string(d)
}
