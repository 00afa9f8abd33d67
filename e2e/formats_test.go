package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/modelfile/gguf"
	"github.com/modelctl/modelctl/modelfile/modelfiletest"
	"github.com/modelctl/modelctl/quantize/synth"
)

// An application's config pins more than one model: beside the ONNX audio
// model, an LLM in GGUF, a sharded safetensors set and a Hugging Face-style
// directory. Each is pushed, pulled byte for byte, pinned under its own
// key in one YAML, synced, verified, updated and rolled back.
func TestEveryFormatPinnedInOneConfig(t *testing.T) {
	srv := testenv.StartOurs(t)
	ws := newWFHost(t, "workstation")

	// The models, as a team has them on disk.
	src := t.TempDir()
	onnxDir := filepath.Join(src, "audio")
	graph, err := synth.Generate(onnxDir, synth.Config{WeightBytes: 1 << 20, Name: "audio.onnx"})
	if err != nil {
		t.Fatal(err)
	}
	llmDir := filepath.Join(src, "llm")
	if err := os.MkdirAll(llmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ggufV1 := modelfiletest.GGUF(t, llmDir, "solar.gguf")
	stDir := filepath.Join(src, "embed")
	if err := os.MkdirAll(stDir, 0o755); err != nil {
		t.Fatal(err)
	}
	index := modelfiletest.ShardedSafetensors(t, stDir)
	hfDir := filepath.Join(src, "hf")
	if err := modelfiletest.WriteHFDirectory(hfDir); err != nil {
		t.Fatal(err)
	}

	repo := srv.Addr + "/team/"
	type pushed struct {
		Digest string `json:"digest"`
		Files  []struct {
			Path string `json:"path"`
		} `json:"files"`
	}
	push := func(path, ref string, wantFiles int) string {
		t.Helper()
		var p pushed
		ws.runJSON(&p, "push", path, ref)
		if len(p.Files) != wantFiles {
			t.Fatalf("push %s: %d files %+v, want %d", path, len(p.Files), p.Files, wantFiles)
		}
		return p.Digest
	}
	push(graph, repo+"audio:v1", 2)
	llmV1 := push(ggufV1, repo+"llm:q4", 1)
	push(index, repo+"embed:v1", 1+modelfiletest.WantShards)
	push(hfDir, repo+"hf:v1", modelfiletest.WantHFFiles)

	// inspect shows the format's facts.
	info := ws.run("inspect", repo+"llm:q4")
	for _, want := range []string{modelfiletest.WantGGUFArchitecture, modelfiletest.WantGGUFFileType, "4096"} {
		if !strings.Contains(info, want) {
			t.Errorf("inspect of the GGUF lacks %q:\n%s", want, info)
		}
	}
	info = ws.run("inspect", repo+"embed:v1")
	if !strings.Contains(info, modelfiletest.WantShardedDTypes) {
		t.Errorf("inspect of the safetensors set lacks its dtypes:\n%s", info)
	}
	// A file that is no model is refused unless pushed raw.
	notes := filepath.Join(src, "notes.txt")
	if err := os.WriteFile(notes, []byte("just text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := ws.try("push", notes, repo+"notes:v1"); code == 0 || !strings.Contains(errOut, "raw") {
		t.Errorf("push of a text file: exit %d\n%s", code, errOut)
	}
	ws.run("push", notes, repo+"notes:v1", "--format", "raw")

	// Pulled byte for byte.
	for ref, dir := range map[string]string{repo + "llm:q4": llmDir, repo + "embed:v1": stDir, repo + "hf:v1": hfDir} {
		out := filepath.Join(t.TempDir(), "out")
		ws.run("pull", ref, "-o", out)
		sameDirFiles(t, dir, out)
	}

	// The server: one config, four models.
	host := newWFHost(t, "server")
	cfg := "config/app.yaml"
	cfgText := `audio:
  model_path: "models/audio/audio.onnx"
llm:
  model_path: "models/llm/solar.gguf"
embed:
  model_path: "models/embed/model.safetensors.index.json"
hf:
  model_path: "models/hf"
`
	if err := os.MkdirAll(host.path("config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(host.path(cfg), []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	for key, ref := range map[string]string{"audio": "audio:v1", "llm": "llm:q4", "embed": "embed:v1", "hf": "hf:v1"} {
		host.run("pin", cfg, "--key", key, repo+ref)
	}
	host.run("sync", cfg)
	host.run("verify", cfg)
	sameDirFiles(t, onnxDir, host.path("models/audio"))
	sameDirFiles(t, llmDir, host.path("models/llm"))
	sameDirFiles(t, stDir, host.path("models/embed"))
	sameDirFiles(t, hfDir, host.path("models/hf"))

	// A new GGUF under the same tag; sync --update installs it.
	v2Dir := filepath.Join(t.TempDir(), "llm2")
	if err := os.MkdirAll(v2Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := modelfiletest.LlamaGGUF()
	for i := range spec.KVs {
		if spec.KVs[i].Key == "general.name" {
			spec.KVs[i].Value = "tiny-llama-test-v2"
		}
	}
	spec.KVs = append(spec.KVs, modelfiletest.GGUFKV{Key: "general.version", Type: gguf.TypeString, Value: "2"})
	ggufV2 := filepath.Join(v2Dir, "solar.gguf")
	if err := modelfiletest.WriteGGUF(ggufV2, spec); err != nil {
		t.Fatal(err)
	}
	llmV2 := push(ggufV2, repo+"llm:q4", 1)
	if llmV2 == llmV1 {
		t.Fatal("the second GGUF has the first's digest")
	}
	host.run("sync", cfg, "--update")
	host.run("verify", cfg)
	sameFile(t, ggufV2, host.path("models/llm/solar.gguf"))
	if !strings.Contains(string(wfReadFile(t, host.path(cfg))), llmV2) {
		t.Fatalf("the pin did not move to %s:\n%s", llmV2, wfReadFile(t, host.path(cfg)))
	}

	// Roll the tag back; sync follows from the cache.
	host.run("rollback", repo+"llm:q4")
	host.run("sync", cfg, "--update")
	host.run("verify", cfg)
	sameFile(t, ggufV1, host.path("models/llm/solar.gguf"))
	if !strings.Contains(string(wfReadFile(t, host.path(cfg))), llmV1) {
		t.Fatalf("the pin did not return to %s:\n%s", llmV1, wfReadFile(t, host.path(cfg)))
	}

	// verify re-hashes every file of every format: a changed shard fails it.
	shard := host.path("models/embed/" + modelfiletest.ShardName("model", 2, 3))
	b, err := os.ReadFile(shard)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(shard, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := host.try("verify", cfg); code == 0 {
		t.Fatalf("verify passed with a changed shard:\n%s\n%s", out, errOut)
	}
}

// sameDirFiles fails unless every regular file below want is in got with
// the same bytes.
func sameDirFiles(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.Walk(want, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		sameFile(t, p, filepath.Join(got, rel))
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("compare %s with %s: %v (%d files)", want, got, err, n)
	}
}
