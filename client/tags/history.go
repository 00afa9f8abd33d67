package tags

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelctl/modelctl/client"
)

// maxHistoryLine bounds one line of a client-side history file.
const maxHistoryLine = 64 << 10

// historyFile is where the client-side history of ref's tag lives:
// HistoryDir/HOST_PORT/REPO/TAG.jsonl. Repository and tag names are
// validated by the reference grammar, so they are safe path elements;
// the host's ':' is not (Windows), so it becomes '_'.
func (t *Tagger) historyFile(ref client.Reference) string {
	host := strings.NewReplacer(":", "_", "[", "", "]", "").Replace(ref.Registry)
	return filepath.Join(t.opts.HistoryDir, host, filepath.FromSlash(ref.Repository), ref.Tag+".jsonl")
}

// readHistory reads a client-side history file, oldest first; a missing
// file is an empty history.
func readHistory(file string) ([]Move, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read tag history %s: %w", file, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxHistoryLine)
	var out []Move
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var m Move
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			// A line cut short by a crash mid-append is the last one.
			return nil, fmt.Errorf("tag history %s line %d: %w (delete the line to go on)", file, n, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read tag history %s: %w", file, err)
	}
	return out, nil
}

// appendHistory appends one move as a JSON line, synced: a history that
// a rollback relies on must survive a crash.
func appendHistory(file string, m Move) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("tag history: %w", err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("tag history: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to tag history %s: %w", file, err)
	}
	return nil
}
