package ui

import (
	"context"
	"time"
)

// Warm reads what the pages show of every repository into the handler's
// caches: the tags (through the tag index, whose first view per server also
// checks it against the links) and the summary of every tagged version.
// Without it the first view of a large repository after a start reads
// every manifest and config (seconds on S3 for 1,000 versions); serve runs
// it in the background at start, so that the first visitor gets the pages
// as fast as later ones. It reads at most half the summary cache's worth
// of versions, so that it never evicts what it read, and stops with ctx.
// Repositories that cannot be read are skipped: a view reports them.
func (h *Handler) Warm(ctx context.Context) (repos, versions int, took time.Duration, err error) {
	start := time.Now()
	names, err := h.store.Catalog(ctx, -1, "")
	if err != nil {
		return 0, 0, time.Since(start), err
	}
	for _, name := range names {
		if versions >= summaryCacheEntries/2 {
			break
		}
		tags, err := h.loadTags(ctx, name, true)
		if ctx.Err() != nil {
			return repos, versions, time.Since(start), ctx.Err()
		}
		if err != nil {
			continue
		}
		repos++
		versions += len(tags)
	}
	return repos, versions, time.Since(start), nil
}
