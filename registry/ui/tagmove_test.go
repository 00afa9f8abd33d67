package ui

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

// Two registries serve one directory (as two instances serve one bucket).
// A tag moved, rolled back or deleted through one of them shows on the
// other's pages at the next render: the repository page, the repository
// list and the artifact pages read the tag index, which every move keeps.
func TestUISeesTagMovesOfAnotherRegistry(t *testing.T) {
	root := t.TempDir()
	open := func() *testServer {
		drv, err := filesystem.New(root)
		if err != nil {
			t.Fatal(err)
		}
		return newTestServerOn(t, drv, nil, nil)
	}
	a, b := open(), open()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v1 := storeModel(t, b.Store, testModel{Repo: "r/m", Tag: "v1", Created: t0, Files: map[string]string{"f": "1"}})
	v2 := storeModel(t, b.Store, testModel{Repo: "r/m", Tag: "v2", Created: t0.Add(time.Hour), Files: map[string]string{"f": "2"}})
	row := func(page, tag string) string {
		i := strings.Index(page, `<tr data-tag="`+tag+`"`)
		if i < 0 {
			return ""
		}
		end := strings.Index(page[i:], "</tr>")
		return page[i : i+end]
	}
	c := a.Client()
	repo := a.URL + "/ui/r/r/m"
	move := func(to, from string, want int) {
		t.Helper()
		body := `{"digest":"` + to + `"`
		if from != "" {
			body += `,"from":"` + from + `"`
		}
		req, _ := http.NewRequest(http.MethodPut, b.URL+"/v2/r/m/_modelctl/tags/prod", bytes.NewReader([]byte(body+"}")))
		req.Header.Set("Content-Type", "application/json")
		resp, err := b.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("move prod to %s: %d, want %d", to, resp.StatusCode, want)
		}
	}
	// a renders first, so that its later renders read the index.
	if r := row(get(t, c, repo, http.StatusOK), "prod"); r != "" {
		t.Fatalf("prod shown before it exists: %s", r)
	}
	for i, step := range []struct {
		to, from string
		want     string
	}{
		{to: string(v1), want: string(v1)},
		{to: string(v2), want: string(v2)},
		{to: string(v1), from: string(v2), want: string(v1)}, // rollback
	} {
		move(step.to, step.from, http.StatusOK)
		page := get(t, c, repo, http.StatusOK)
		if r := row(page, "prod"); !strings.Contains(r, `title="`+step.want+`"`) {
			t.Fatalf("step %d: a's repository page shows prod as %q, want %s", i, r, step.want)
		}
		for _, v := range []string{string(v1), string(v2)} {
			art := get(t, c, a.URL+a.UI.artifactURL("r/m", digest.Digest(v)), http.StatusOK)
			tags := art[strings.Index(art, `id="artifact-tags">`):]
			tags = tags[:strings.Index(tags, "</td>")]
			if has := strings.Contains(tags, "prod"); has != (step.want == v) {
				t.Fatalf("step %d: a's artifact page of %s has tags %q, want prod: %v", i, v, tags, step.want == v)
			}
		}
	}
	// Deleting the manifest deletes the tags that point at it.
	req, _ := http.NewRequest(http.MethodDelete, b.URL+"/v2/r/m/manifests/"+string(v1), nil)
	resp, err := b.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete v1: %d", resp.StatusCode)
	}
	page := get(t, c, repo, http.StatusOK)
	if row(page, "prod") != "" || row(page, "v1") != "" || row(page, "v2") == "" {
		t.Fatalf("after v1's deletion a shows prod %q, v1 %q, v2 %q", row(page, "prod"), row(page, "v1"), row(page, "v2"))
	}
	if list := get(t, c, a.URL+"/ui/", http.StatusOK); !strings.Contains(list, "r/m") {
		t.Fatalf("repository list lacks r/m:\n%s", list)
	}
}
