package storage_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
)

// A session whose counted bytes are no longer all durable (a crash at the
// wrong moment, its data removed behind its back) is dropped and reported
// unknown, so a client starts a new upload: answering with a server error
// had the client resume the same dead session forever (seen in the S3
// load-and-fault test after a kill -9).
func TestLostUploadIsDropped(t *testing.T) {
	ctx := context.Background()
	for _, op := range []string{"append", "complete"} {
		t.Run(op, func(t *testing.T) {
			st, root := newStore(t)
			u, err := st.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			data := []byte("the first chunk, counted and then lost")
			if _, err := st.AppendUpload(ctx, "r", u.ID, 0, -1, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			// The bytes vanish; the session still counts them.
			removed := 0
			_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() && strings.Contains(p, u.ID) {
					if b, _ := os.ReadFile(p); bytes.Equal(b, data) && os.Remove(p) == nil {
						removed++
					}
				}
				return nil
			})
			if removed != 1 {
				t.Fatalf("removed %d copies of the session's bytes, want 1", removed)
			}
			switch op {
			case "append":
				_, err = st.AppendUpload(ctx, "r", u.ID, int64(len(data)), -1, bytes.NewReader([]byte("more")))
			case "complete":
				_, err = st.CompleteUpload(ctx, "r", u.ID, digest.FromBytes(data), -1, nil)
			}
			if !errors.Is(err, storage.ErrUploadUnknown) {
				t.Fatalf("%s on a session whose bytes are gone: %v, want ErrUploadUnknown", op, err)
			}
			if _, err := st.UploadStatus(ctx, "r", u.ID); !errors.Is(err, storage.ErrUploadUnknown) {
				t.Fatalf("status of the dropped session: %v, want ErrUploadUnknown", err)
			}
			// A new session takes the blob whole.
			n, err := st.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.CompleteUpload(ctx, "r", n.ID, digest.FromBytes(data), 0, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A completion that a crash cut off after the blob was stored but before
// the session was removed (on S3 the driver's write state went first, so
// the session counted bytes no longer there: the load test's "0 bytes are
// durable") is answered when the client sends it again: the session's
// bytes are the blob, and the blob is stored. Dropping the session instead
// had the client send the whole blob once more.
func TestCompletionCutOffByACrash(t *testing.T) {
	ctx := context.Background()
	st, root := newStore(t)
	u, err := st.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("a blob completed just before the crash "), 1000)
	if _, err := st.AppendUpload(ctx, "r", u.ID, 0, -1, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var statePath string
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == "state" && strings.Contains(p, u.ID) {
			statePath = p
		}
		return nil
	})
	state, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatalf("session state: %v", err)
	}
	want := digest.FromBytes(data)
	if _, err := st.CompleteUpload(ctx, "r", u.ID, want, -1, nil); err != nil {
		t.Fatal(err)
	}
	// The crash: the session's state survived, its data did not.
	if err := os.MkdirAll(filepath.Dir(statePath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath, state, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UploadStatus(ctx, "r", u.ID); err != nil {
		t.Fatalf("the surviving session: %v", err)
	}
	info, err := st.CompleteUpload(ctx, "r", u.ID, want, -1, nil)
	if err != nil {
		t.Fatalf("completion sent again: %v", err)
	}
	if info.Digest != want || info.Size != int64(len(data)) {
		t.Fatalf("completion sent again: %s (%d bytes), want %s (%d)", info.Digest, info.Size, want, len(data))
	}
	if _, err := st.UploadStatus(ctx, "r", u.ID); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Fatalf("the session after its completion: %v, want ErrUploadUnknown", err)
	}
	if _, err := st.StatBlob(ctx, "r", want); err != nil {
		t.Fatal(err)
	}
}
