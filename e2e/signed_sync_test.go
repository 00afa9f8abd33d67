package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/quantize/synth"
)

// TestSyncRequiresSignature: a section with require_signature installs only
// an artifact signed by its signing_key; unsigned or wrongly signed ones are
// refused before any file is written.
func TestSyncRequiresSignature(t *testing.T) {
	env, keys, refs := signedArtifacts(t)
	for _, tc := range []struct {
		tag    string
		wantOK bool
		why    string
	}{
		{"unsigned", false, "signature"},
		{"other", false, "signature"},
		{"signed", true, ""},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			dir := t.TempDir()
			modelDir := filepath.Join(dir, "models")
			cfg := filepath.Join(dir, "app.yaml")
			// signing_key is relative to the config file.
			if err := os.WriteFile(filepath.Join(dir, "release.pub"), mustRead(t, filepath.Join(keys, "release.pub")), 0o644); err != nil {
				t.Fatal(err)
			}
			yaml := "# the audio model\naudio:\n  model_path: \"" + filepath.ToSlash(filepath.Join(modelDir, "model.onnx")) + "\"\n" +
				"  require_signature: true\n  signing_key: release.pub\n"
			if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			mustMC(t, env, "", "pin", cfg, "--key", "audio", refs[tc.tag])
			out, errOut, err := mc(t, env, "", "sync", cfg)
			entries, _ := os.ReadDir(modelDir)
			if !tc.wantOK {
				if err == nil || !strings.Contains(errOut, tc.why) {
					t.Fatalf("sync of the %s artifact: err %v, stderr %q; want a refusal naming the %s", tc.tag, err, errOut, tc.why)
				}
				if len(entries) != 0 {
					t.Fatalf("refused sync wrote %d entries into %s", len(entries), modelDir)
				}
				return
			}
			if err != nil {
				t.Fatalf("sync of the signed artifact: %v\n%s%s", err, out, errOut)
			}
			if _, err := os.Stat(filepath.Join(modelDir, "model.onnx")); err != nil {
				t.Fatalf("signed artifact not installed: %v", err)
			}
			mustMC(t, env, "", "verify", cfg)
		})
	}
}

// signedArtifacts pushes three models to a fresh registry: "signed" by the
// release key, "other" signed by another key, "unsigned".
func signedArtifacts(t *testing.T) (env []string, keys string, refs map[string]string) {
	t.Helper()
	srv := testenv.StartServe(t, nil, "--root", t.TempDir(), "--log-level", "warn")
	env = []string{"DOCKER_CONFIG=" + t.TempDir(), "MODELCTL_CACHE=" + t.TempDir()}
	keys = t.TempDir()
	mustMC(t, env, "", "keygen", filepath.Join(keys, "release"))
	mustMC(t, env, "", "keygen", filepath.Join(keys, "other"))
	refs = map[string]string{}
	for i, name := range []string{"signed", "unsigned", "other"} {
		model, err := synth.Generate(t.TempDir(), synth.Config{WeightBytes: 256 << 10, Seed: uint64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		refs[name] = srv.Addr + "/models/audio:" + name
		mustMC(t, env, "", "push", model, refs[name])
	}
	mustMC(t, env, "", "sign", refs["signed"], "--key", filepath.Join(keys, "release.key"))
	mustMC(t, env, "", "sign", refs["other"], "--key", filepath.Join(keys, "other.key"))
	return env, keys, refs
}

// TestPullRequiresSignature: pull --require-signature installs only what the
// given key signed, and writes nothing otherwise.
func TestPullRequiresSignature(t *testing.T) {
	env, keys, refs := signedArtifacts(t)
	pub := filepath.Join(keys, "release.pub")
	for _, tag := range []string{"unsigned", "other"} {
		dir := filepath.Join(t.TempDir(), "out")
		_, errOut, err := mc(t, env, "", "pull", refs[tag], "-o", dir, "--require-signature", "--signature-key", pub)
		if err == nil || !strings.Contains(errOut, "signature") {
			t.Fatalf("pull of the %s artifact: err %v, stderr %q; want a signature refusal", tag, err, errOut)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("refused pull of %s created %s (%v)", tag, dir, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "out")
	mustMC(t, env, "", "pull", refs["signed"], "-o", dir, "--require-signature", "--signature-key", pub)
	if _, err := os.Stat(filepath.Join(dir, "model.onnx")); err != nil {
		t.Fatalf("signed pull installed nothing: %v", err)
	}
	// A key without the requirement is a mistake, not a silent no-op.
	if _, _, err := mc(t, env, "", "pull", refs["signed"], "-o", t.TempDir(), "--signature-key", pub); err == nil {
		t.Fatal("pull with --signature-key but no --require-signature succeeded")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSyncRequiresSignatureOfInstalled: a model installed before the
// section required a signature is not "up to date" under the new policy
// until its signature verifies with the section's key (issue 15, 6); once
// it has, later syncs trust the record (offline, for that key).
func TestSyncRequiresSignatureOfInstalled(t *testing.T) {
	env, keys, refs := signedArtifacts(t)
	for _, tc := range []struct {
		tag, key string
		wantOK   bool
	}{
		{"unsigned", "release.pub", false},
		{"other", "release.pub", false},
		{"signed", "other.pub", false},
		{"signed", "release.pub", true},
	} {
		t.Run(tc.tag+"/"+tc.key, func(t *testing.T) {
			dir := t.TempDir()
			modelDir := filepath.Join(dir, "models")
			cfg := filepath.Join(dir, "app.yaml")
			if err := os.WriteFile(filepath.Join(dir, tc.key), mustRead(t, filepath.Join(keys, tc.key)), 0o644); err != nil {
				t.Fatal(err)
			}
			yaml := "audio:\n  model_path: \"" + filepath.ToSlash(filepath.Join(modelDir, "model.onnx")) + "\"\n"
			if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			mustMC(t, env, "", "pin", cfg, "--key", "audio", refs[tc.tag])
			mustMC(t, env, "", "sync", cfg)
			// Now the section requires a signature.
			b := mustRead(t, cfg)
			b = append(b, []byte("  require_signature: true\n  signing_key: "+tc.key+"\n")...)
			if err := os.WriteFile(cfg, b, 0o644); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := mc(t, env, "", "sync", cfg)
			if !tc.wantOK {
				if err == nil || !strings.Contains(errOut, "signature required") {
					t.Fatalf("sync of the installed %s model under key %s: err %v\n%s%s; want a refusal", tc.tag, tc.key, err, out, errOut)
				}
				return
			}
			if err != nil || !strings.Contains(out, "up to date") {
				t.Fatalf("sync of the installed signed model: %v\n%s%s", err, out, errOut)
			}
			// The verification is recorded with the key that did it.
			rec, _ := filepath.Glob(filepath.Join(modelDir, ".modelctl", "pins", "*.signature"))
			if len(rec) != 1 {
				t.Fatalf("signature records %v, want one", rec)
			}
			if out, errOut, err := mc(t, env, "", "sync", cfg); err != nil || !strings.Contains(out, "up to date") {
				t.Fatalf("second sync: %v\n%s%s", err, out, errOut)
			}
		})
	}
}
