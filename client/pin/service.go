package pin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

// The keys of a section's service: sync runs restart after it switched
// the section's model, then health until it passes or health_timeout
// (default DefaultHealthTimeout) runs out; a failing health check
// switches the model back, restarts again and fails the sync.
const (
	KeyRestart       = "restart"
	KeyHealth        = "health"
	KeyHealthTimeout = "health_timeout"
)

// DefaultHealthTimeout is how long a health command may take to pass.
const DefaultHealthTimeout = 60 * time.Second

// maxOutput bounds what is kept of a command's output (its end).
const maxOutput = 16 << 10

// Service is how the application is restarted and checked.
type Service struct {
	Restart string
	Health  string
	Timeout time.Duration
	// Dir is where the commands run: the application's directory.
	Dir string
}

func (s Service) empty() bool { return s.Restart == "" && s.Health == "" }

// CommandResult is the outcome of one service command.
type CommandResult struct {
	Command string        `json:"command"`
	OK      bool          `json:"ok"`
	Output  string        `json:"output,omitempty"`
	Error   string        `json:"error,omitempty"`
	Took    time.Duration `json:"took"`
	Tries   int           `json:"tries,omitempty"`
}

func (r *CommandResult) String() string {
	if r == nil {
		return ""
	}
	state := "ok"
	if !r.OK {
		state = "FAILED: " + r.Error
	}
	out := strings.TrimSpace(r.Output)
	if out == "" {
		out = "(no output)"
	}
	return fmt.Sprintf("$ %s\n%s\n[%s after %s]", r.Command, out, state, r.Took.Round(time.Millisecond))
}

// tailBuffer keeps the last maxOutput bytes written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > maxOutput {
		t.b = append([]byte(nil), t.b[len(t.b)-maxOutput:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.b, []byte("?")))
}

// runCommand runs command through the system shell in dir, bounded by
// timeout. A command that leaves a process behind holding its output (a
// restart that starts a daemon) is not waited for beyond a short delay.
func runCommand(ctx context.Context, dir, command string, timeout time.Duration) *CommandResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var cmd *exec.Cmd
	if runtime.GOOS == "windows" {
		cmd = exec.CommandContext(ctx, "cmd", "/C", command)
	} else {
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", command)
	}
	cmd.Dir = dir
	out := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	r := &CommandResult{Command: command, Output: out.String(), Took: time.Since(start), OK: err == nil}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		r.Error = fmt.Sprintf("did not finish within %s", timeout)
	case errors.As(err, &ee):
		r.Error = fmt.Sprintf("exit status %d", ee.ExitCode())
	case errors.Is(err, exec.ErrWaitDelay):
		r.OK, r.Error = true, ""
	default:
		r.Error = err.Error()
	}
	return r
}

// restart runs the restart command (nil when there is none).
func (s Service) restart(ctx context.Context) *CommandResult {
	if s.Restart == "" {
		return nil
	}
	return runCommand(ctx, s.Dir, s.Restart, s.timeout())
}

func (s Service) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultHealthTimeout
}

// check runs the health command until it passes or the timeout runs out
// (nil when there is none).
func (s Service) check(ctx context.Context) *CommandResult {
	if s.Health == "" {
		return nil
	}
	deadline := time.Now().Add(s.timeout())
	start := time.Now()
	var last *CommandResult
	for tries := 1; ; tries++ {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		last = runCommand(ctx, s.Dir, s.Health, left)
		last.Tries, last.Took = tries, time.Since(start)
		if last.OK || ctx.Err() != nil {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(min(500*time.Millisecond, max(0, time.Until(deadline)))):
		}
	}
	if last == nil {
		last = &CommandResult{Command: s.Health, Error: "no time to run"}
	}
	last.Error = fmt.Sprintf("%s (%d tries in %s)", last.Error, last.Tries, s.timeout())
	return last
}

// HealthError is a sync whose service failed after the switch: the
// models were switched back (RolledBack) and the service restarted.
type HealthError struct {
	Keys []string
	// Restart and Health are the commands after the switch; AfterRestart
	// and AfterHealth after switching back.
	Restart, Health           *CommandResult
	AfterRestart, AfterHealth *CommandResult
	RolledBack                bool
	// Cause is what went wrong switching back, if anything did.
	Cause error
}

func (e *HealthError) Error() string {
	what := "health check failed"
	if e.Restart != nil && !e.Restart.OK {
		what = "restart failed (" + e.Restart.Error + ")"
	} else if e.Health != nil {
		what = "health check failed (" + e.Health.Error + ")"
	}
	back := "switched back to the previous model"
	switch {
	case !e.RolledBack:
		back = "switching back FAILED: " + fmt.Sprint(e.Cause)
	case e.AfterHealth != nil && !e.AfterHealth.OK:
		back += ", but it fails its health check too (" + e.AfterHealth.Error + ")"
	case e.AfterHealth != nil:
		back += ", which passes its health check"
	}
	return fmt.Sprintf("%s: %s after the switch; %s", strings.Join(e.Keys, ", "), what, back)
}

// Outputs is the full story: every command run, with its output.
func (e *HealthError) Outputs() string {
	var b strings.Builder
	for _, p := range []struct {
		title string
		r     *CommandResult
	}{{"restart with the new model", e.Restart}, {"health with the new model", e.Health},
		{"restart after switching back", e.AfterRestart}, {"health after switching back", e.AfterHealth}} {
		if p.r != nil {
			fmt.Fprintf(&b, "--- %s\n%s\n", p.title, p.r)
		}
	}
	return b.String()
}
