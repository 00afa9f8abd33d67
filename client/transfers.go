package client

import (
	"path/filepath"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// Transfer is an upload or a download left unfinished in the cache: a push
// or pull that was interrupted (the next one continues it), or one that is
// running now.
type Transfer struct {
	// Kind is "upload" or "download".
	Kind string `json:"kind"`
	// Location is an upload's session (its URL on a registry), which the
	// registry can be asked about.
	Location string `json:"location,omitempty"`
	// Digest is a download's blob.
	Digest digest.Digest `json:"digest,omitempty"`
	Size   int64         `json:"size"`
	// Done is what the state records: the bytes of an upload sent and
	// hashed (a single streamed request records nothing until it ends: ask
	// the registry), or of a download received and written.
	Done int64 `json:"done"`
}

// Transfers lists the unfinished uploads and downloads of the cache.
func (c *Cache) Transfers() ([]Transfer, error) {
	var out []Transfer
	ups, _ := filepath.Glob(filepath.Join(c.dir, "uploads", "*.json"))
	for _, p := range ups {
		var st uploadState
		if c.readJSON(p, &st) != nil || st.Location == "" {
			continue
		}
		out = append(out, Transfer{Kind: "upload", Location: st.Location, Size: st.Size, Done: st.Offset})
	}
	downs, _ := filepath.Glob(filepath.Join(c.dir, "partial", "*.json"))
	for _, p := range downs {
		var st downloadState
		if c.readJSON(p, &st) != nil {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimSuffix(filepath.Base(p), ".json"))
		if d.Validate() != nil {
			continue
		}
		t := Transfer{Kind: "download", Digest: d, Size: st.Size}
		for _, s := range st.Segments {
			t.Done += s.Done
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Size > out[j].Size })
	return out, nil
}
