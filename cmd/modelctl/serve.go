package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/internal/directio"
	"github.com/modelctl/modelctl/registry"
	"github.com/modelctl/modelctl/registry/auth"
	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
	"github.com/modelctl/modelctl/registry/ui"
)

func init() { register(newServeCmd) }

type serveOptions struct {
	addr         string
	root         string
	storageURL   string
	s3Endpoint   string
	s3Region     string
	s3Redirect   bool
	s3SpoolDir   string
	tlsCert      string
	tlsKey       string
	logFormat    string
	logLevel     string
	grace        time.Duration
	uploadMaxAge time.Duration
	directIO     bool
	bodyTimeout  time.Duration
	bodyMinRate  int64
	s3Creds      s3CredentialFlags
	auth         auth.Options
	ui           bool
}

func newServeCmd() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run an OCI Distribution v1.1 registry",
		Long: `Run an OCI Distribution v1.1 registry on filesystem storage (--root, the default)
or S3-compatible object storage (--storage s3://BUCKET/PREFIX --s3-endpoint URL).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:5000", "address to listen on")
	f.StringVar(&o.root, "root", "./data/registry", "filesystem storage directory")
	f.StringVar(&o.storageURL, "storage", "", "s3://BUCKET/PREFIX to store in S3 instead of --root")
	f.StringVar(&o.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL (e.g. http://127.0.0.1:9000)")
	f.StringVar(&o.s3Region, "s3-region", "", "S3 region (default: $AWS_REGION or $AWS_DEFAULT_REGION, else asked from the bucket)")
	f.BoolVar(&o.s3Redirect, "s3-redirect", false, "answer blob downloads with presigned S3 URLs instead of streaming")
	f.StringVar(&o.s3SpoolDir, "s3-spool-dir", "", "S3 storage: local directory the parts of uploads are assembled in before they go to the bucket (default: $TMPDIR or /tmp); needs room for a few parts per upload in flight")
	f.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file (PEM)")
	f.StringVar(&o.tlsKey, "tls-key", "", "TLS key file (PEM)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.DurationVar(&o.grace, "shutdown-grace", 30*time.Second, "how long requests in flight may run after SIGTERM")
	f.DurationVar(&o.uploadMaxAge, "upload-max-age", 24*time.Hour, "expire upload sessions untouched for this long")
	f.BoolVar(&o.directIO, "direct-io", directio.Supported, "filesystem storage: write blobs with O_DIRECT, bypassing the page cache")
	f.DurationVar(&o.bodyTimeout, "body-timeout", registry.DefaultBodyIdleTimeout, "cut off a request body that sends nothing for this long, or that is below --body-min-rate once this long has passed")
	f.Int64Var(&o.bodyMinRate, "body-min-rate", registry.DefaultBodyMinRate, "bytes per second a request body must average after --body-timeout (-1: no minimum)")
	addS3CredentialFlags(cmd, &o.s3Creds)
	f.StringVar(&o.auth.HtpasswdFile, "htpasswd", "", "require authentication: users and bcrypt passwords (htpasswd -B)")
	f.StringVar(&o.auth.PolicyFile, "auth-policy", "", "YAML policy granting pull/push/delete per repository glob (default: every user may do everything)")
	f.BoolVar(&o.auth.AnonymousPull, "anonymous-pull", false, "let requests without credentials pull (with --htpasswd)")
	f.StringVar(&o.auth.KeyFile, "token-key", "", "PEM ECDSA P-256 or ed25519 key signing tokens (default: a fresh key per process; replicas need a shared one)")
	f.StringVar(&o.auth.Issuer, "token-issuer", "modelctl", "issuer and service name of the tokens")
	f.StringVar(&o.auth.Realm, "token-realm", "", "token endpoint URL announced to clients (default: this server's /token as the client reached it)")
	f.DurationVar(&o.auth.TokenTTL, "token-ttl", 5*time.Minute, "lifetime of an issued token")
	f.BoolVar(&o.ui, "ui", true, "serve the read-only web UI at /ui/")
	return cmd
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func runServe(cmd *cobra.Command, o *serveOptions) error {
	log, err := newLogger(o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	// Storage drivers and background jobs log through the default logger.
	slog.SetDefault(log)
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	ctx := cmd.Context()
	var drv storage.Driver
	switch {
	case o.storageURL == "":
		drv, err = filesystem.Open(o.root, filesystem.Options{DirectIO: o.directIO})
	case strings.HasPrefix(o.storageURL, "s3://"):
		drv, err = openS3(ctx, o)
	default:
		err = fmt.Errorf("--storage %q: want s3://BUCKET/PREFIX", o.storageURL)
	}
	if err != nil {
		return err
	}
	authn, err := auth.Open(o.auth, log)
	if err != nil {
		return err
	}
	cfg := registry.Config{
		Store:        storage.NewStore(drv),
		Logger:       log,
		Redirect:     o.s3Redirect,
		UploadMaxAge: o.uploadMaxAge,

		BodyIdleTimeout: o.bodyTimeout,
		BodyGrace:       o.bodyTimeout,
		BodyMinRate:     o.bodyMinRate,
	}
	if authn != nil {
		cfg.Auth = authn
		cfg.ExtraRoutes = map[string]http.Handler{auth.TokenPath: authn.TokenHandler()}
	}
	if o.ui {
		var uiAuth ui.Authorizer
		var sessionKey []byte
		if authn != nil {
			uiAuth = authn
			if sessionKey, err = authn.SessionKey(); err != nil {
				return err
			}
		}
		h, err := ui.New(ui.Config{Store: cfg.Store, Logger: log, Auth: uiAuth, SessionKey: sessionKey})
		if err != nil {
			return err
		}
		cfg.UI = h
		// The first visitor of a large repository should not wait for
		// every manifest to be read: the caches fill in the background.
		go func(h *ui.Handler) {
			repos, versions, took, err := h.Warm(ctx)
			if err != nil && ctx.Err() == nil {
				log.Warn("ui: warming the page caches", "err", err)
				return
			}
			log.Debug("ui: page caches warm", "repositories", repos, "versions", versions, "took", took)
		}(h)
	}
	srv, err := registry.New(cfg)
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx, o.addr, o.tlsCert, o.tlsKey, o.grace)
}
