package pin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
)

// RollbackOptions control Rollback.
type RollbackOptions struct {
	// Key is the section to roll back; "" rolls back every pinned section
	// whose local history has an earlier digest.
	Key string
	// To is the digest to go to; "" is the previous one of the local pin
	// history.
	To digest.Digest
	// Sync is how the previous model is installed (service commands,
	// signatures, ...).
	Sync SyncOptions
}

// Rollback switches sections of a config back to the digest they were
// pinned at before, from the local pin history of their install root
// (written by every sync that moved a pin on this host), so that it needs
// no registry: when the previous model's manifest is in the pin records
// and its blobs are in the cache, nothing is fetched and every byte is
// verified from the cache. The pins in the file move back after the files
// do, and the service commands run as for a sync. The tag the section
// follows does not move: `sync --update` would install what it points at
// again (move it with `modelctl rollback REF`).
func Rollback(ctx context.Context, cfg *Config, p Puller, opts RollbackOptions) ([]SyncResult, error) {
	secs, err := cfg.Sections()
	if err != nil {
		return nil, err
	}
	pins := map[string]digest.Digest{}
	var keys []string
	var errs []error
	for _, s := range secs {
		if opts.Key != "" && s.Key != opts.Key {
			continue
		}
		to, err := cfg.previous(s, opts.To)
		if err != nil {
			if opts.Key == "" && opts.To == "" {
				continue // nothing earlier for this one
			}
			errs = append(errs, fmt.Errorf("rollback %s: %w", s.Key, err))
			continue
		}
		pins[s.Key] = to
		keys = append(keys, s.Key)
	}
	if opts.Key != "" && len(keys) == 0 && len(errs) == 0 {
		return nil, fmt.Errorf("rollback: no section %q in the config", opts.Key)
	}
	if len(keys) == 0 {
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("rollback: no section has an earlier pin in its local history (give --key KEY --to DIGEST)"))
		}
		return nil, errors.Join(errs...)
	}
	so := opts.Sync
	so.Update, so.Pins, so.Keys, so.Why = false, pins, keys, "rollback"
	if opts.To != "" {
		// A chosen digest is a move like an update: a later rollback
		// comes back from it.
		so.Why = "rollback --to"
	}
	res, err := Sync(ctx, cfg, p, so)
	if err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// previous is the digest section s rolls back to: to when given, else the
// one before its pin in the local history of its install root.
func (c *Config) previous(s Section, to digest.Digest) (digest.Digest, error) {
	if to != "" {
		if err := to.Validate(); err != nil {
			return "", fmt.Errorf("--to %q: %w", to, err)
		}
		return to, nil
	}
	if s.Digest == "" {
		return "", fmt.Errorf("%w: nothing to roll back from", ErrNotPinned)
	}
	rs, err := c.resolved(s)
	if err != nil {
		return "", err
	}
	local, err := LocalPath(rs.ModelPath)
	if err != nil {
		return "", err
	}
	inst, err := findInstall(local, rs.ModelPath, s.Digest)
	if err != nil {
		return "", fmt.Errorf("the pinned %s is not installed at %s, so its history is not there: give --to DIGEST", s.Digest, local)
	}
	root, err := installRootOf(runtime.GOOS, rs.ModelPath, inst.Manifest)
	if err != nil {
		return "", err
	}
	moves, err := readPinMoves(root, s.Key)
	if err != nil {
		return "", err
	}
	if len(moves) == 0 {
		// A host that synced before the history was kept: the most
		// recent other install recorded here is the previous one.
		if d, ok := latestOtherRecord(root, s.Digest); ok {
			return d, nil
		}
	}
	return previousPin(moves, s.Digest)
}

// latestOtherRecord returns the digest of the most recently written pin
// record in root other than cur (whose manifest still checks out).
func latestOtherRecord(root string, cur digest.Digest) (digest.Digest, bool) {
	entries, err := os.ReadDir(filepath.Join(root, manifests.ReservedDir, pinsDir))
	if err != nil {
		return "", false
	}
	var best digest.Digest
	var bestTime time.Time
	for _, e := range entries {
		alg, hex, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".json"), "-")
		if !ok || !strings.HasSuffix(e.Name(), ".json") || !e.Type().IsRegular() {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		if d.Validate() != nil || d == cur {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().After(bestTime) {
			continue
		}
		if _, err := readRecord(root, d); err != nil {
			continue
		}
		best, bestTime = d, fi.ModTime()
	}
	return best, best != ""
}
