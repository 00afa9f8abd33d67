package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

func newStore(t *testing.T) (*storage.Store, string) {
	t.Helper()
	root := t.TempDir()
	d, err := filesystem.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return storage.NewStore(d), root
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// failingReader returns n bytes of data and then an error, like a client
// whose connection drops.
type failingReader struct {
	r io.Reader
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset by peer")
	}
	return n, err
}

func TestUploadResumesInAnotherStoreAfterDisconnect(t *testing.T) {
	ctx := context.Background()
	s1, root := newStore(t)
	s1.CheckpointBytes = 1 << 20
	data := randomBytes(t, 5<<20+123)

	u, err := s1.StartUpload(ctx, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	// The client's connection drops after 3.5 MiB of one request.
	_, err = s1.AppendUpload(ctx, "a/b", u.ID, 0, -1, &failingReader{bytes.NewReader(data[:3<<20+512<<10])})
	if err == nil {
		t.Fatal("append from a failing reader succeeded")
	}

	// A second process over the same directory continues.
	d2, _ := filesystem.New(root)
	s2 := storage.NewStore(d2)
	st, err := s2.UploadStatus(ctx, "a/b", u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Offset != 3<<20+512<<10 {
		t.Fatalf("offset after disconnect = %d, want everything received (%d)", st.Offset, 3<<20+512<<10)
	}
	if _, err := s2.AppendUpload(ctx, "a/b", u.ID, 0, -1, bytes.NewReader(data)); !errors.Is(err, storage.ErrUploadOffset) {
		t.Fatalf("append at a stale offset: %v, want ErrUploadOffset", err)
	}
	want := digest.FromBytes(data)
	info, err := s2.CompleteUpload(ctx, "a/b", u.ID, want, st.Offset, bytes.NewReader(data[st.Offset:]))
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != want || info.Size != int64(len(data)) {
		t.Fatalf("completed %v, want %s (%d bytes)", info, want, len(data))
	}
	rc, _, err := s1.OpenBlob(ctx, "a/b", want, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("stored blob differs")
	}
	if _, err := s1.UploadStatus(ctx, "a/b", u.ID); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Fatalf("session after completion: %v, want ErrUploadUnknown", err)
	}
}

func TestCompleteUploadVerifiesDigest(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	data := randomBytes(t, 1000)
	sum512 := sha512.Sum512(data)
	tests := []struct {
		name    string
		want    digest.Digest
		wantErr error
	}{
		{"sha256 match", digest.FromBytes(data), nil},
		{"sha512 match", digest.NewDigestFromBytes(digest.SHA512, sum512[:]), nil},
		{"mismatch", digest.FromBytes([]byte("other")), storage.ErrDigestMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := s.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.CompleteUpload(ctx, "r", u.ID, tc.want, -1, bytes.NewReader(data))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if _, err := s.StatBlob(ctx, "r", tc.want); !errors.Is(err, storage.ErrBlobUnknown) {
					t.Fatalf("blob with wrong digest is visible: %v", err)
				}
				return
			}
			if info.Digest != tc.want {
				t.Fatalf("digest %s, want %s", info.Digest, tc.want)
			}
		})
	}
}

func pushBlob(t *testing.T, s *storage.Store, name string, data []byte) v1.Descriptor {
	t.Helper()
	info, err := s.PutBlob(context.Background(), name, digest.FromBytes(data), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: "application/octet-stream", Digest: info.Digest, Size: info.Size}
}

func manifestJSON(t *testing.T, config v1.Descriptor, layers []v1.Descriptor, subject *v1.Descriptor) []byte {
	t.Helper()
	m := v1.Manifest{MediaType: v1.MediaTypeImageManifest, Config: config, Layers: layers, Subject: subject, ArtifactType: "application/x-test"}
	m.SchemaVersion = 2
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPutManifestRefusals(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	cfg := pushBlob(t, s, "r", []byte("{}"))
	layer := pushBlob(t, s, "r", []byte("layer"))
	missing := v1.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes([]byte("nope")), Size: 4}
	wrongSize := layer
	wrongSize.Size++
	good := manifestJSON(t, cfg, []v1.Descriptor{layer}, nil)

	tests := []struct {
		name string
		req  storage.PutManifestRequest
		want error
	}{
		{"missing layer", storage.PutManifestRequest{Name: "r", Reference: "t", ContentType: v1.MediaTypeImageManifest, Body: manifestJSON(t, cfg, []v1.Descriptor{missing}, nil)}, storage.ErrManifestBlob},
		{"layer in another repository only", storage.PutManifestRequest{Name: "other", Reference: "t", ContentType: v1.MediaTypeImageManifest, Body: good}, storage.ErrManifestBlob},
		{"wrong layer size", storage.PutManifestRequest{Name: "r", Reference: "t", ContentType: v1.MediaTypeImageManifest, Body: manifestJSON(t, cfg, []v1.Descriptor{wrongSize}, nil)}, storage.ErrManifestInvalid},
		{"digest mismatch", storage.PutManifestRequest{Name: "r", Reference: string(digest.FromBytes([]byte("x"))), ContentType: v1.MediaTypeImageManifest, Body: good}, storage.ErrDigestInvalid},
		{"content type mismatch", storage.PutManifestRequest{Name: "r", Reference: "t", ContentType: v1.MediaTypeImageIndex, Body: good}, storage.ErrManifestInvalid},
		{"not JSON", storage.PutManifestRequest{Name: "r", Reference: "t", ContentType: v1.MediaTypeImageManifest, Body: []byte("{")}, storage.ErrManifestInvalid},
		{"trailing data", storage.PutManifestRequest{Name: "r", Reference: "t", ContentType: v1.MediaTypeImageManifest, Body: append(append([]byte{}, good...), []byte(" {}")...)}, storage.ErrManifestInvalid},
		{"too large", storage.PutManifestRequest{Name: "r", Reference: "t", ContentType: v1.MediaTypeImageManifest, Body: bytes.Repeat([]byte(" "), storage.DefaultMaxManifestSize+1)}, storage.ErrManifestTooLarge},
		{"bad tag", storage.PutManifestRequest{Name: "r", Reference: "-bad", ContentType: v1.MediaTypeImageManifest, Body: good}, storage.ErrTagInvalid},
		{"bad tag parameter", storage.PutManifestRequest{Name: "r", Reference: string(digest.FromBytes(good)), Tags: []string{"../x"}, ContentType: v1.MediaTypeImageManifest, Body: good}, storage.ErrTagInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.PutManifest(ctx, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := s.PutManifest(ctx, storage.PutManifestRequest{Name: "r", Reference: "t", ContentType: v1.MediaTypeImageManifest, Body: good}); err != nil {
		t.Fatalf("valid manifest refused: %v", err)
	}
}

func TestTagHistoryAndCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	cfg := pushBlob(t, s, "sarai/audio", []byte("{}"))
	var digests []digest.Digest
	for i := 0; i < 3; i++ {
		layer := pushBlob(t, s, "sarai/audio", []byte{byte(i)})
		info, err := s.PutManifest(ctx, storage.PutManifestRequest{Name: "sarai/audio", Reference: "int8", ContentType: v1.MediaTypeImageManifest, Body: manifestJSON(t, cfg, []v1.Descriptor{layer}, nil), User: "ci"})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, info.Digest)
	}
	hist, err := s.TagHistory(ctx, "sarai/audio", "int8")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Fatalf("history has %d moves, want 3", len(hist))
	}
	for i, mv := range hist {
		var from digest.Digest
		if i > 0 {
			from = digests[i-1]
		}
		if mv.From != from || mv.To != digests[i] || mv.User != "ci" || mv.Tag != "int8" {
			t.Fatalf("move %d = %+v, want %s -> %s by ci", i, mv, from, digests[i])
		}
	}
	// Rollback is a compare-and-swap: it fails if the tag moved meanwhile.
	if _, err := s.MoveTag(ctx, "sarai/audio", "int8", digests[1], digests[0], "ops"); !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("CAS from a stale digest: %v, want ErrPreconditionFailed", err)
	}
	prev, err := s.MoveTag(ctx, "sarai/audio", "int8", digests[1], digests[2], "ops")
	if err != nil || prev != digests[2] {
		t.Fatalf("rollback: prev %s, err %v", prev, err)
	}
	if d, _ := s.ResolveTag(ctx, "sarai/audio", "int8"); d != digests[1] {
		t.Fatalf("tag after rollback = %s, want %s", d, digests[1])
	}
	// Deleting a manifest removes the tags that point at it, and says so in the history.
	if err := s.DeleteManifest(ctx, "sarai/audio", digests[1], "ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveTag(ctx, "sarai/audio", "int8"); !errors.Is(err, storage.ErrManifestUnknown) {
		t.Fatalf("tag of a deleted manifest still resolves: %v", err)
	}
	hist, _ = s.TagHistory(ctx, "sarai/audio", "int8")
	if last := hist[len(hist)-1]; last.From != digests[1] || last.To != "" {
		t.Fatalf("last history entry %+v, want a deletion of %s", last, digests[1])
	}
}

func TestReferrersAndCatalog(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	cfg := pushBlob(t, s, "m/x", []byte("{}"))
	model, err := s.PutManifest(ctx, storage.PutManifestRequest{Name: "m/x", Reference: "v1", ContentType: v1.MediaTypeImageManifest, Body: manifestJSON(t, cfg, []v1.Descriptor{pushBlob(t, s, "m/x", []byte("w"))}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	subject := &v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: model.Digest, Size: model.Size}
	bench, err := s.PutManifest(ctx, storage.PutManifestRequest{Name: "m/x", Reference: "bench", ContentType: v1.MediaTypeImageManifest, Body: manifestJSON(t, cfg, nil, subject)})
	if err != nil {
		t.Fatal(err)
	}
	if bench.Subject != model.Digest {
		t.Fatalf("subject %s, want %s", bench.Subject, model.Digest)
	}
	refs, err := s.Referrers(ctx, "m/x", model.Digest, "")
	if err != nil || len(refs) != 1 || refs[0].Digest != bench.Digest || refs[0].ArtifactType != "application/x-test" {
		t.Fatalf("referrers = %+v, %v", refs, err)
	}
	if refs, _ := s.Referrers(ctx, "m/x", model.Digest, "application/other"); len(refs) != 0 {
		t.Fatalf("filtered referrers = %+v, want none", refs)
	}
	for _, name := range []string{"a", "m/y", "z/deep/repo"} {
		pushBlob(t, s, name, []byte("x"))
	}
	all, err := s.Catalog(ctx, -1, "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(all, ",") != "a,m/x,m/y,z/deep/repo" {
		t.Fatalf("catalog = %v", all)
	}
	page, _ := s.Catalog(ctx, 2, "a")
	if strings.Join(page, ",") != "m/x,m/y" {
		t.Fatalf("catalog page = %v", page)
	}
}

func TestPurgeUploads(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	u, _ := s.StartUpload(ctx, "r")
	if _, err := s.AppendUpload(ctx, "r", u.ID, 0, -1, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeUploads(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("purge of fresh sessions: %d, %v", n, err)
	}
	if n, err := s.PurgeUploads(ctx, -time.Second); err != nil || n != 1 {
		t.Fatalf("purge of old sessions: %d, %v; want 1", n, err)
	}
	if _, err := s.UploadStatus(ctx, "r", u.ID); !errors.Is(err, storage.ErrUploadUnknown) {
		t.Fatalf("purged session: %v", err)
	}
}

func TestValidation(t *testing.T) {
	for _, n := range []string{"a", "a/b", "a-b/c_d/e.f", "a__b", strings.Repeat("a", 255)} {
		if err := storage.ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"", "A", "a//b", "/a", "a/", "../a", "a/../b", "_a", "a/_uploads", "a b", strings.Repeat("a", 256)} {
		if err := storage.ValidateName(n); err == nil {
			t.Errorf("ValidateName(%q) accepted", n)
		}
	}
	for _, tg := range []string{"", ".x", "-x", "a/b", "..", strings.Repeat("a", 129)} {
		if err := storage.ValidateTag(tg); err == nil {
			t.Errorf("ValidateTag(%q) accepted", tg)
		}
	}
}

func TestGarbageCollect(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	cfg := pushBlob(t, s, "r", []byte("{}"))
	keep := pushBlob(t, s, "r", []byte("kept layer"))
	gone := pushBlob(t, s, "r", []byte("deleted layer"))
	shared := pushBlob(t, s, "r", []byte("shared layer"))
	pushBlob(t, s, "other", []byte("shared layer"))
	m, err := s.PutManifest(ctx, storage.PutManifestRequest{Name: "r", Reference: "v1", ContentType: v1.MediaTypeImageManifest, Body: manifestJSON(t, cfg, []v1.Descriptor{keep}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	old, err := s.PutManifest(ctx, storage.PutManifestRequest{Name: "r", Reference: "v0", ContentType: v1.MediaTypeImageManifest, Body: manifestJSON(t, cfg, []v1.Descriptor{gone}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	// keep's link goes too, but manifest v1 still uses it: it must survive.
	for _, d := range []digest.Digest{gone.Digest, shared.Digest, keep.Digest} {
		if err := s.DeleteBlob(ctx, "r", d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteManifest(ctx, "r", old.Digest, ""); err != nil {
		t.Fatal(err)
	}

	// Within the grace period nothing goes.
	res, err := s.GarbageCollect(ctx, time.Hour, false)
	if err != nil || len(res.Deleted) != 0 || res.Young != 2 {
		t.Fatalf("gc within grace: %+v, %v; want 2 young, none deleted", res, err)
	}
	res, err = s.GarbageCollect(ctx, -time.Second, true)
	if err != nil || len(res.Deleted) != 2 {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	if _, err := s.StatGlobalBlob(ctx, gone.Digest); err != nil {
		t.Fatalf("dry run deleted %s: %v", gone.Digest, err)
	}
	res, err = s.GarbageCollect(ctx, -time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	deleted := map[digest.Digest]bool{}
	for _, d := range res.Deleted {
		deleted[d] = true
	}
	if len(deleted) != 2 || !deleted[gone.Digest] || !deleted[old.Digest] {
		t.Fatalf("deleted %v; want the unlinked layer %s and the deleted manifest %s", res.Deleted, gone.Digest, old.Digest)
	}
	for _, d := range []digest.Digest{cfg.Digest, keep.Digest, shared.Digest, m.Digest} {
		if _, err := s.StatGlobalBlob(ctx, d); err != nil {
			t.Fatalf("gc removed referenced %s: %v", d, err)
		}
	}
	if _, _, err := s.GetManifest(ctx, "r", "v1"); err != nil {
		t.Fatalf("manifest v1 after gc: %v", err)
	}
}
