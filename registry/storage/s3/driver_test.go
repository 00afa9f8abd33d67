package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/s3"
	"github.com/modelctl/modelctl/registry/storage/s3/s3test"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7+i/251)
	}
	return b
}

// leftovers lists what a write may leave behind in the bucket: multipart
// uploads and objects of the driver's hidden write directories.
func leftovers(t *testing.T, srv *s3test.Server, d *s3.Driver) []string {
	t.Helper()
	var out []string
	c := d.Client()
	base := d.Config().Prefix
	if base != "" {
		base += "/"
	}
	for u := range c.ListIncompleteUploads(ctx(t), d.Config().Bucket, base, true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		out = append(out, "upload "+u.Key)
	}
	for oi := range c.ListObjectsIter(ctx(t), d.Config().Bucket, minio.ListObjectsOptions{Prefix: base + ".s3-writes/", Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		out = append(out, "object "+oi.Key)
	}
	return out
}

func writeClose(t *testing.T, d storage.Driver, p string, offset int64, data []byte) {
	t.Helper()
	w, err := d.Writer(ctx(t), p, offset)
	if err != nil {
		t.Fatalf("Writer(%s, %d): %v", p, offset, err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// Completed, cancelled and deleted writes leave no multipart upload and no
// state behind; the object is where the layout says, under the prefix.
func TestWritesLeaveNothingBehind(t *testing.T) {
	srv := s3test.Start(t)
	d := open(t, testConfig(srv))
	big := pattern(1, 2*s3.MinPartSize+12345)
	tests := []struct {
		name   string
		finish func(t *testing.T, p string)
		object bool
	}{
		{"commit", func(t *testing.T, p string) {
			w, err := d.Writer(ctx(t), p, int64(len(big)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte("end")); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"cancel", func(t *testing.T, p string) {
			w, err := d.Writer(ctx(t), p, int64(len(big)))
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Cancel(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"delete directory", func(t *testing.T, p string) {
			if err := d.Delete(ctx(t), filepath.Dir(p)); !storage.IsNotFound(err) {
				t.Fatalf("Delete of a directory holding only a write in progress: %v, want not found", err)
			}
		}, false},
		{"restart at 0", func(t *testing.T, p string) {
			w, err := d.Writer(ctx(t), p, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := "uploads/" + strings.ReplaceAll(tc.name, " ", "-") + "/data"
			writeClose(t, d, p, 0, big[:s3.MinPartSize+1])
			writeClose(t, d, p, s3.MinPartSize+1, big[s3.MinPartSize+1:])
			if got := leftovers(t, srv, d); len(got) < 2 {
				t.Fatalf("write in progress: %q, want its upload and state", got)
			}
			tc.finish(t, p)
			if got := leftovers(t, srv, d); len(got) != 0 {
				t.Fatalf("after %s: %q left behind", tc.name, got)
			}
			_, err := d.Client().StatObject(ctx(t), srv.Bucket, d.Config().Prefix+"/"+p, minio.StatObjectOptions{})
			if tc.object != (err == nil) {
				t.Fatalf("object at %s/%s: err = %v, want exists = %v", d.Config().Prefix, p, err, tc.object)
			}
		})
	}
}

// A resumed write can go back to the offset it resumed from (the layout
// may not have recorded the last Close), but not into the middle of parts
// uploaded before that: that fails with an error, and destroys nothing.
func TestResumeOnlyAtRetainedCheckpoints(t *testing.T) {
	srv := s3test.Start(t)
	d := open(t, testConfig(srv))
	const p = "w/data"
	mib := int64(1 << 20)
	data := pattern(3, int(20*mib))
	writeClose(t, d, p, 0, data[:6*mib])
	writeClose(t, d, p, 6*mib, data[6*mib:12*mib])
	writeClose(t, d, p, 12*mib, data[12*mib:18*mib])
	// The state now holds the checkpoints at 18 MiB and 12 MiB; 6 MiB lies
	// inside the second part.
	_, err := d.Writer(ctx(t), p, 6*mib)
	var oe *storage.InvalidOffsetError
	if err == nil || errors.As(err, &oe) || !strings.Contains(err.Error(), "inside a part") {
		t.Fatalf("resume at 6 MiB: err = %v, want the inside-a-part error", err)
	}
	// Both retained checkpoints, and offsets in the segments after their
	// parts (10-12 MiB and 15-18 MiB), work.
	for _, off := range []int64{12 * mib, 10*mib + 1000, 16 * mib} {
		w, err := d.Writer(ctx(t), p, off)
		if err != nil {
			t.Fatalf("resume at %d: %v", off, err)
		}
		if w.Size() != off {
			t.Fatalf("resume at %d: Size() = %d", off, w.Size())
		}
	}
	writeClose(t, d, p, 12*mib, data[12*mib:19*mib])
	w, err := d.Writer(ctx(t), p, 19*mib)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[19*mib:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	r, err := d.Reader(ctx(t), p, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprintf("%x", h.Sum(nil)), fmt.Sprintf("%x", sha256.Sum256(data)); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
}

// Cleanup removes abandoned writes and orphaned multipart uploads older
// than the age, and leaves a write in progress alone.
func TestCleanup(t *testing.T) {
	srv := s3test.Start(t)
	d := open(t, testConfig(srv))
	part := pattern(5, s3.MinPartSize+100)
	writeClose(t, d, "abandoned/data", 0, part)
	// A process that died before its first Close leaves a multipart upload
	// that no state names.
	w, err := d.Writer(ctx(t), "orphan/data", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(part); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Cleanup(ctx(t), time.Hour); err != nil || res != (s3.CleanupResult{}) {
		t.Fatalf("Cleanup(1h) = %+v, %v; want nothing removed", res, err)
	}
	// S3 times have a one-second resolution; the margins also absorb a
	// loaded machine's pauses between the live write and the Cleanup.
	time.Sleep(5 * time.Second)
	writeClose(t, d, "live/data", 0, part)
	res, err := d.Cleanup(ctx(t), 3500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes != 1 || res.Uploads != 1 {
		t.Fatalf("Cleanup(3.5s) = %+v, want 1 write and 1 orphaned upload", res)
	}
	var oe *storage.InvalidOffsetError
	if _, err := d.Writer(ctx(t), "abandoned/data", int64(len(part))); !errors.As(err, &oe) || oe.Have != 0 {
		t.Fatalf("resume the abandoned write: err = %v, want *InvalidOffsetError with Have 0", err)
	}
	got := leftovers(t, srv, d)
	if len(got) != 3 || !strings.HasSuffix(got[0], "live/data") {
		t.Fatalf("after Cleanup: %q; want only the live write's upload, state and segment", got)
	}
	w, err = d.Writer(ctx(t), "live/data", int64(len(part)))
	if err != nil {
		t.Fatalf("resume the live write: %v", err)
	}
	if err := w.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Cleanup(ctx(t), -time.Second); err == nil {
		t.Fatal("Cleanup with a negative age: no error")
	}
}

// Start-up checks: each usual mistake gives an error that says what to fix,
// and no error or printed configuration shows the secret.
func TestNewErrors(t *testing.T) {
	srv := s3test.Start(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY",
		"AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"} {
		t.Setenv(v, "")
	}
	tests := []struct {
		name string
		edit func(c *s3.Config)
		want string
	}{
		{"missing bucket", func(c *s3.Config) { c.Bucket = "no-such-bucket" }, "bucket no-such-bucket does not exist"},
		{"wrong secret", func(c *s3.Config) { c.SecretKey = "wrong-secret-value" }, "access denied"},
		{"unknown key", func(c *s3.Config) { c.AccessKey = "nobody" }, "check AWS_ACCESS_KEY_ID"},
		{"no credentials", func(c *s3.Config) { c.AccessKey, c.SecretKey = "", "" }, "no credentials found"},
		{"half the credentials", func(c *s3.Config) { c.SecretKey = "" }, "both the access key and the secret key"},
		{"unreachable", func(c *s3.Config) { c.Endpoint = "http://" + testenv.FreeAddr(t) }, "cannot reach the endpoint"},
		{"endpoint not a URL", func(c *s3.Config) { c.Endpoint = "127.0.0.1:9000" }, "want a URL"},
		{"part size too small", func(c *s3.Config) { c.PartSize = 1 << 20 }, "below S3's minimum"},
		{"bad prefix", func(c *s3.Config) { c.Prefix = "a/../b" }, "invalid prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(srv)
			tc.edit(&cfg)
			c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			d, err := s3.New(c, cfg)
			if err == nil {
				t.Fatalf("New(%s) = %v, want an error", cfg, d)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want it to say %q", err, tc.want)
			}
			for _, s := range []string{err.Error(), cfg.String(), fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg)} {
				if strings.Contains(s, srv.SecretKey) || strings.Contains(s, "wrong-secret-value") {
					t.Fatalf("the secret key shows in %q", s)
				}
			}
		})
	}
}

// Credentials come from the flags, else the AWS environment variables,
// else the shared credentials file.
func TestCredentialSources(t *testing.T) {
	srv := s3test.Start(t)
	t.Setenv("HOME", t.TempDir())
	clear := func() {
		for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY",
			"AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE", "AWS_REGION"} {
			t.Setenv(v, "")
		}
	}
	credFile := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(credFile, []byte(fmt.Sprintf("[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong\n\n[ci]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
		srv.AccessKey, srv.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		cfg  func(c *s3.Config)
	}{
		{"flags over a wrong environment", map[string]string{"AWS_ACCESS_KEY_ID": "nobody", "AWS_SECRET_ACCESS_KEY": "wrong"}, nil},
		{"environment", map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey, "AWS_REGION": srv.Region},
			func(c *s3.Config) { c.AccessKey, c.SecretKey, c.Region = "", "", "" }},
		{"shared credentials file, profile from AWS_PROFILE", map[string]string{"AWS_SHARED_CREDENTIALS_FILE": credFile, "AWS_PROFILE": "ci"},
			func(c *s3.Config) { c.AccessKey, c.SecretKey = "", "" }},
		{"shared credentials file from the config", nil,
			func(c *s3.Config) { c.AccessKey, c.SecretKey, c.CredentialsFile, c.Profile = "", "", credFile, "ci" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clear()
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg := testConfig(srv)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			d := open(t, cfg)
			if err := d.PutContent(ctx(t), "creds/check", []byte("ok")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url, bucket, prefix string
		ok                  bool
	}{
		{"s3://models", "models", "", true},
		{"s3://models/", "models", "", true},
		{"s3://models/registry", "models", "registry", true},
		{"s3://models/team/registry/", "models", "team/registry", true},
		{"s3://Models/x", "", "", false},
		{"s3://", "", "", false},
		{"http://models/x", "", "", false},
		{"models/x", "", "", false},
		{"s3://models/a/../b", "", "", false},
		{"s3://models/.hidden", "", "", false},
		{"s3://models/x?versionId=1", "", "", false},
		{"s3://user:pw@models/x", "", "", false},
	}
	for _, tc := range tests {
		b, p, err := s3.ParseURL(tc.url)
		if (err == nil) != tc.ok || b != tc.bucket || p != tc.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q, ok %v", tc.url, b, p, err, tc.bucket, tc.prefix, tc.ok)
		}
	}
}

// NewFromURL is what `serve --storage s3://...` calls; the objects land at
// PREFIX/<path> in the bucket, the layout a client pushing to the bucket
// writes too.
func TestNewFromURL(t *testing.T) {
	srv := s3test.Start(t)
	d, err := s3.NewFromURL(ctx(t), "s3://"+srv.Bucket+"/team/registry", srv.Endpoint, srv.Region,
		s3.Credentials{AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutContent(ctx(t), "repositories/x/link", []byte("sha256:abc")); err != nil {
		t.Fatal(err)
	}
	o, err := d.Client().GetObject(ctx(t), srv.Bucket, "team/registry/repositories/x/link", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(o)
	o.Close()
	if err != nil || string(got) != "sha256:abc" {
		t.Fatalf("object at team/registry/repositories/x/link = %q, %v", got, err)
	}
	if _, err := s3.NewFromURL(ctx(t), "s3://"+srv.Bucket+"/../x", srv.Endpoint, "", s3.Credentials{}); err == nil {
		t.Fatal("NewFromURL with a bad prefix: no error")
	}
}

// The presigned URL serves the object to a plain HTTP client, expires, and
// is refused for invalid paths.
func TestRedirectURL(t *testing.T) {
	srv := s3test.Start(t)
	d := open(t, testConfig(srv))
	data := pattern(9, 100000)
	if err := d.PutContent(ctx(t), "blobs/x/data", data); err != nil {
		t.Fatal(err)
	}
	var r storage.Redirector = d
	u, err := r.RedirectURL(ctx(t), "blobs/x/data", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, srv.Endpoint+"/") || !strings.Contains(u, "X-Amz-Signature=") {
		t.Fatalf("URL %s: want a presigned URL on %s", u, srv.Endpoint)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("GET presigned URL: %s, %d bytes; want 200 and the object", resp.Status, len(got))
	}
	if _, err := r.RedirectURL(ctx(t), "../x", time.Minute); err == nil {
		t.Fatal("RedirectURL(../x): no error")
	}
	if _, err := r.RedirectURL(ctx(t), "blobs/x/data", 30*24*time.Hour); err == nil {
		t.Fatal("RedirectURL for 30 days: no error")
	}
}

type failAtEnd struct{ r io.Reader }

func (f failAtEnd) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("digest mismatch")
	}
	return n, err
}

// A PutStream that fails after several parts leaves no multipart upload.
func TestPutStreamFailureLeavesNothing(t *testing.T) {
	srv := s3test.Start(t)
	d := open(t, testConfig(srv))
	data := pattern(13, 3*s3.MinPartSize+99)
	if _, err := d.PutStream(ctx(t), "blobs/x/data", failAtEnd{bytes.NewReader(data)}); err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("PutStream of a failing reader: err = %v", err)
	}
	if got := leftovers(t, srv, d); len(got) != 0 {
		t.Fatalf("left behind: %q", got)
	}
	n, err := d.PutStream(ctx(t), "blobs/x/data", bytes.NewReader(data))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("PutStream = %d, %v", n, err)
	}
	if got := leftovers(t, srv, d); len(got) != 0 {
		t.Fatalf("left behind: %q", got)
	}
}

// A Move of an object over one copy part is a parallel multipart copy; the
// content arrives whole, and the source is gone.
func TestMoveLargeObject(t *testing.T) {
	srv := s3test.Start(t)
	d := open(t, testConfig(srv))
	data := pattern(17, 5*s3.MinPartSize+12345)
	if _, err := d.PutStream(ctx(t), "uploads/u/data", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := d.PutContent(ctx(t), "blobs/b/data", []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := d.Move(ctx(t), "uploads/u/data", "blobs/b/data"); err != nil {
		t.Fatal(err)
	}
	r, err := d.Reader(ctx(t), "blobs/b/data", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("moved object: %d bytes, %v; want %d bytes equal to the source", len(got), err, len(data))
	}
	if _, err := d.Stat(ctx(t), "uploads/u/data"); !storage.IsNotFound(err) {
		t.Fatalf("source after Move: %v, want not found", err)
	}
	if got := leftovers(t, srv, d); len(got) != 0 {
		t.Fatalf("left behind: %q", got)
	}
}
