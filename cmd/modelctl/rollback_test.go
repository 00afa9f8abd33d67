package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/client/pin"
)

// rollback takes a config file or a reference; a reference that happens
// to end in .yaml is still a reference unless such a file exists.
func TestRollbackArgument(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(cfg, []byte("a: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		arg  string
		want bool
	}{
		{cfg, true},
		{filepath.Join(dir, "missing.yaml"), false},
		{"127.0.0.1:5000/sarai/audio:int8", false},
		{"127.0.0.1:5000/sarai/audio:v.yaml", false},
		{dir, false},
	} {
		if got := isConfigArg(tt.arg); got != tt.want {
			t.Errorf("isConfigArg(%q) = %v, want %v", tt.arg, got, tt.want)
		}
	}
}

// The service flags of sync and rollback land in the sync options.
func TestServiceFlags(t *testing.T) {
	root := newRootCmd()
	for _, name := range []string{"sync", "rollback"} {
		cmd, _, err := root.Find([]string{name})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"app-dir", "restart", "health", "health-timeout"} {
			if cmd.Flags().Lookup(f) == nil {
				t.Errorf("%s has no --%s", name, f)
			}
		}
		if cmd.Flags().ShorthandLookup("C") == nil {
			t.Errorf("%s has no -C", name)
		}
	}
	sf := serviceFlags{appDir: "app", restart: "r", health: "h", healthTimeout: 3 * time.Second}
	var o pin.SyncOptions
	sf.apply(&o, os.Stderr)
	if o.Restart != "r" || o.Health != "h" || o.HealthTimeout != 3*time.Second || o.Log == nil {
		t.Fatalf("%+v", o)
	}
}

// After an automatic rollback the host runs the previous digest, and
// that is what is reported.
func TestDeployedAfterAutomaticRollback(t *testing.T) {
	v1, v2 := digest.FromString("1"), digest.FromString("2")
	got := deployed([]pin.SyncResult{{Key: "a", Digest: v2, Previous: v1, RolledBack: true}, {Key: "b", Digest: v2, Previous: v1}})
	if got[0].Digest != v1 || got[1].Digest != v2 {
		t.Fatalf("%+v", got)
	}
}
