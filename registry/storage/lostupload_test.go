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
