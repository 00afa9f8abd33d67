package pin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/modelctl/modelctl/internal/atomicfile"
	"github.com/modelctl/modelctl/manifests"
)

// One modelctl at a time changes a config: its pins, the models it
// installs and its local pin history. A sync from cron and a rollback by
// hand, or two syncs, would otherwise interleave their installs and write
// the YAML from stale copies (the last Save would undo the other's pin).
// The lock is DIR/.modelctl/lock beside the config, held from before the
// config is read until the command ends; the operating system drops it
// when the process dies, so a killed sync never leaves it behind.
const (
	lockFile  = "lock"
	ownerFile = "lock.owner" // who holds it, for the message of a waiter
)

// DefaultLockWait is how long a command waits for another one holding
// the lock of the same config before it gives up.
const DefaultLockWait = 10 * time.Minute

// lockPoll is how often a waiter tries the lock again.
var lockPoll = 100 * time.Millisecond

// ErrLocked: another modelctl held the config's lock for longer than the
// wait.
var ErrLocked = errors.New("another modelctl is working on this config")

// LoadLocked takes the lock of the config at path, waiting up to wait
// (telling log once that it waits, and for whom), then loads it. release
// drops the lock; call it when done with the config (after Save). what
// names the command, for the message of anyone who waits on this one.
func LoadLocked(ctx context.Context, path, what string, wait time.Duration, log io.Writer) (cfg *Config, release func(), err error) {
	release, err = lockConfig(ctx, path, what, wait, log)
	if err != nil {
		return nil, nil, err
	}
	cfg, err = Load(path)
	if err != nil {
		release()
		return nil, nil, err
	}
	return cfg, release, nil
}

func lockConfig(ctx context.Context, path, what string, wait time.Duration, log io.Writer) (func(), error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	dir := filepath.Join(filepath.Dir(abs), manifests.ReservedDir)
	name := filepath.Join(dir, lockFile)
	err = atomicfile.MkdirNoLinks(filepath.Dir(abs), manifests.ReservedDir, nil)
	var f *os.File
	if err == nil {
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	}
	if err != nil {
		// A config in a directory this user may not write (sync without
		// --update writes nothing there) is still served, unlocked.
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			if log != nil {
				fmt.Fprintf(log, "modelctl: warning: cannot take the lock of %s (%v): going on without it\n", path, err)
			}
			return func() {}, nil
		}
		return nil, fmt.Errorf("lock config %s: %w", path, err)
	}
	deadline := time.Now().Add(wait)
	told := false
	for {
		ok, err := atomicfile.TryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock config %s: %s: %w", path, name, err)
		}
		if ok {
			break
		}
		holder := lockHolder(dir)
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w (%s holds %s; waited %s): try again when it is done", ErrLocked, holder, name, wait)
		}
		if !told && log != nil {
			fmt.Fprintf(log, "modelctl: waiting for %s, which is working on %s (holds %s; up to %s)\n", holder, path, name, wait)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock config %s: %w", path, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
	host, _ := os.Hostname()
	owner := fmt.Sprintf("modelctl %s (pid %d on %s, since %s)", what, os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	_ = os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner+"\n"), 0o644) // only for messages
	return func() {
		_ = atomicfile.Unlock(f)
		f.Close()
	}, nil
}

// lockHolder describes who holds the lock, as far as its owner file says.
func lockHolder(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	s := strings.TrimSpace(strings.Map(func(r rune) rune {
		if isControl(r) {
			return -1
		}
		return r
	}, string(b)))
	if err == nil && s != "" && len(s) < 512 {
		return s
	}
	return "another modelctl"
}
