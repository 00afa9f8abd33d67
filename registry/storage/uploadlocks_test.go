package storage_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage"
)

// Requests naming upload sessions that do not exist, or that fail, must not
// leave anything in memory: a client sending PATCHes with fresh (or huge)
// fake ids once grew the server by the size of every id it sent.
func TestUploadLocksAreReleased(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	before := storage.UploadLocksHeld()
	fake := strings.Repeat("x", 500<<10)
	for i := 0; i < 20; i++ {
		id := fake + string(rune('a'+i))
		if _, err := st.AppendUpload(ctx, "r", id, -1, -1, bytes.NewReader([]byte("x"))); !errors.Is(err, storage.ErrUploadUnknown) {
			t.Fatalf("append to a malformed id: %v, want ErrUploadUnknown", err)
		}
		if _, err := st.CompleteUpload(ctx, "r", id, digest.FromString("x"), -1, nil); !errors.Is(err, storage.ErrUploadUnknown) {
			t.Fatalf("complete a malformed id: %v, want ErrUploadUnknown", err)
		}
		if err := st.CancelUpload(ctx, "r", id); !errors.Is(err, storage.ErrUploadUnknown) {
			t.Fatalf("cancel a malformed id: %v, want ErrUploadUnknown", err)
		}
	}
	// Well-formed ids of sessions that do not exist, and a session whose
	// chunk is refused.
	for _, id := range []string{"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"} {
		if _, err := st.AppendUpload(ctx, "r", id, -1, -1, bytes.NewReader([]byte("x"))); !errors.Is(err, storage.ErrUploadUnknown) {
			t.Fatalf("append to an unknown session: %v", err)
		}
	}
	u, err := st.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendUpload(ctx, "r", u.ID, 5, -1, bytes.NewReader([]byte("x"))); !errors.Is(err, storage.ErrUploadOffset) {
		t.Fatalf("chunk at the wrong offset: %v", err)
	}
	if _, err := st.AppendUpload(ctx, "r", u.ID, 0, -1, bytes.NewReader([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	if got := storage.UploadLocksHeld() - before; got != 0 {
		t.Fatalf("%d upload lock entries left after the requests ended, want 0", got)
	}
}
