package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

// A manifest PUT may name only so many tags: each is a tag write and a
// history record, and the number was bounded only by the URL's length
// (tens of thousands of one-letter tags).
func TestManifestPutTagParametersAreBounded(t *testing.T) {
	fs, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, fs)
	cfg := []byte("{}")
	resp, err := http.Post(ts.URL+"/v2/r/blobs/uploads/?digest=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "", bytes.NewReader(cfg))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`
	put := func(n int) *http.Response {
		q := url.Values{}
		for i := 0; i < n; i++ {
			q.Add("tag", "t"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676%26)))
		}
		req, _ := http.NewRequest(http.MethodPut, ts.URL+"/v2/r/manifests/sha256:"+sha256hex(manifest)+"?"+q.Encode(), strings.NewReader(manifest))
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := put(MaxTagParameters); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT with %d tags: %d, want 201", MaxTagParameters, resp.StatusCode)
	}
	if resp := put(5000); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("PUT with 5000 tags: %d, want 400", resp.StatusCode)
	}
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
