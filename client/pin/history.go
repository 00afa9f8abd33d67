package pin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
)

// The local pin history of an install root: every move of a section's pin
// that sync or rollback made here, one JSON line each, in
// ROOT/.modelctl/pins/history.jsonl. A rollback on this host reads the
// previous digest from it, so it needs no registry.
const historyFile = "history.jsonl"

// PinMove is one move of a section's pin on this host.
type PinMove struct {
	Time   time.Time     `json:"time"`
	Config string        `json:"config,omitempty"`
	Key    string        `json:"key"`
	From   digest.Digest `json:"from,omitempty"`
	To     digest.Digest `json:"to"`
	// Why: update, rollback, health (an automatic rollback).
	Why string `json:"why,omitempty"`
}

func historyPath(root string) string {
	return filepath.Join(root, manifests.ReservedDir, pinsDir, historyFile)
}

// appendPinMove adds a move to the history of root.
func appendPinMove(root string, m PinMove) error {
	if err := ensurePinsDir(root); err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(historyPath(root), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("pin history: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pin history: %w", err)
	}
	return nil
}

// readPinMoves returns the moves of key recorded in root, oldest first
// (none when there is no history yet). Lines that do not parse (a torn
// last line) are skipped.
func readPinMoves(root, key string) ([]PinMove, error) {
	f, err := os.Open(historyPath(root))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("pin history: %w", err)
	}
	defer f.Close()
	var out []PinMove
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m PinMove
		if json.Unmarshal(sc.Bytes(), &m) != nil || m.Key != key || m.To.Validate() != nil {
			continue
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// previousPin is the digest a rollback of key from cur goes to: the
// local history replayed as a stack, like a tag's (tags.Previous), so two
// rollbacks after v1, v2, v3 reach v1. A rollback to a digest the stack
// does not hold below its top (a --to, or the first rollback on a host
// without history) replaces the top instead of pushing, so a second
// rollback never goes forward again.
func previousPin(moves []PinMove, cur digest.Digest) (digest.Digest, error) {
	var stack []digest.Digest
	for _, m := range moves {
		if len(stack) == 0 && m.From != "" {
			stack = append(stack, m.From)
		}
		n := len(stack)
		switch {
		case n > 0 && stack[n-1] == m.To:
		case n > 1 && stack[n-2] == m.To:
			stack = stack[:n-1]
		case n > 0 && (m.Why == "rollback" || m.Why == "health"):
			stack[n-1] = m.To
		default:
			stack = append(stack, m.To)
		}
	}
	if cur != "" && (len(stack) == 0 || stack[len(stack)-1] != cur) {
		stack = append(stack, cur) // moved where the history did not see
	}
	if len(stack) < 2 {
		return "", fmt.Errorf("the local pin history has no earlier digest to roll back to (give one with --to DIGEST)")
	}
	return stack[len(stack)-2], nil
}

// ensurePinsDir creates ROOT/.modelctl/pins, refusing to go through a
// link planted there.
func ensurePinsDir(root string) error {
	cur := root
	for _, elem := range []string{manifests.ReservedDir, pinsDir} {
		cur = filepath.Join(cur, elem)
		fi, err := os.Lstat(cur)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return fmt.Errorf("%s is not a directory (a link?): refusing to write through it", cur)
		case !os.IsNotExist(err):
			return err
		}
		if err := os.Mkdir(cur, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("create %s: %w", cur, err)
		}
	}
	return nil
}
