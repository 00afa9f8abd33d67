package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/model"
	"github.com/modelctl/modelctl/client/pin"
	"github.com/modelctl/modelctl/client/tags"
	"github.com/modelctl/modelctl/internal/hostcpu"
	"github.com/modelctl/modelctl/quantize/bench"
	"github.com/modelctl/modelctl/signing"
)

func init() { register(newSyncCmd) }

func digestOf(s fmt.Stringer) digest.Digest { return digest.Digest(s.String()) }

func newSyncCmd() *cobra.Command {
	var cf clientFlags
	var update, check bool
	var ortLib string
	var df deployFlags
	var sf serviceFlags
	cmd := &cobra.Command{
		Use:   "sync CONFIG.yaml [--update]",
		Short: "Install every pinned model of a config, verified, next to its model_path",
		Long: `Install the pinned artifact (artifact_digest) of every section of CONFIG.yaml into
the directory of its model_path (relative paths are relative to the working
directory, as the application reads them). Files are fetched into the local
cache, verified by digest, and appear at their paths only complete; a model
already installed is left alone without contacting the registry, so a second
sync transfers nothing.

With --update, each section's artifact tag is resolved again first; the new
models are installed and then the pins are rewritten in CONFIG.yaml.

An artifact that records a CPU requirement this machine does not meet (a
full-range int8 model on a CPU without VNNI) is refused before anything is
fetched. With --check (or check: true in a section), a model is first pulled
into a staging directory and run here through onnxruntime on the reference
inputs that push --bench stored with it (MODEL.onnx.check.json); its outputs
must pass the recorded gates against the FP32 outputs, on this CPU, before
anything is switched. On any failure the pin and the installed files stay as
they were.

Relative model_paths are relative to the application's directory: -C DIR, or
app_dir in the section (relative to the config file), or else the directory
the pin was made in (running from elsewhere is an error that says the fix).
A digest this host installed before whose blobs are in the local cache is
installed from there, with the registry not consulted (sync, rollback CONFIG).
Bytes already at a model's paths that are the pinned ones are adopted, not
downloaded; other bytes in the way are moved aside (NAME.modelctl-kept-TIME).

After a switch, --restart CMD (or restart: in the section) restarts the
application and --health CMD (or health:) must then pass within
--health-timeout (health_timeout:, default 60s); if it does not, the previous
model and pin are put back, the application restarted again, and sync exits 1
with the output of both.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, release, err := pin.LoadLocked(cmd.Context(), args[0], "sync", sf.lockWait, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("sync: %w", err)
			}
			defer release()
			cfg.Dir = sf.appDir
			c, err := cf.client(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			host := hostcpu.Host()
			opts := pin.SyncOptions{Update: update, Signing: signing.Options{Open: c.OrasRepository},
				CPU: &host, CheckAll: check, Check: model.Check(cmd.ErrOrStderr(), ortLib)}
			sf.apply(&opts, cmd.ErrOrStderr())
			if update {
				if t, err := tags.New(tags.Options{Client: c}); err == nil {
					opts.Resolved = func(ctx context.Context, ref client.Reference, d digest.Digest) {
						if err := t.Observe(ctx, ref, d); err != nil {
							fmt.Fprintf(cmd.ErrOrStderr(), "modelctl: warning: client-side tag history: %v\n", err)
						}
					}
				}
			}
			results, err := pin.Sync(cmd.Context(), cfg, c, opts)
			reportDeployments(cmd.Context(), c, &df, args[0], deployed(results), cmd.ErrOrStderr())
			return printSync(cmd, &cf, results, err, args[0], update)
		},
	}
	cmd.Flags().BoolVar(&update, "update", false, "resolve the tags again and rewrite the pins")
	cmd.Flags().BoolVar(&check, "check", false, "run each new model here against its stored reference and gates before switching")
	cmd.Flags().StringVar(&ortLib, "ort-lib", "", "onnxruntime shared library for --check (default: $"+bench.LibraryEnv+", then the bundled or `make ort` one)")
	df.register(cmd.Flags())
	sf.register(cmd.Flags())
	cf.register(cmd.Flags())
	cmd.Flags().Lookup("chunk-size").Hidden = true
	return cmd
}

// serviceFlags are the application's directory and service commands of
// sync and rollback.
type serviceFlags struct {
	appDir        string
	restart       string
	health        string
	healthTimeout time.Duration
	lockWait      time.Duration
}

func (f *serviceFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.appDir, "app-dir", "C", "", "the application's directory: relative model_paths are relative to it (default: app_dir in the section, else the directory the pin was made in)")
	fs.StringVar(&f.restart, "restart", "", "command that restarts the application after a switch (default: restart in the section); runs in the application's directory")
	fs.StringVar(&f.health, "health", "", "command that must pass after the restart, retried until --health-timeout (default: health in the section); on failure the previous model goes back")
	fs.DurationVar(&f.healthTimeout, "health-timeout", 0, "how long the health command may take to pass (default: health_timeout in the section, else 60s)")
	lockWaitFlag(fs, &f.lockWait)
}

// lockWaitFlag registers --lock-wait: how long a command that changes a
// config waits for another one working on it (pin.LoadLocked).
func lockWaitFlag(fs *pflag.FlagSet, d *time.Duration) {
	fs.DurationVar(d, "lock-wait", pin.DefaultLockWait, "how long to wait for another modelctl working on the same config (sync, rollback, pin take turns)")
}

func (f *serviceFlags) apply(o *pin.SyncOptions, log io.Writer) {
	o.Restart, o.Health, o.HealthTimeout, o.Log = f.restart, f.health, f.healthTimeout, log
}

// printSync prints what sync or rollback did, and the outputs of a
// failed service check in full, then returns the one-line error.
func printSync(cmd *cobra.Command, cf *clientFlags, results []pin.SyncResult, err error, config string, update bool) error {
	verb := "sync"
	if cmd.Name() == "rollback" {
		verb = "rollback"
	}
	var he *pin.HealthError
	if errors.As(err, &he) {
		fmt.Fprint(cmd.ErrOrStderr(), he.Outputs())
	}
	if cf.json {
		if perr := xferPrintJSON(cmd.OutOrStdout(), results); perr != nil {
			return perr
		}
	} else {
		out := cmd.OutOrStdout()
		for _, r := range results {
			switch {
			case r.RolledBack:
				fmt.Fprintf(out, "%s: %s failed the service check: back to %s\n", r.Key, short(string(r.Digest)), r.Previous)
			case r.Previous != "" && r.Previous != r.Digest && verb == "rollback":
				fmt.Fprintf(out, "%s: rolled back %s -> %s\n", r.Key, short(string(r.Previous)), r.Digest)
			case r.Previous != "" && r.Previous != r.Digest:
				fmt.Fprintf(out, "%s: updated %s -> %s\n", r.Key, short(string(r.Previous)), r.Digest)
			case r.Previous == "" && r.Status == "installed" && update:
				fmt.Fprintf(out, "%s: pinned %s\n", r.Key, r.Digest)
			}
			for _, f := range r.Adopted {
				fmt.Fprintf(out, "%s: adopted %s (already the pinned bytes: not downloaded)\n", r.Key, f)
			}
			for _, f := range r.Kept {
				fmt.Fprintf(out, "%s: kept %s (other bytes were in the way: moved aside, not overwritten)\n", r.Key, f)
			}
			if r.RolledBack {
				continue
			}
			from := ""
			if r.FromCache {
				from = " from the local cache (the registry was not consulted)"
			}
			fmt.Fprintf(out, "%s: %s %s at %s%s (%d files, %s, transferred %s)\n", r.Key, r.Status, short(string(r.Digest)), r.Path, from, r.Files, xferMiB(r.Size), xferMiB(r.Transferred))
			if r.Restart != nil && r.Restart.OK {
				fmt.Fprintf(out, "%s: restarted (%s) in %s\n", r.Key, r.Restart.Command, r.Restart.Took.Round(time.Millisecond))
			}
			if r.Health != nil && r.Health.OK {
				fmt.Fprintf(out, "%s: healthy (%s) after %s\n", r.Key, r.Health.Command, r.Health.Took.Round(time.Millisecond))
			}
			for _, f := range r.Removed {
				fmt.Fprintf(out, "%s: removed %s (not in the new version)\n", r.Key, f)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, config, oneLine(err))
	}
	return nil
}

// deployed is what each section runs after a sync: a section switched
// back after a failed health check runs its previous digest.
func deployed(results []pin.SyncResult) []pin.SyncResult {
	out := make([]pin.SyncResult, 0, len(results))
	for _, r := range results {
		if r.RolledBack && r.Previous != "" {
			r.Digest, r.Previous = r.Previous, ""
		}
		out = append(out, r)
	}
	return out
}
