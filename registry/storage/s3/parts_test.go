package s3

import (
	"testing"

	"github.com/modelctl/modelctl/registry/storage"
)

// A 100 GiB blob must fit S3's 10,000 parts, whatever the base part size,
// with every part within S3's bounds (5 MiB to 5 GiB).
func TestPartTargetFits100GiB(t *testing.T) {
	for _, base := range []int64{MinPartSize, DefaultPartSize, 64 << 20} {
		var total int64
		largest := int64(0)
		for n := 1; n <= maxParts; n++ {
			size := partTarget(n, base)
			if size < MinPartSize || size > 5<<30 {
				t.Fatalf("base %d: part %d has size %d, outside [5 MiB, 5 GiB]", base, n, size)
			}
			if total < 100<<30 {
				largest = size
			}
			total += size
		}
		if total < 100<<30 {
			t.Fatalf("base %d: 10,000 parts hold %d bytes, less than 100 GiB", base, total)
		}
		// The memory of one write is bounded by its largest part.
		if largest > 6*base {
			t.Fatalf("base %d: a 100 GiB write needs parts of %d bytes, over 6x the base", base, largest)
		}
	}
	if got := partTarget(1000, MinPartSize); got != MinPartSize {
		t.Fatalf("part 1000 = %d, want the base", got)
	}
	if got := partTarget(1001, MinPartSize); got != 2*MinPartSize {
		t.Fatalf("part 1001 = %d, want twice the base", got)
	}
}

func TestValidPath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"a", true},
		{"blobs/sha256/ab/abcdef/data", true},
		{"repositories/x/_uploads/0123/data", true},
		{"v1.0-rc_1/x", true},
		{"", false},
		{"/a", false},
		{"a/", false},
		{"a//b", false},
		{"a/../b", false},
		{"..", false},
		{".", false},
		{".s3-writes/a/.w/state", false},
		{"a/.w", false},
		{"a\\b", false},
		{"a\x00", false},
	}
	for _, tc := range tests {
		if got := storage.ValidPath(tc.path); got != tc.ok {
			t.Errorf("storage.ValidPath(%q) = %v, want %v", tc.path, got, tc.ok)
		}
	}
}

// A state read back from the bucket is checked before anything is sized by
// it.
func TestWriteStateCheck(t *testing.T) {
	good := func() *writeState {
		return &writeState{
			Version:  stateVersion,
			Parts:    []partInfo{{Number: 1, Size: 8 << 20}, {Number: 2, Size: 8 << 20}},
			Current:  checkpoint{Parts: 2, Segments: []segmentInfo{{Name: "seg-a", Size: 10}}, Size: 16<<20 + 10},
			Previous: &checkpoint{Parts: 1, Segments: []segmentInfo{{Name: "seg-b", Size: 5}}, Size: 8<<20 + 5},
		}
	}
	if err := good().check(); err != nil {
		t.Fatalf("a consistent state: %v", err)
	}
	tests := []struct {
		name string
		edit func(st *writeState)
	}{
		{"size does not add up", func(st *writeState) { st.Current.Size++ }},
		{"previous size does not add up", func(st *writeState) { st.Previous.Size = 1 << 40 }},
		{"more parts than listed", func(st *writeState) { st.Current.Parts = 3 }},
		{"negative parts", func(st *writeState) { st.Previous.Parts = -1 }},
		{"part numbers out of order", func(st *writeState) { st.Parts[0].Number = 2 }},
		{"negative segment", func(st *writeState) { st.Current.Segments[0].Size = -10; st.Current.Size = 16<<20 - 10 }},
		{"segment name escapes", func(st *writeState) { st.Current.Segments[0].Name = "seg-../../x" }},
		{"segment name not ours", func(st *writeState) { st.Current.Segments[0].Name = "state" }},
		{"huge tail", func(st *writeState) {
			st.Current.Segments[0].Size = 1 << 40
			st.Current.Size = 16<<20 + 1<<40
		}},
	}
	for _, tc := range tests {
		st := good()
		tc.edit(st)
		if err := st.check(); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}
