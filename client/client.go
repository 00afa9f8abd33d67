package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/modelctl/modelctl/internal/version"
)

// Options configure a Client. The zero value is usable: Docker credentials,
// the user cache directory, automatic chunk size, 4 parallel transfers.
type Options struct {
	// PlainHTTP speaks HTTP to a non-loopback registry (loopback always is).
	PlainHTTP bool
	// Insecure skips TLS certificate verification.
	Insecure bool
	// CacheDir holds the blob cache, the digest cache and upload state.
	// Default: $MODELCTL_CACHE or the user cache directory + /modelctl.
	CacheDir string
	// ChunkSize is the size of one PATCH of a chunked upload; the registry's
	// OCI-Chunk-Min-Length raises it. 0 chooses: 64 MiB chunks for remote
	// registries (an interruption loses at most one chunk, even on a
	// registry that drops partial chunks), and one streamed PATCH per file
	// on loopback, where the transfer is CPU-bound and a PATCH that runs to
	// the end of the file goes out with sendfile.
	ChunkSize int64
	// Parallel bounds concurrent files and ranges (default 4; 2 on
	// loopback, where the transfer is CPU-bound and two ranges keep the
	// hash fed).
	Parallel int
	// Progress, when non-nil, receives a progress line per file (a terminal).
	Progress io.Writer
	// S3Endpoint and S3Region locate the S3 service of s3:// references
	// (default: $AWS_ENDPOINT_URL, AWS S3; the region as the driver finds it).
	S3Endpoint string
	S3Region   string
	// Credentials overrides the Docker config credential store.
	Credentials credentials.Store
	// Settings are modelctl's own settings file (per-registry plain HTTP
	// and insecure TLS, the default registry); nil: none.
	Settings *Settings
}

// Client talks to registries on behalf of one user.
type Client struct {
	opts  Options
	creds credentials.Store
	http  *http.Client
	auth  auth.Cache
	cache *Cache
}

// DefaultChunkSize is the PATCH size of chunked uploads to remote registries.
const DefaultChunkSize = 64 << 20

// parallel is how many ranges a pull from ref fetches at once.
func (c *Client) parallel(ref Reference) int {
	if c.opts.Parallel > 0 {
		return c.opts.Parallel
	}
	if !ref.S3 && IsLoopback(ref.Registry) {
		return 2
	}
	return 4
}

// chunkSize is the PATCH size for uploads to host.
func (c *Client) chunkSize(host string) int64 {
	switch {
	case c.opts.ChunkSize > 0:
		return c.opts.ChunkSize
	case IsLoopback(host):
		return 1 << 62
	}
	return DefaultChunkSize
}

// New returns a client.
func New(opts Options) (*Client, error) {
	if opts.ChunkSize < 0 {
		opts.ChunkSize = 0
	}
	if opts.Parallel < 0 {
		opts.Parallel = 0
	}
	if opts.CacheDir == "" {
		opts.CacheDir = os.Getenv("MODELCTL_CACHE")
	}
	if opts.CacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("find a cache directory (set --cache-dir or MODELCTL_CACHE): %w", err)
		}
		opts.CacheDir = filepath.Join(base, "modelctl")
	}
	cache, err := OpenCache(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	creds := opts.Credentials
	if creds == nil {
		ds, err := credentials.NewStoreFromDocker(credentials.StoreOptions{AllowPlaintextPut: true})
		if err != nil {
			return nil, fmt.Errorf("read the Docker credentials config: %w", err)
		}
		creds = ds
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.DisableCompression = true // blobs are stored raw; gzip would cost CPU and break Range
	base.MaxIdleConnsPerHost = 32
	base.WriteBufferSize = 256 << 10
	base.ReadBufferSize = 256 << 10
	base.ResponseHeaderTimeout = 5 * time.Minute
	base.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if opts.Insecure {
		base.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for --insecure
	}
	var rt http.RoundTripper = base
	if insecure := insecureHosts(opts.Settings); len(insecure) > 0 && !opts.Insecure {
		ins := base.Clone()
		ins.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the settings file asks for it for these hosts
		rt = &hostTransport{base: base, insecure: ins, hosts: insecure}
	}
	return &Client{
		opts:  opts,
		creds: creds,
		http:  &http.Client{Transport: rt},
		auth:  auth.NewCache(),
		cache: cache,
	}, nil
}

// Cache returns the client's local cache.
func (c *Client) Cache() *Cache { return c.cache }

// repo is one repository on one registry.
type repo struct {
	c    *Client
	host string
	name string
	base *url.URL // scheme://host
	hc   *auth.Client
}

func (c *Client) scheme(host string) string {
	if c.opts.PlainHTTP {
		return "http" // the flag wins
	}
	if r, ok := c.opts.Settings.registry(host); ok && r.PlainHTTP != nil {
		if *r.PlainHTTP {
			return "http"
		}
		return "https"
	}
	if c.opts.PlainHTTP || IsLoopback(host) {
		return "http"
	}
	return "https"
}

func (c *Client) authClient(host string) *auth.Client {
	ac := &auth.Client{
		Client:     c.http,
		Cache:      c.auth,
		Credential: credentials.Credential(c.creds),
		Header:     http.Header{"User-Agent": {"modelctl/" + version.Version}},
	}
	if IsLoopback(host) {
		// A registry on loopback may have its token service on loopback too;
		// oras blocks such realms by default against SSRF, which cannot
		// apply to a registry the user runs on this machine.
		ac.BlockedRealmPrefixes = []netip.Prefix{}
	}
	return ac
}

// repo returns a handle on host/name; push asks the token service for push
// scope too, which read-only credentials would not get.
func (c *Client) repo(ctx context.Context, host, name string, push bool) (*repo, context.Context) {
	actions := []string{auth.ActionPull}
	if push {
		actions = append(actions, auth.ActionPush)
	}
	ctx = auth.AppendRepositoryScope(ctx, registry.Reference{Registry: host, Repository: name}, actions...)
	return &repo{
		c:    c,
		host: host,
		name: name,
		base: &url.URL{Scheme: c.scheme(host), Host: host},
		hc:   c.authClient(host),
	}, ctx
}

func (r *repo) url(format string, args ...any) string {
	return r.base.String() + fmt.Sprintf(format, args...)
}

// do sends req and returns the response when its status is one of want
// (any 2xx when want is empty); any other status is read into an
// *HTTPError.
func (r *repo) do(req *http.Request, want ...int) (*http.Response, error) {
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, Explain(fmt.Errorf("%s %s: %w", req.Method, redactURL(req.URL.String()), err), r.host)
	}
	if len(want) == 0 && resp.StatusCode/100 == 2 {
		return resp, nil
	}
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, nil
		}
	}
	return nil, Explain(readHTTPError(resp), r.host)
}

func (r *repo) newRequest(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, redactURL(u), err)
	}
	return req, nil
}

// resolveLocation resolves a Location header against the request URL.
func resolveLocation(resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("%s %s: registry sent no Location header", resp.Request.Method, redactURL(resp.Request.URL.String()))
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("%s %s: bad Location %q: %w", resp.Request.Method, redactURL(resp.Request.URL.String()), loc, err)
	}
	return u.String(), nil
}

func insecureHosts(s *Settings) map[string]bool {
	out := map[string]bool{}
	if s == nil {
		return out
	}
	for h, r := range s.Registries {
		if r.Insecure {
			out[h] = true
		}
	}
	return out
}

// Settings returns the client's settings (nil when none were given).
func (c *Client) Settings() *Settings { return c.opts.Settings }
