package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/registry"
	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

// testModel is one artifact a test pushes.
type testModel struct {
	Repo, Tag   string
	Files       map[string]string
	Precision   string
	Created     time.Time
	Annotations map[string]string
}

// modelManifest builds a ModelPack manifest and config for m and the blobs
// they reference.
func modelManifest(t testing.TB, m testModel) (manifest []byte, blobs map[digest.Digest][]byte) {
	t.Helper()
	blobs = map[digest.Digest][]byte{}
	var layers []v1.Descriptor
	var diffIDs []digest.Digest
	for _, path := range sortedKeysOf(m.Files) {
		b := []byte(m.Files[path])
		d := digest.FromBytes(b)
		blobs[d] = b
		diffIDs = append(diffIDs, d)
		layers = append(layers, v1.Descriptor{MediaType: manifests.MediaTypeWeightRaw, Digest: d, Size: int64(len(b)),
			Annotations: map[string]string{manifests.AnnotationFilepath: path, v1.AnnotationTitle: path}})
	}
	created := m.Created
	cfg, err := manifests.MarshalConfig(&manifests.Model{
		Descriptor: manifests.ModelDescriptor{Name: m.Repo, CreatedAt: &created},
		ModelFS:    manifests.ModelFS{Type: "layers", DiffIDs: diffIDs},
		Config:     manifests.ModelConfig{Format: manifests.FormatONNX, Precision: m.Precision},
	})
	if err != nil {
		t.Fatal(err)
	}
	cd := digest.FromBytes(cfg)
	blobs[cd] = cfg
	ann := manifests.CreatedAnnotations(m.Created)
	for k, v := range m.Annotations {
		ann[k] = v
	}
	man := v1.Manifest{
		MediaType:    v1.MediaTypeImageManifest,
		ArtifactType: manifests.ArtifactTypeModel,
		Config:       v1.Descriptor{MediaType: manifests.MediaTypeConfig, Digest: cd, Size: int64(len(cfg))},
		Layers:       layers,
		Annotations:  ann,
	}
	man.SchemaVersion = 2
	body, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	return body, blobs
}

func sortedKeysOf(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// storeModel writes m through the storage layer and returns its digest.
func storeModel(t testing.TB, s *storage.Store, m testModel) digest.Digest {
	t.Helper()
	d, err := tryStoreModel(t, s, m)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func tryStoreModel(t testing.TB, s *storage.Store, m testModel) (digest.Digest, error) {
	ctx := context.Background()
	body, blobs := modelManifest(t, m)
	for d, b := range blobs {
		if _, err := s.StatBlob(ctx, m.Repo, d); err == nil {
			continue
		}
		if _, err := s.PutBlob(ctx, m.Repo, d, bytes.NewReader(b)); err != nil {
			return "", err
		}
	}
	info, err := s.PutManifest(ctx, storage.PutManifestRequest{Name: m.Repo, Reference: m.Tag, ContentType: v1.MediaTypeImageManifest, Body: body, User: "tester"})
	if err != nil {
		return "", err
	}
	return info.Digest, nil
}

// pushModel pushes m through the registry's HTTP API, as a client does,
// with basic credentials when user is set.
func pushModel(t testing.TB, base, user, pass string, m testModel) digest.Digest {
	t.Helper()
	body, blobs := modelManifest(t, m)
	for d, b := range blobs {
		do(t, http.MethodPost, base+"/v2/"+m.Repo+"/blobs/uploads/?digest="+string(d), user, pass, "application/octet-stream", b, http.StatusCreated)
	}
	resp := do(t, http.MethodPut, base+"/v2/"+m.Repo+"/manifests/"+m.Tag, user, pass, v1.MediaTypeImageManifest, body, http.StatusCreated)
	return digest.Digest(resp.Header.Get("Docker-Content-Digest"))
}

func do(t testing.TB, method, url, user, pass, ctype string, body []byte, want int) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, url, resp.StatusCode, want, b)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

// testServer is a registry with the UI over a temporary filesystem store.
type testServer struct {
	*httptest.Server
	Store *storage.Store
	UI    *Handler
}

func newTestServer(t testing.TB, auth Authorizer, regAuth registry.Authorizer) *testServer {
	t.Helper()
	drv, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newTestServerOn(t, drv, auth, regAuth)
}

// newTestServerOn is newTestServer over another driver.
func newTestServerOn(t testing.TB, drv storage.Driver, auth Authorizer, regAuth registry.Authorizer) *testServer {
	t.Helper()
	st := storage.NewStore(drv)
	h, err := New(Config{Store: st, Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(registry.Config{Store: st, Auth: regAuth, UI: h, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &testServer{Server: ts, Store: st, UI: h}
}

func get(t testing.TB, c *http.Client, url string, want int) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d\n%s", url, resp.StatusCode, want, b)
	}
	return string(b)
}

func mustContain(t testing.TB, page string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	if t.Failed() {
		t.Fatalf("page:\n%s", page)
	}
}

func benchAnnotations(p50, speedup, sizeRatio, cos float64, passed bool) map[string]string {
	return map[string]string{
		manifests.AnnotationBenchPrefix + "model.latency_ms.p50": fmt.Sprint(p50),
		manifests.AnnotationBenchPrefix + "speedup":              fmt.Sprint(speedup),
		manifests.AnnotationBenchPrefix + "size_ratio":           fmt.Sprint(sizeRatio),
		manifests.AnnotationBenchPrefix + "quality_worst.cosine": fmt.Sprint(cos),
		manifests.AnnotationBenchPrefix + "gates.passed":         fmt.Sprint(passed),
	}
}
