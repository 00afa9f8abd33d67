// Package registry is modelctl's OCI Distribution v1.1 HTTP server. It keeps
// no state of its own: everything, upload sessions included, lives in the
// storage layer, so a restarted process or another replica over the same
// storage continues where this one stopped.
package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"time"

	"github.com/modelctl/modelctl/registry/storage"
)

// Authorizer decides whether a request may act on a repository. Actions are
// "pull", "push" and "delete"; name is "" for registry-wide requests: the
// catalog ("catalog"), /metrics ("metrics"), and a blob mount without a source repository, which asks for
// "pull" on every repository. When it refuses, it has written the response (401 with a
// challenge, or 403) and returns ok false. It returns the authenticated
// user, "" for anonymous.
type Authorizer interface {
	Authorize(w http.ResponseWriter, r *http.Request, name string, actions ...string) (user string, ok bool)
}

// Config configures a Server.
type Config struct {
	Store  *storage.Store
	Logger *slog.Logger
	// Auth guards every /v2/ request; nil allows everything.
	Auth Authorizer
	// Redirect answers blob GETs with a time-limited direct URL when the
	// driver can make one (S3 presigned URLs).
	Redirect bool
	// UploadMaxAge is how long an untouched upload session is kept.
	UploadMaxAge time.Duration
	// ExtraRoutes are mounted on the server's mux (e.g. a token endpoint).
	ExtraRoutes map[string]http.Handler
	// A request body that sends nothing for BodyIdleTimeout, or averages
	// less than BodyMinRate bytes per second once BodyGrace is over, is
	// cut off (see deadlineBody). Zero values take the defaults; a negative
	// BodyMinRate turns the rate bound off.
	BodyIdleTimeout time.Duration
	BodyGrace       time.Duration
	BodyMinRate     int64
	// UI, when set, is mounted at /ui/ (the read-only web UI, registry/ui),
	// and / redirects there.
	UI http.Handler
}

// Server is the registry's HTTP handler.
type Server struct {
	store   *storage.Store
	log     *slog.Logger
	auth    Authorizer
	metrics *metrics
	cfg     Config
	mux     *http.ServeMux
}

// New returns a registry server over cfg.Store.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("registry: no storage configured")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.UploadMaxAge == 0 {
		cfg.UploadMaxAge = 24 * time.Hour
	}
	if cfg.BodyIdleTimeout <= 0 {
		cfg.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if cfg.BodyGrace <= 0 {
		cfg.BodyGrace = DefaultBodyGrace
	}
	if cfg.BodyMinRate == 0 {
		cfg.BodyMinRate = DefaultBodyMinRate
	}
	s := &Server{store: cfg.Store, log: cfg.Logger, auth: cfg.Auth, metrics: newMetrics(), cfg: cfg, mux: http.NewServeMux()}
	s.mux.Handle("/v2/", http.HandlerFunc(s.serveV2))
	s.mux.HandleFunc("/metrics", s.serveMetrics)
	s.mux.HandleFunc("/healthz", s.serveHealth)
	for p, h := range cfg.ExtraRoutes {
		s.mux.Handle(p, h)
	}
	if cfg.UI != nil {
		s.mux.Handle("/ui/", cfg.UI)
		s.mux.Handle("/{$}", http.RedirectHandler("/ui/", http.StatusFound))
	}
	return s, nil
}

// ServeHTTP implements http.Handler: logging and metrics around the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &responseRecorder{ResponseWriter: w}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(rec),
			idle: s.cfg.BodyIdleTimeout, grace: s.cfg.BodyGrace, minRate: float64(max(s.cfg.BodyMinRate, 0))}
		r.Body = countingBody{ReadCloser: r.Body, n: &s.metrics.bytesIn}
	}
	s.mux.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	d := time.Since(start)
	s.metrics.observe(r.Method, rec.status, d)
	s.metrics.bytesOut.Add(uint64(rec.bytes))
	if r.URL.Path == "/healthz" || r.URL.Path == "/metrics" {
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", rec.status), slog.Int64("bytes", rec.bytes),
		slog.Duration("duration", d), slog.String("remote", r.RemoteAddr))
}

// serveMetrics answers /metrics; with authentication on, only to users the
// policy grants the registry-wide "metrics" action: request counts and
// paths' traffic are the operator's business.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.auth != nil {
		if _, ok := s.auth.Authorize(w, r, "", "metrics"); !ok {
			return
		}
	}
	s.metrics.ServeHTTP(w, r)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if _, err := s.store.Driver().List(ctx, ""); err != nil && !storage.IsNotFound(err) {
		s.log.Error("health check failed", "err", err)
		http.Error(w, "storage unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

// The routes of the distribution spec, tried in order. Names are matched
// loosely here and validated against the grammar in the handler, so that an
// invalid name gets NAME_INVALID rather than a 404.
var (
	reUploads    = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/?$`)
	reUpload     = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([^/]+)$`)
	reBlob       = regexp.MustCompile(`^/v2/(.+)/blobs/([^/]+)$`)
	reManifest   = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
	reTags       = regexp.MustCompile(`^/v2/(.+)/tags/list$`)
	reReferrers  = regexp.MustCompile(`^/v2/(.+)/referrers/([^/]+)$`)
	reTagHistory = regexp.MustCompile(`^/v2/(.+)/_modelctl/tags/([^/]+)/history$`)
	reTagMove    = regexp.MustCompile(`^/v2/(.+)/_modelctl/tags/([^/]+)$`)
)

type route struct {
	re      *regexp.Regexp
	methods map[string]func(w http.ResponseWriter, r *http.Request, m []string)
}

func (s *Server) routes() []route {
	return []route{
		{reUploads, map[string]func(http.ResponseWriter, *http.Request, []string){
			http.MethodPost: s.startUpload}},
		{reUpload, map[string]func(http.ResponseWriter, *http.Request, []string){
			http.MethodGet: s.uploadStatus, http.MethodPatch: s.patchUpload,
			http.MethodPut: s.completeUpload, http.MethodDelete: s.cancelUpload}},
		{reBlob, map[string]func(http.ResponseWriter, *http.Request, []string){
			http.MethodGet: s.getBlob, http.MethodHead: s.getBlob, http.MethodDelete: s.deleteBlob}},
		{reManifest, map[string]func(http.ResponseWriter, *http.Request, []string){
			http.MethodGet: s.getManifest, http.MethodHead: s.getManifest,
			http.MethodPut: s.putManifest, http.MethodDelete: s.deleteManifest}},
		{reTags, map[string]func(http.ResponseWriter, *http.Request, []string){
			http.MethodGet: s.listTags}},
		{reReferrers, map[string]func(http.ResponseWriter, *http.Request, []string){
			http.MethodGet: s.getReferrers}},
		{reTagHistory, map[string]func(http.ResponseWriter, *http.Request, []string){
			http.MethodGet: s.getTagHistory}},
		{reTagMove, map[string]func(http.ResponseWriter, *http.Request, []string){
			http.MethodPut: s.moveTag}},
		{reDeployments, map[string]func(http.ResponseWriter, *http.Request, []string){
			http.MethodGet: s.getDeployments, http.MethodPost: s.postDeployment}},
	}
}

// actionOf is the permission a method needs.
func actionOf(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "pull"
	case http.MethodDelete:
		return "delete"
	default:
		return "push"
	}
}

type userKey struct{}

// userOf returns the authenticated user of a request, "" when anonymous.
func userOf(r *http.Request) string {
	u, _ := r.Context().Value(userKey{}).(string)
	return u
}

func (s *Server) serveV2(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	path := r.URL.Path
	if path == "/v2/" || path == "/v2" {
		if s.auth != nil {
			if _, ok := s.auth.Authorize(w, r, ""); !ok {
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	if path == "/v2/_catalog" {
		if s.auth != nil {
			if _, ok := s.auth.Authorize(w, r, "", "catalog"); !ok {
				return
			}
		}
		s.catalog(w, r)
		return
	}
	for _, rt := range s.routes() {
		m := rt.re.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		h, ok := rt.methods[r.Method]
		if !ok {
			w.Header().Set("Allow", allowed(rt.methods))
			writeError(w, http.StatusMethodNotAllowed, codeUnsupported, fmt.Sprintf("%s is not supported on this endpoint", r.Method))
			return
		}
		name := m[1]
		if err := storage.ValidateName(name); err != nil {
			writeError(w, http.StatusBadRequest, codeNameInvalid, err.Error())
			return
		}
		if s.auth != nil {
			actions := []string{actionOf(r.Method)}
			if r.Method == http.MethodPost && r.URL.Query().Get("mount") != "" {
				actions = append(actions, "pull")
			}
			user, ok := s.auth.Authorize(w, r, name, actions...)
			if !ok {
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), userKey{}, user))
		}
		h(w, r, m)
		return
	}
	writeError(w, http.StatusNotFound, codeUnsupported, "no such endpoint")
}

func allowed(methods map[string]func(http.ResponseWriter, *http.Request, []string)) string {
	out := ""
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if _, ok := methods[m]; ok {
			if out != "" {
				out += ", "
			}
			out += m
		}
	}
	return out
}

// ListenAndServe serves on addr until ctx is cancelled, then stops accepting
// connections and lets requests in flight finish (up to grace). With
// certFile and keyFile it serves TLS.
func (s *Server) ListenAndServe(ctx context.Context, addr, certFile, keyFile string, grace time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln, certFile, keyFile, grace)
}

// Serve is ListenAndServe on an existing listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener, certFile, keyFile string, grace time.Duration) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("load TLS certificate %s and key %s: %w", certFile, keyFile, err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	go s.purgeLoop(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving", "addr", ln.Addr().String(), "storage", s.store.Driver().Name(), "tls", srv.TLSConfig != nil)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down; waiting for requests in flight", "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// purgeLoop expires abandoned upload sessions, and the write state a
// driver keeps of its own (storage.Janitor: S3 multipart uploads).
func (s *Server) purgeLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.store.PurgeUploads(ctx, s.cfg.UploadMaxAge)
			if err != nil {
				s.log.Warn("purging abandoned uploads", "err", err)
			}
			if n > 0 {
				s.log.Info("purged abandoned uploads", "count", n)
			}
			if j, ok := s.store.Driver().(storage.Janitor); ok {
				res, err := j.Expire(ctx, s.cfg.UploadMaxAge)
				if err != nil {
					s.log.Warn("expiring abandoned writes of the storage", "err", err)
				} else {
					s.log.Info("expired abandoned writes of the storage", "result", res)
				}
			}
		}
	}
}
