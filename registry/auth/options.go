package auth

import (
	"fmt"
	"log/slog"
	"time"
)

// Options are the command-line choices of `modelctl serve` that turn
// authentication on.
type Options struct {
	HtpasswdFile  string
	PolicyFile    string
	AnonymousPull bool
	KeyFile       string
	Issuer        string
	Realm         string
	TokenTTL      time.Duration
}

// Open builds the Authenticator that opts describe, or returns nil when no
// htpasswd file is given (an open registry). Options that only make sense
// with users are refused without one, so a forgotten --htpasswd does not
// leave a registry open that its operator believes guarded.
func Open(opts Options, log *slog.Logger) (*Authenticator, error) {
	if opts.HtpasswdFile == "" {
		if opts.PolicyFile != "" || opts.AnonymousPull || opts.KeyFile != "" {
			return nil, fmt.Errorf("--auth-policy, --anonymous-pull and --token-key need --htpasswd")
		}
		return nil, nil
	}
	users, err := LoadHtpasswd(opts.HtpasswdFile)
	if err != nil {
		return nil, err
	}
	cfg := Config{Users: users, AnonymousPull: opts.AnonymousPull, Issuer: opts.Issuer, Service: opts.Issuer, Realm: opts.Realm, TokenTTL: opts.TokenTTL, Logger: log}
	if opts.PolicyFile != "" {
		if cfg.Policy, err = LoadPolicy(opts.PolicyFile); err != nil {
			return nil, err
		}
	}
	if opts.KeyFile != "" {
		if cfg.Key, err = LoadKey(opts.KeyFile); err != nil {
			return nil, err
		}
	}
	return New(cfg)
}
