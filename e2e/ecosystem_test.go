package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/manifests"
)

// Artifacts other tools push, pulled by modelctl byte for byte: a plain
// `oras push` (its defaults), a ModelPack artifact with a tar+gzip weight
// layer, and a KitOps ModelKit, each built here with oras and tar as those
// tools lay them out.

// ecoFiles writes a small model directory (a graph, its data, a README)
// and returns the directory and the relative paths.
func ecoFiles(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]int{"model.onnx": 4 << 10, "model.onnx.data": 3<<20 + 17, "docs/README.md": 900}
	var names []string
	for name, size := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size)
		_, _ = rand.Read(b)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return dir, names
}

// tarGz packs the named files of dir into a tar+gzip; it returns the
// archive and the digest of the uncompressed tar (the diffId).
func tarGz(t *testing.T, dir string, names ...string) ([]byte, digest.Digest) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return gz(t, tarBuf.Bytes()), digest.FromBytes(tarBuf.Bytes())
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// orasCLI runs the oras CLI in dir.
func orasCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "oras"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("oras %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sameTree fails unless every name has the same bytes under a and b.
func sameTree(t *testing.T, a, b string, names []string) {
	t.Helper()
	for _, n := range names {
		sameFile(t, filepath.Join(a, filepath.FromSlash(n)), filepath.Join(b, filepath.FromSlash(n)))
	}
}

// modelPackConfig is a ModelPack config for layers with these diffIds.
func modelPackConfig(t *testing.T, diffIDs ...digest.Digest) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"descriptor": map[string]any{"name": "eco"},
		"config":     map[string]any{"format": "onnx"},
		"modelfs":    map[string]any{"type": "layers", "diffIds": diffIDs},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPullPlainOrasArtifact(t *testing.T) {
	srv := testenv.StartOurs(t)
	dir, names := ecoFiles(t)
	ref := srv.Addr + "/team/plain:v1"
	// oras' defaults: artifactType application/vnd.unknown.artifact.v1,
	// layers named by org.opencontainers.image.title.
	orasCLI(t, dir, append([]string{"push", "--plain-http", ref}, names...)...)

	c := newCLI(t)
	out := filepath.Join(t.TempDir(), "out")
	c.run("pull", ref, "-o", out)
	sameTree(t, dir, out, names)
	info := c.run("inspect", ref)
	if !strings.Contains(info, "artifact of files") || !strings.Contains(info, "model.onnx.data") {
		t.Errorf("inspect of a plain oras artifact:\n%s", info)
	}
}

// pushModelPackTarGz pushes the named files of dir with oras as one
// ModelPack tar+gzip weight layer, with a ModelPack config declaring its
// diffId, and returns ref.
func pushModelPackTarGz(t *testing.T, ref, dir string, names []string) string {
	t.Helper()
	layer, diffID := tarGz(t, dir, names...)
	work := t.TempDir()
	writeFile(t, work, "model.tar.gz", layer)
	writeFile(t, work, "config.json", modelPackConfig(t, diffID))
	orasCLI(t, work, "push", "--plain-http", "--artifact-type", manifests.ArtifactTypeModel,
		"--config", "config.json:"+manifests.MediaTypeConfig, ref, "model.tar.gz:"+manifests.MediaTypeWeightTarGzip)
	return ref
}

func TestPullModelPackTarGzip(t *testing.T) {
	srv := testenv.StartOurs(t)
	dir, names := ecoFiles(t)
	ref := pushModelPackTarGz(t, srv.Addr+"/team/modelpack:v1", dir, names)

	c := newCLI(t)
	out := filepath.Join(t.TempDir(), "out")
	var res struct {
		Files []struct{ Path, Status string }
	}
	c.runJSON(&res, "pull", ref, "-o", out)
	sameTree(t, dir, out, names)
	if len(res.Files) != len(names) {
		t.Errorf("pull reported %+v, want the %d unpacked files", res.Files, len(names))
	}
	// A second pull of the same artifact is all cached and changes nothing.
	c.run("pull", ref, "-o", out)
	sameTree(t, dir, out, names)
}

func TestPullModelKit(t *testing.T) {
	srv := testenv.StartOurs(t)
	dir, names := ecoFiles(t)
	model, modelDiff := tarGz(t, dir, "model.onnx", "model.onnx.data")
	docs, docsDiff := tarGz(t, dir, "docs/README.md")
	kitfile, err := json.Marshal(map[string]any{
		"manifestVersion": "1.0.0",
		"package":         map[string]any{"name": "eco-kit", "version": "1.0.0", "authors": []string{"team"}},
		"model": map[string]any{"name": "audio", "path": "model.onnx", "framework": "onnx",
			"digest": digest.FromBytes(model).String(), "diffId": modelDiff.String()},
		"docs": []map[string]any{{"path": "docs/README.md", "digest": digest.FromBytes(docs).String(), "diffId": docsDiff.String()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	writeFile(t, work, "model.tar.gz", model)
	writeFile(t, work, "docs.tar.gz", docs)
	writeFile(t, work, "kitfile.json", kitfile)
	ref := srv.Addr + "/team/kit:v1"
	orasCLI(t, work, "push", "--plain-http", "--config", "kitfile.json:"+manifests.MediaTypeKitConfig, ref,
		"model.tar.gz:application/vnd.kitops.modelkit.model.v1.tar+gzip",
		"docs.tar.gz:application/vnd.kitops.modelkit.docs.v1.tar+gzip")

	c := newCLI(t)
	out := filepath.Join(t.TempDir(), "out")
	c.run("pull", ref, "-o", out)
	sameTree(t, dir, out, names)
	info := c.run("inspect", ref)
	if !strings.Contains(info, "KitOps ModelKit") || !strings.Contains(info, "eco-kit") {
		t.Errorf("inspect of a ModelKit shows no Kitfile:\n%s", info)
	}
}

// pushRaw stores a manifest and its blobs on a registry with plain HTTP
// requests: for artifacts no tool here writes (an unnamed layer).
func pushRaw(t *testing.T, addr, repo, tag string, mediaType string, manifest []byte, blobs ...[]byte) {
	t.Helper()
	for _, b := range blobs {
		resp, err := http.Post(fmt.Sprintf("http://%s/v2/%s/blobs/uploads/", addr, repo), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "http") {
			loc = "http://" + addr + loc
		}
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+digest.FromBytes(b).String(), bytes.NewReader(b))
		resp, err = http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("put blob: %v %v", err, resp.Status)
		}
		resp.Body.Close()
	}
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v2/%s/manifests/%s", addr, repo, tag), bytes.NewReader(manifest))
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("put manifest: %v %v %s", err, resp.Status, b)
	}
	resp.Body.Close()
}

func descriptor(mediaType string, b []byte, ann map[string]string) map[string]any {
	d := map[string]any{"mediaType": mediaType, "digest": digest.FromBytes(b).String(), "size": len(b)}
	if ann != nil {
		d["annotations"] = ann
	}
	return d
}

func TestPullUnnamedLayerAndImages(t *testing.T) {
	srv := testenv.StartOurs(t)
	c := newCLI(t)
	data := make([]byte, 70000)
	_, _ = rand.Read(data)
	empty := []byte("{}")

	// One layer, no name: refused with the way out, then pulled with it.
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": manifests.MediaTypeImageManifest,
		"artifactType": "application/vnd.example.blob",
		"config":       descriptor("application/vnd.oci.empty.v1+json", empty, nil),
		"layers":       []any{descriptor("application/octet-stream", data, nil)}})
	pushRaw(t, srv.Addr, "team/unnamed", "v1", manifests.MediaTypeImageManifest, m, empty, data)
	out := filepath.Join(t.TempDir(), "out")
	_, stderr, err := c.try("pull", srv.Addr+"/team/unnamed:v1", "-o", out)
	if err == nil || !strings.Contains(stderr, "--name") {
		t.Fatalf("pull of an unnamed layer: %v\n%s", err, stderr)
	}
	if _, err := os.Lstat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused pull created the target: %v", err)
	}
	c.run("pull", srv.Addr+"/team/unnamed:v1", "-o", out, "--name", "weights.bin")
	got, err := os.ReadFile(filepath.Join(out, "weights.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("pulled --name weights.bin: %v", err)
	}

	// A container image and an index are refused, saying what they are.
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := gz(t, []byte("not really a root filesystem"))
	img, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": manifests.MediaTypeImageManifest,
		"config": descriptor("application/vnd.oci.image.config.v1+json", cfg, nil),
		"layers": []any{descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer, nil)}})
	pushRaw(t, srv.Addr, "team/image", "v1", manifests.MediaTypeImageManifest, img, cfg, layer)
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{descriptor(manifests.MediaTypeImageManifest, img, nil)}})
	pushRaw(t, srv.Addr, "team/image", "index", "application/vnd.oci.image.index.v1+json", idx)
	for tag, want := range map[string]string{"v1": "container image", "index": "index"} {
		_, stderr, err := c.try("pull", srv.Addr+"/team/image:"+tag, "-o", out+"-"+tag)
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("pull of the %s: %v\n%s", want, err, stderr)
		}
	}
}

// hostileEntry is one tar entry of a hostile archive.
type hostileEntry struct {
	hdr  tar.Header
	body []byte
}

func hostileTar(t *testing.T, entries []hostileEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if len(e.body) > 0 {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Hostile archives are refused before anything is written: the target
// keeps exactly what it had.
func TestPullRefusesHostileArchives(t *testing.T) {
	srv := testenv.StartOurs(t)
	c := newCLI(t)
	reg := func(name string, body []byte) hostileEntry {
		return hostileEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg}, body: body}
	}
	ok := []byte("fine")
	bomb := make([]byte, 200<<20) // 200 MiB of zeros: about 200 KiB of gzip
	cases := []struct {
		name    string
		entries []hostileEntry
	}{
		{"dotdot", []hostileEntry{reg("ok.bin", ok), reg("../escape.bin", ok)}},
		{"absolute", []hostileEntry{reg("/tmp/abs.bin", ok)}},
		{"symlink-out", []hostileEntry{{hdr: tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../../etc/passwd"}}}},
		{"hardlink", []hostileEntry{reg("a.bin", ok), {hdr: tar.Header{Name: "b.bin", Typeflag: tar.TypeLink, Linkname: "a.bin"}}}},
		{"device", []hostileEntry{{hdr: tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}}},
		{"fifo", []hostileEntry{{hdr: tar.Header{Name: "fifo", Typeflag: tar.TypeFifo}}}},
		{"duplicate", []hostileEntry{reg("same.bin", ok), reg("same.bin", []byte("other"))}},
		{"through-symlink", []hostileEntry{{hdr: tar.Header{Name: "sub", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}}, reg("sub/x.bin", ok)}},
		{"zip-bomb", []hostileEntry{reg("zeros.bin", bomb)}},
	}
	target := t.TempDir()
	before := writeFile(t, target, "keep.txt", []byte("the application's file"))
	snapshot := func() string {
		var b strings.Builder
		_ = filepath.Walk(target, func(p string, fi os.FileInfo, err error) error {
			if err == nil {
				fmt.Fprintf(&b, "%s %d %v\n", p, fi.Size(), fi.Mode())
			}
			return nil
		})
		return b.String()
	}
	want := snapshot()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := hostileTar(t, tc.entries)
			layer := gz(t, raw)
			cfg := modelPackConfig(t, digest.FromBytes(raw))
			m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": manifests.MediaTypeImageManifest,
				"artifactType": manifests.ArtifactTypeModel,
				"config":       descriptor(manifests.MediaTypeConfig, cfg, nil),
				"layers":       []any{descriptor(manifests.MediaTypeWeightTarGzip, layer, map[string]string{"org.opencontainers.image.title": "model.tar.gz"})}})
			pushRaw(t, srv.Addr, "hostile/"+tc.name, "v1", manifests.MediaTypeImageManifest, m, cfg, layer)
			_, stderr, err := c.try("pull", srv.Addr+"/hostile/"+tc.name+":v1", "-o", target)
			if err == nil {
				t.Fatalf("pull of a %s archive succeeded", tc.name)
			}
			t.Logf("%s: %s", tc.name, strings.TrimSpace(stderr))
			if got := snapshot(); got != want {
				t.Fatalf("the target changed:\n%s\nwant\n%s", got, want)
			}
			if b, _ := os.ReadFile(before); string(b) != "the application's file" {
				t.Fatalf("keep.txt changed")
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(target), "escape.bin")); err == nil {
				t.Fatalf("a file escaped the target")
			}
		})
	}
}

// skopeo and crane copy modelctl's artifacts between modelctl serve and
// CNCF distribution, and modelctl pulls the copies byte for byte.
func TestCopyWithSkopeoAndCrane(t *testing.T) {
	ours, dist := testenv.StartOurs(t), testenv.StartDistribution(t)
	dir, _ := ecoFiles(t)
	c := newCLI(t)
	model := filepath.Join(dir, "model.onnx")
	// A graph that is not ONNX is pushed as one raw file.
	c.run("push", model, ours.Addr+"/team/m:v1", "--format", "raw")
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
	}
	run(systemTool(t, "skopeo"), "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
		"docker://"+ours.Addr+"/team/m:v1", "docker://"+dist.Addr+"/team/m:v1")
	run(testenv.Tool(t, "crane"), "copy", "--insecure", dist.Addr+"/team/m:v1", ours.Addr+"/team/back:v1")
	for _, ref := range []string{dist.Addr + "/team/m:v1", ours.Addr + "/team/back:v1"} {
		out := filepath.Join(t.TempDir(), "out")
		c.run("pull", ref, "-o", out)
		sameFile(t, model, filepath.Join(out, "model.onnx"))
	}
	a, b := c.run("inspect", ours.Addr+"/team/m:v1", "--json"), c.run("inspect", ours.Addr+"/team/back:v1", "--json")
	var da, db struct{ Digest string }
	_ = json.Unmarshal([]byte(a), &da)
	_ = json.Unmarshal([]byte(b), &db)
	if da.Digest == "" || da.Digest != db.Digest {
		t.Errorf("the round trip changed the manifest: %s -> %s", da.Digest, db.Digest)
	}
}

// systemTool is a tool make tools installs from Debian (on the PATH).
func systemTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run `make tools` first (%v)", name, err)
	}
	return p
}

// An application pins a ModelPack artifact with a tar+gzip layer and a
// ModelKit like any model: sync unpacks it next to model_path, verify
// re-hashes every unpacked file.
func TestSyncArchiveArtifacts(t *testing.T) {
	srv := testenv.StartOurs(t)
	dir, names := ecoFiles(t)
	ref := pushModelPackTarGz(t, srv.Addr+"/team/packed:v1", dir, names)

	host := newWFHost(t, "server")
	cfg := "config/app.yaml"
	if err := os.MkdirAll(host.path("config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(host.path(cfg), []byte("eco:\n  model_path: \"models/eco/model.onnx\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host.run("pin", cfg, "--key", "eco", ref)
	host.run("sync", cfg)
	host.run("verify", cfg)
	sameTree(t, dir, host.path("models/eco"), names)
	// A changed unpacked file fails verify.
	p := host.path("models/eco/docs/README.md")
	if err := os.WriteFile(p, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, code := host.try("verify", cfg); code == 0 {
		t.Fatal("verify passed with a changed unpacked file")
	}
}
