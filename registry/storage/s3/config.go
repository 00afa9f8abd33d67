// Package s3 is the storage driver for S3-compatible object storage (AWS S3,
// MinIO, Ceph RGW, SeaweedFS, versitygw), built on minio-go. Objects live at
// BUCKET/PREFIX/<path>; resumable writes are S3 multipart uploads whose state
// (upload id, parts, and the tail below the minimum part size) is kept in
// small objects under PREFIX/.s3-writes/, so that any process can continue
// them. See docs/s3.md.
package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/modelctl/modelctl/registry/storage"
)

const (
	// MinPartSize is S3's smallest part but the last.
	MinPartSize = 5 << 20
	// DefaultPartSize is the size of the first 1000 parts of a write;
	// later parts grow (see partTarget).
	DefaultPartSize = 8 << 20
	// DefaultConcurrency is how many parts of one write upload at once.
	DefaultConcurrency = 4
	// DefaultCopyPartSize is the part size of server-side copies.
	DefaultCopyPartSize = 64 << 20
	// maxParts is S3's limit on the parts of one multipart upload.
	maxParts = 10000
)

// Config says where the driver stores objects and how it authenticates.
type Config struct {
	// Bucket must exist; New checks it.
	Bucket string
	// Prefix is prepended to every path ("registry" stores "a/b" at
	// "registry/a/b"); empty uses the bucket's root.
	Prefix string
	// Endpoint is the server's URL; empty takes AWS_ENDPOINT_URL (as the
	// AWS tools do), then "https://s3.amazonaws.com". An http:// URL speaks
	// plain HTTP.
	Endpoint string
	// Region; empty takes AWS_REGION, then AWS_DEFAULT_REGION, then asks
	// the server.
	Region string
	// Static credentials (flags). When AccessKey is empty, the credentials
	// come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN,
	// then from the shared credentials file.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// CredentialsFile and Profile select the shared credentials file
	// (defaults: $AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, and
	// $AWS_PROFILE or "default").
	CredentialsFile string
	Profile         string
	// PartSize is the size of the first 1000 parts of a resumable write
	// (at least MinPartSize; DefaultPartSize when 0). Parts are assembled
	// in spool files in SpoolDir, not in memory: one write uses at most
	// (Concurrency+1) parts of local disk.
	PartSize int64
	// SpoolDir is the local directory of the spool files parts are
	// assembled in (os.TempDir() when empty).
	SpoolDir string
	// Concurrency is how many parts of one write upload at once
	// (DefaultConcurrency when 0).
	Concurrency int
	// CopyPartSize is the part size of server-side copies (Move): larger
	// objects are copied as parts in parallel (DefaultCopyPartSize when 0;
	// at least twice MinPartSize, since minio-go splits an object into
	// even parts, which must each be at least MinPartSize).
	CopyPartSize int64
	// Transport replaces the HTTP transport (tests, proxies).
	Transport http.RoundTripper
}

// String describes the configuration without its secrets, so that a Config
// can be logged or printed in an error.
func (c Config) String() string {
	secret := ""
	if c.SecretKey != "" {
		secret = " secret=<redacted>"
	}
	if c.SessionToken != "" {
		secret += " session-token=<redacted>"
	}
	return fmt.Sprintf("s3://%s/%s endpoint=%s region=%s access-key=%s%s",
		c.Bucket, c.Prefix, c.endpointOrDefault(), c.Region, c.AccessKey, secret)
}

// GoString keeps %#v from printing the secret key too.
func (c Config) GoString() string { return "s3.Config{" + c.String() + "}" }

func (c Config) endpointOrDefault() string {
	switch {
	case c.Endpoint != "":
		return c.Endpoint
	case os.Getenv("AWS_ENDPOINT_URL") != "":
		return os.Getenv("AWS_ENDPOINT_URL")
	}
	return "https://s3.amazonaws.com"
}

// Credentials are static credentials given on the command line. The zero
// value means: take them from the environment or the shared credentials file.
type Credentials struct {
	AccessKey    string
	SecretKey    string
	SessionToken string
}

// ParseURL splits "s3://BUCKET/PREFIX" into bucket and prefix.
func ParseURL(storageURL string) (bucket, prefix string, err error) {
	u, err := url.Parse(storageURL)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("s3 storage URL %q: want s3://BUCKET or s3://BUCKET/PREFIX", storageURL)
	}
	if err := s3utils.CheckValidBucketNameStrict(u.Host); err != nil {
		return "", "", fmt.Errorf("s3 storage URL %q: bucket %q: %w", storageURL, u.Host, err)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" && !storage.ValidPath(prefix) {
		return "", "", fmt.Errorf("s3 storage URL %q: invalid prefix %q", storageURL, prefix)
	}
	return u.Host, prefix, nil
}

// NewFromURL opens the driver for `serve --storage s3://BUCKET/PREFIX
// --s3-endpoint URL --s3-region R`; creds are the flags' static credentials,
// zero to use the environment or the shared credentials file.
func NewFromURL(ctx context.Context, storageURL, endpoint, region string, creds Credentials) (*Driver, error) {
	bucket, prefix, err := ParseURL(storageURL)
	if err != nil {
		return nil, err
	}
	return New(ctx, Config{
		Bucket:       bucket,
		Prefix:       prefix,
		Endpoint:     endpoint,
		Region:       region,
		AccessKey:    creds.AccessKey,
		SecretKey:    creds.SecretKey,
		SessionToken: creds.SessionToken,
	})
}

// New connects to the bucket and checks, now rather than at the first
// request, that it exists and that the credentials may read it.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3 storage: no bucket given")
	}
	cfg.Prefix = strings.Trim(cfg.Prefix, "/")
	if cfg.Prefix != "" && !storage.ValidPath(cfg.Prefix) {
		return nil, fmt.Errorf("s3 storage: invalid prefix %q", cfg.Prefix)
	}
	switch {
	case cfg.PartSize == 0:
		cfg.PartSize = DefaultPartSize
	case cfg.PartSize < MinPartSize:
		return nil, fmt.Errorf("s3 storage: part size %d is below S3's minimum of %d bytes", cfg.PartSize, MinPartSize)
	case cfg.PartSize > 512<<20:
		return nil, fmt.Errorf("s3 storage: part size %d is over the 512 MiB this driver buffers", cfg.PartSize)
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	switch {
	case cfg.CopyPartSize == 0:
		cfg.CopyPartSize = DefaultCopyPartSize
	case cfg.CopyPartSize < 2*MinPartSize || cfg.CopyPartSize > 5<<30:
		return nil, fmt.Errorf("s3 storage: copy part size %d is outside 10 MiB to 5 GiB", cfg.CopyPartSize)
	}
	if cfg.Region == "" {
		cfg.Region = os.Getenv("AWS_REGION")
	}
	if cfg.Region == "" {
		cfg.Region = os.Getenv("AWS_DEFAULT_REGION")
	}
	host, secure, err := parseEndpoint(cfg.endpointOrDefault())
	if err != nil {
		return nil, err
	}
	if cfg.AccessKey != "" && cfg.SecretKey == "" || cfg.AccessKey == "" && cfg.SecretKey != "" {
		return nil, errors.New("s3 storage: give both the access key and the secret key, or neither")
	}
	creds := credentialChain(cfg)
	rt := cfg.Transport
	if rt == nil {
		tr, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, fmt.Errorf("s3 storage %s: %w", cfg, err)
		}
		// Keep the connections a burst of requests opened, up to half the
		// limit, instead of closing all but 16 and dialing again.
		tr.MaxIdleConnsPerHost = MaxRequests / 2
		rt = tr
	}
	client, err := minio.New(host, &minio.Options{
		Creds:     creds,
		Secure:    secure,
		Region:    cfg.Region,
		Transport: &limitedTransport{rt: rt, slots: make(chan struct{}, MaxRequests)},
	})
	if err != nil {
		return nil, fmt.Errorf("s3 storage %s: %w", cfg, err)
	}
	d := &Driver{cfg: cfg, core: &minio.Core{Client: client}, client: client}
	d.base = ""
	if cfg.Prefix != "" {
		d.base = cfg.Prefix + "/"
	}
	if err := d.checkBucket(ctx, creds); err != nil {
		return nil, err
	}
	cond, err := d.probeConditionalWrites(ctx)
	if err != nil {
		return nil, fmt.Errorf("s3 storage: bucket %q at %s: cannot write (check the key's permissions): %w",
			cfg.Bucket, cfg.endpointOrDefault(), err)
	}
	d.conditional = cond
	return d, nil
}

// probeConditionalWrites finds out, once at start-up, whether the store
// honours If-None-Match and If-Match on PUT: a store that ignores them
// would let PutContentIf overwrite silently. It also proves the credentials
// may write.
func (d *Driver) probeConditionalWrites(ctx context.Context) (bool, error) {
	key := d.base + writesDir + "/probe-" + randomName()
	defer d.client.RemoveObject(context.WithoutCancel(ctx), d.cfg.Bucket, key, minio.RemoveObjectOptions{}) //nolint:errcheck // best effort
	put := func(data string, opts minio.PutObjectOptions) (minio.UploadInfo, error) {
		return d.core.PutObject(ctx, d.cfg.Bucket, key, strings.NewReader(data), int64(len(data)), "", "", opts)
	}
	var create minio.PutObjectOptions
	create.SetMatchETagExcept("*")
	first, err := put("1", create)
	if err != nil {
		return false, err
	}
	if _, err := put("2", create); err == nil {
		return false, nil
	} else if !preconditionFailed(err) {
		return false, err
	}
	var match minio.PutObjectOptions
	match.SetMatchETag("0123456789abcdef0123456789abcdef")
	if _, err := put("3", match); err == nil {
		return false, nil
	} else if !preconditionFailed(err) {
		return false, err
	}
	match.SetMatchETag(first.ETag)
	if _, err := put("4", match); err != nil {
		return false, err
	}
	return true, nil
}

// credentialChain is: the flags, then the AWS environment variables, then
// the shared credentials file. It never asks an instance metadata service:
// that would reach out to an address no one configured.
func credentialChain(cfg Config) *credentials.Credentials {
	var providers []credentials.Provider
	if cfg.AccessKey != "" {
		providers = append(providers, &credentials.Static{Value: credentials.Value{
			AccessKeyID:     cfg.AccessKey,
			SecretAccessKey: cfg.SecretKey,
			SessionToken:    cfg.SessionToken,
			SignerType:      credentials.SignatureV4,
		}})
	}
	providers = append(providers,
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{Filename: cfg.CredentialsFile, Profile: cfg.Profile},
	)
	return credentials.NewChainCredentials(providers)
}

func parseEndpoint(endpoint string) (host string, secure bool, err error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", false, fmt.Errorf("s3 endpoint %q: want a URL like https://s3.example.com or http://127.0.0.1:9000", endpoint)
	}
	return u.Host, u.Scheme == "https", nil
}

// checkBucket turns the usual start-up mistakes into errors that say what to
// fix. The secret never appears in them.
func (d *Driver) checkBucket(ctx context.Context, creds *credentials.Credentials) error {
	where := fmt.Sprintf("s3 storage: bucket %q at %s", d.cfg.Bucket, d.cfg.endpointOrDefault())
	v, err := creds.GetWithContext(&credentials.CredContext{Client: http.DefaultClient})
	if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
		return fmt.Errorf("%s: no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "+
			"write them to the shared credentials file (~/.aws/credentials), or pass them as flags", where)
	}
	// A listing, unlike HEAD bucket, answers with an error code in its body,
	// so an unknown key and a missing bucket can be told apart.
	err = nil
	for oi := range d.client.ListObjectsIter(ctx, d.cfg.Bucket, minio.ListObjectsOptions{Prefix: d.base, MaxKeys: 1}) {
		err = oi.Err
		break
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", where, ctx.Err())
		}
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%s: cannot reach the endpoint (check --s3-endpoint): %w", where, err)
		}
		resp := minio.ToErrorResponse(err)
		switch {
		case resp.Code == "NoSuchBucket":
			return fmt.Errorf("bucket %s does not exist at %s: create it first (e.g. `aws s3 mb s3://%s`)",
				d.cfg.Bucket, d.cfg.endpointOrDefault(), d.cfg.Bucket)
		case resp.StatusCode == http.StatusForbidden || slices.Contains([]string{"AccessDenied", "InvalidAccessKeyId",
			"SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "InvalidClientTokenId",
			// versitygw's answer (404) for an access key it does not know.
			"XAdminUserNotFound"}, resp.Code):
			return fmt.Errorf("%s: access denied (%s: %s): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "+
				"(or AWS_SESSION_TOKEN, the shared credentials file, the flags) and the key's permissions on the bucket",
				where, resp.Code, resp.Message)
		}
		return fmt.Errorf("%s: %w (%s, HTTP %d)", where, err, resp.Code, resp.StatusCode)
	}
	return nil
}
