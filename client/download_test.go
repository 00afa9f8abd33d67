package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
)

// A partial download left by an older modelctl (16 MiB pieces, progress at
// an odd byte) continues: the complete piece is kept, the odd one restarts
// at the block boundary below its progress, and the rest is fetched.
func TestPullContinuesAnOlderPartial(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "direct", false: "buffered"}[direct], func(t *testing.T) {
			defer func(v bool) { directDownloads = v }(directDownloads)
			directDownloads = direct && directDownloads
			testPullContinuesAnOlderPartial(t)
		})
	}
}

func testPullContinuesAnOlderPartial(t *testing.T) {
	srv := testenv.StartOurs(t)
	pusher := newTestClient(t, Options{})
	const size = 50<<20 + 123
	ref := srv.Addr + "/resume/old:v1"
	res, src := pushRandom(t, pusher, ref, size)
	d := res.Files[0].Digest

	c := newTestClient(t, Options{})
	partial := filepath.Join(c.cache.dir, "partial", d.Encoded())
	if err := os.MkdirAll(filepath.Dir(partial), 0o755); err != nil {
		t.Fatal(err)
	}
	const odd = 5_000_001
	st := downloadState{Size: size, Segments: []segment{
		{Start: 0, End: 16 << 20, Done: 16 << 20},
		{Start: 16 << 20, End: 32 << 20, Done: odd},
		{Start: 32 << 20, End: 48 << 20},
		{Start: 48 << 20, End: size},
	}}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(partial)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Segments {
		if _, err := io.Copy(io.NewOffsetWriter(out, s.Start), io.NewSectionReader(in, s.Start, s.Done)); err != nil {
			t.Fatal(err)
		}
	}
	out.Close()
	b, _ := json.Marshal(st)
	if err := os.WriteFile(partial+".json", b, 0o644); err != nil {
		t.Fatal(err)
	}

	r, _ := ParseReference(ref)
	dst := filepath.Join(t.TempDir(), "m")
	pr, err := c.Pull(context.Background(), r, dst)
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, filepath.Join(dst, "model.onnx.data"))
	want := int64(size - 16<<20 - odd&^4095)
	if got := pr.Files[len(pr.Files)-1].Transferred; got != want {
		t.Errorf("transferred %d bytes of the data file, want %d", got, want)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Errorf("partial file left behind: %v", err)
	}
}

// Blobs of every awkward size round-trip, written directly or through the
// page cache: empty, under a block, just over one, just over a piece.
func TestPullOddSizes(t *testing.T) {
	srv := testenv.StartOurs(t)
	pusher := newTestClient(t, Options{})
	for _, direct := range []bool{true, false} {
		for _, size := range []int64{0, 1, 4095, 4097, writeUnit + 1, pieceSize + 1} {
			name := fmt.Sprintf("%s/%d", map[bool]string{true: "direct", false: "buffered"}[direct], size)
			t.Run(name, func(t *testing.T) {
				defer func(v bool) { directDownloads = v }(directDownloads)
				directDownloads = direct && directDownloads
				ref := fmt.Sprintf("%s/odd/s%d:v1", srv.Addr, size)
				_, src := pushRandom(t, pusher, ref, size)
				res := pullAndCompare(t, ref, src)
				if res.Transferred != size {
					t.Errorf("transferred %d of %d", res.Transferred, size)
				}
			})
		}
	}
}
