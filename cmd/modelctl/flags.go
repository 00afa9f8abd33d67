package main

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/tags"
	"github.com/modelctl/modelctl/signing"
)

// clientFlags are the flags every command that talks to a registry shares.
type clientFlags struct {
	plainHTTP  bool
	insecure   bool
	cacheDir   string
	parallel   int
	chunkSize  string
	json       bool
	s3Endpoint string
	s3Region   string
}

// cacheDirUsage is the help of every --cache-dir.
const cacheDirUsage = "local cache directory (default $MODELCTL_CACHE or the user cache dir + /modelctl)"

// register adds the connection flags and the transfer flags (push, pull,
// sync, ...).
func (f *clientFlags) register(fs *pflag.FlagSet) {
	f.registerConn(fs)
	fs.StringVar(&f.cacheDir, "cache-dir", "", cacheDirUsage)
	fs.IntVar(&f.parallel, "parallel", 0, "concurrent files and byte ranges (0: 4, or 2 on loopback)")
	fs.StringVar(&f.chunkSize, "chunk-size", "auto", "size of one upload chunk, e.g. 64MiB (the registry's OCI-Chunk-Min-Length raises it); auto: 64MiB, or one streamed chunk per file on loopback")
	fs.StringVar(&f.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL for s3:// references (default $AWS_ENDPOINT_URL, else AWS); credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials")
	fs.StringVar(&f.s3Region, "s3-region", "", "S3 region for s3:// references")
}

// registerConn adds only how to reach a registry, and --json: the flags of
// commands that move no blobs (tag, history, rollback, sign, ...).
func (f *clientFlags) registerConn(fs *pflag.FlagSet) {
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "speak plain HTTP to a non-loopback registry (loopback always is)")
	fs.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate verification")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON")
}

// client builds the one connection of the command: every registry request
// it makes (push, pull, tags, signatures, doctor) goes through it.
func (f *clientFlags) client(stderr io.Writer) (*client.Client, error) {
	var chunk int64
	if f.chunkSize != "auto" && f.chunkSize != "" {
		var err error
		if chunk, err = xferParseSize(f.chunkSize); err != nil {
			return nil, fmt.Errorf("--chunk-size: %w", err)
		}
	}
	settings, err := f.settings()
	if err != nil {
		return nil, err
	}
	opts := client.Options{PlainHTTP: f.plainHTTP, Insecure: f.insecure, CacheDir: f.cacheDir, Parallel: f.parallel, ChunkSize: chunk,
		S3Endpoint: f.s3Endpoint, S3Region: f.s3Region, Settings: settings}
	if !f.json && xferIsTerminal(stderr) {
		opts.Progress = stderr
	}
	return client.New(opts)
}

// tagger returns tag moves and histories over the command's connection.
func (f *clientFlags) tagger(stderr io.Writer) (*tags.Tagger, error) {
	c, err := f.client(stderr)
	if err != nil {
		return nil, err
	}
	return tags.New(tags.Options{Client: c})
}

// signing returns signature access over the command's connection.
func (f *clientFlags) signing(stderr io.Writer) (signing.Options, error) {
	c, err := f.client(stderr)
	if err != nil {
		return signing.Options{}, err
	}
	return signing.Options{Open: c.OrasRepository}, nil
}

// settings reads modelctl's own settings file ($MODELCTL_CONFIG or the
// user config directory + modelctl/config.yaml): per-registry plain HTTP
// and TLS, the default registry.
func (f *clientFlags) settings() (*client.Settings, error) {
	p, err := client.SettingsPath()
	if err != nil {
		return nil, err
	}
	return client.LoadSettings(p)
}

// expandRef puts the settings' default registry in front of a reference
// without a host.
func (f *clientFlags) expandRef(ref string) string {
	s, err := f.settings()
	if err != nil {
		return ref
	}
	return s.Expand(ref)
}
