package ui

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/manifests"
	"github.com/modelctl/modelctl/registry"
	"github.com/modelctl/modelctl/registry/auth"
	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
	"github.com/modelctl/modelctl/signing"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// The UI recognises signatures by what package signing writes.
func TestSignatureConstantsMatchSigning(t *testing.T) {
	if bundleMediaType != signing.BundleMediaType || annotationKeyID != signing.AnnotationKeyID {
		t.Fatalf("ui has %q/%q, signing writes %q/%q", bundleMediaType, annotationKeyID, signing.BundleMediaType, signing.AnnotationKeyID)
	}
}

const xss = `<script>alert("pwned")</script><img src=x onerror=alert(1)>`

// pushLineage pushes an FP32 model and an INT8 child of it, the child with
// a hostile annotation, and returns both digests.
func pushLineage(t *testing.T, base, user, pass, repo string) (fp32, int8 digest.Digest) {
	t.Helper()
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	fp32 = pushModel(t, base, user, pass, testModel{Repo: repo, Tag: "fp32", Precision: "fp32", Created: t0,
		Files: map[string]string{"model.onnx": "graph-fp32", "model.onnx.data": strings.Repeat("w", 4000)},
		Annotations: map[string]string{manifests.AnnotationBenchPrefix + "model.latency_ms.p50": "8.5",
			manifests.AnnotationBenchPrefix + "model.size_bytes": "4010"}})
	ann := benchAnnotations(3.9, 2.18, 0.25, 0.9997, true)
	ann[manifests.AnnotationParentDigest] = string(fp32)
	ann[manifests.AnnotationParentRef] = "registry.lan:5000/" + repo + ":fp32"
	ann[manifests.AnnotationQuantizationMethod] = "dynamic"
	ann["org.example.note"] = xss
	int8 = pushModel(t, base, user, pass, testModel{Repo: repo, Tag: "int8", Precision: "int8", Created: t0.Add(2 * time.Hour),
		Files:       map[string]string{"model.onnx": "graph-int8", "model.onnx.data": strings.Repeat("q", 1000)},
		Annotations: ann})
	return fp32, int8
}

func TestPagesShowWhatWasPushed(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	fp32, int8 := pushLineage(t, ts.URL, "", "", "sarai/audio-core")
	// The tag moves to the new version and back: a rollback.
	do(t, http.MethodPut, ts.URL+"/v2/sarai/audio-core/_modelctl/tags/prod", "", "", "application/json", []byte(`{"digest":"`+string(fp32)+`"}`), http.StatusOK)
	do(t, http.MethodPut, ts.URL+"/v2/sarai/audio-core/_modelctl/tags/prod", "", "", "application/json", []byte(`{"digest":"`+string(int8)+`"}`), http.StatusOK)
	do(t, http.MethodPut, ts.URL+"/v2/sarai/audio-core/_modelctl/tags/prod", "", "", "application/json", []byte(`{"digest":"`+string(fp32)+`"}`), http.StatusOK)
	c := ts.Client()

	home := get(t, c, ts.URL+"/ui/", http.StatusOK)
	mustContain(t, home, `href="/ui/r/sarai/audio-core"`, "<td class=\"num\">3</td>", "2026-11-20 12:00 UTC")

	repo := get(t, c, ts.URL+"/ui/r/sarai/audio-core", http.StatusOK)
	mustContain(t, repo, `<svg id="chart"`, `id="panel-latency"`, `id="panel-size"`, `<polyline points="`,
		`data-tag="int8"`, `data-tag="fp32"`, ">int8<", "3.9", "2.18", "0.25", "0.9997", "passed", "unsigned", short(int8))
	if strings.Contains(repo, "<script") {
		t.Fatal("repository page holds a script element")
	}

	art := get(t, c, ts.URL+"/ui/r/sarai/audio-core/-/a/"+string(int8), http.StatusOK)
	mustContain(t, art, "model.onnx.data", "1000 B", `href="/ui/r/sarai/audio-core/-/a/`+string(fp32)+`"`,
		"&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;", "latency_ms.p50", "quality_worst", "compare with parent")
	if strings.Contains(art, "<script") || strings.Contains(art, "<img") {
		t.Fatal("an annotation reached the page unescaped")
	}
	parent := get(t, c, ts.URL+"/ui/r/sarai/audio-core/-/a/"+string(fp32), http.StatusOK)
	mustContain(t, parent, `id="children"`, `href="/ui/r/sarai/audio-core/-/a/`+string(int8)+`"`, "(int8)",
		`data-tag="prod"`, `class="move-rollback"`, `class="move-created"`)

	// int8 is no longer under prod, but prod's history still shows it.
	art = get(t, c, ts.URL+"/ui/r/sarai/audio-core/-/a/"+string(int8), http.StatusOK)
	mustContain(t, art, `data-tag="prod"`, `data-tag="int8"`)

	cmp := get(t, c, ts.URL+"/ui/r/sarai/audio-core/-/compare?a=fp32&b=int8", http.StatusOK)
	mustContain(t, cmp, `id="compare-figures"`, `id="compare-files"`, "model.onnx.data", "3.9 KiB", "1000 B", "differs (0.250×)", "8.5", "3.9", "0.459×")
	get(t, c, ts.URL+"/ui/r/sarai/audio-core/-/compare?a=fp32&b=nope", http.StatusNotFound)
	get(t, c, ts.URL+"/ui/r/sarai/audio-core/-/compare?a=fp32&b=..%2F..", http.StatusNotFound)

	get(t, c, ts.URL+"/ui/r/nope/x", http.StatusNotFound)
	get(t, c, ts.URL+"/ui/r/sarai/audio-core/-/a/sha256:"+strings.Repeat("0", 64), http.StatusNotFound)
	get(t, c, ts.URL+"/ui/r/sarai/audio-core/-/a/nonsense", http.StatusNotFound)
	get(t, c, ts.URL+"/ui/r/..%2f..%2fetc/-/a/x", http.StatusNotFound)
	get(t, c, ts.URL+"/ui/static/style.css", http.StatusOK)

	// No script may run, whatever escapes: the policy forbids them.
	resp, err := c.Get(ts.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	// The UI is read-only.
	do(t, http.MethodPost, ts.URL+"/ui/r/sarai/audio-core", "", "", "text/plain", nil, http.StatusMethodNotAllowed)
}

func TestDeploymentsEndpointAndPage(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	fp32, int8 := pushLineage(t, ts.URL, "", "", "sarai/audio-core")
	post := func(body string, want int) {
		t.Helper()
		do(t, http.MethodPost, ts.URL+"/v2/sarai/audio-core/_modelctl/deployments", "", "", "application/json", []byte(body), want)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	report := func(host, d string) string {
		return fmt.Sprintf(`{"host":%q,"config":"/srv/app/config/sarai.yaml","key":"audio_omni","digest":%q,"time":%q,"status":"installed","check":"passed","health":"not run"}`, host, d, now)
	}
	post(report("gpu-01", string(int8)), http.StatusCreated)
	post(report("cpu-02", string(fp32)), http.StatusCreated)
	post(report("cpu-02", string(int8)), http.StatusCreated) // cpu-02 moves to int8 ...
	post(report("cpu-02", string(fp32)), http.StatusCreated) // ... and back
	for _, bad := range []struct {
		body string
		want int
	}{
		{`{"host":"h"`, http.StatusBadRequest},
		{report("", string(int8)), http.StatusBadRequest},
		{report("h\u0007", string(int8)), http.StatusBadRequest},
		{report("h", "sha256:"+strings.Repeat("1", 64)), http.StatusNotFound},
		{report("h", "md5:abc"), http.StatusBadRequest},
		{strings.Replace(report("h", string(int8)), `"check":"passed"`, `"check":"great"`, 1), http.StatusBadRequest},
		{strings.Replace(report("h", string(int8)), now, "2999-01-01T00:00:00Z", 1), http.StatusBadRequest},
		{strings.Replace(report("h", string(int8)), `"key"`, `"extra":1,"key"`, 1), http.StatusBadRequest},
		{report(strings.Repeat("h", 300), string(int8)), http.StatusBadRequest},
		{`{"detail":"` + strings.Repeat("x", 20<<10) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		post(bad.body, bad.want)
	}
	do(t, http.MethodPost, ts.URL+"/v2/nope/_modelctl/deployments", "", "", "application/json", []byte(report("h", string(int8))), http.StatusNotFound)

	resp := do(t, http.MethodGet, ts.URL+"/v2/sarai/audio-core/_modelctl/deployments", "", "", "", nil, http.StatusOK)
	var got registry.DeploymentsResponse
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got.Deployments) != 2 || got.Deployments[0].Host != "cpu-02" || got.Deployments[0].Digest != fp32 ||
		len(got.Deployments[0].Previous) != 2 || got.Deployments[0].Previous[0].Digest != int8 ||
		got.Deployments[1].Host != "gpu-01" || got.Deployments[1].Digest != int8 || got.Deployments[1].Check != "passed" {
		t.Fatalf("deployments: %+v", got)
	}

	page := get(t, ts.Client(), ts.URL+"/ui/r/sarai/audio-core/-/deployments", http.StatusOK)
	mustContain(t, page, `id="by-digest"`, `data-host="cpu-02"`, `data-host="gpu-01"`, "/srv/app/config/sarai.yaml", "audio_omni", "2 earlier")
	byDigest := regexp.MustCompile(`(?s)<table id="by-digest">.*?</table>`).FindString(page)
	if !strings.Contains(byDigest, short(fp32)) || !strings.Contains(byDigest, short(int8)) {
		t.Fatalf("by-digest table lacks a version:\n%s", byDigest)
	}
	art := get(t, ts.Client(), ts.URL+"/ui/r/sarai/audio-core/-/a/"+string(int8), http.StatusOK)
	mustContain(t, art, `id="artifact-deployments"`, "gpu-01")
}

// users returns an htpasswd with the given user:password pairs.
func users(t *testing.T, pairs ...string) *auth.Htpasswd {
	t.Helper()
	var lines []string
	for _, p := range pairs {
		u, pw, _ := strings.Cut(p, ":")
		line, err := auth.HashPassword(u, pw)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	h, err := auth.ParseHtpasswd(strings.NewReader(strings.Join(lines, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLoginShowsOnlyWhatTheUserMayPull(t *testing.T) {
	policy, err := auth.ParsePolicy([]byte(`
rules:
  - repositories: ["**"]
    users: [admin]
    actions: ["*"]
  - repositories: ["team/**"]
    users: [alice]
    actions: [pull]
`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{Users: users(t, "admin:admin-pw", "alice:alice-pw"), Policy: policy, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, a, a)
	pushLineage(t, ts.URL, "admin", "admin-pw", "team/model")
	pushLineage(t, ts.URL, "admin", "admin-pw", "secret/model")

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	// Anonymous: nothing listed, a repository page asks for a login.
	home := get(t, c, ts.URL+"/ui/", http.StatusOK)
	mustContain(t, home, `id="login-link"`, `id="empty"`)
	noFollow := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(ts.URL + "/ui/r/team/model")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/login?next=") {
		t.Fatalf("anonymous repository page: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	form := get(t, c, ts.URL+"/ui/login?next=/ui/r/team/model", http.StatusOK)
	token := regexp.MustCompile(`name="csrf" value="([0-9a-f]{32})"`).FindStringSubmatch(form)
	if token == nil {
		t.Fatalf("login form without a CSRF token:\n%s", form)
	}
	u, _ := url.Parse(ts.URL + "/ui/")
	var csrfCookie *http.Cookie
	for _, ck := range jar.Cookies(u) {
		if ck.Name == loginCSRFCookie {
			csrfCookie = ck
		}
	}
	if csrfCookie == nil {
		t.Fatal("no login CSRF cookie")
	}
	postLogin := func(c *http.Client, vals url.Values, want int) string {
		t.Helper()
		resp, err := c.PostForm(ts.URL+"/ui/login", vals)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("login %v: %d, want %d\n%s", vals.Get("user"), resp.StatusCode, want, b)
		}
		return string(b)
	}
	// Without the token, or with another, the form is refused.
	postLogin(c, url.Values{"user": {"alice"}, "password": {"alice-pw"}}, http.StatusForbidden)
	postLogin(c, url.Values{"user": {"alice"}, "password": {"alice-pw"}, "csrf": {strings.Repeat("0", 32)}}, http.StatusForbidden)
	// A wrong password is refused with a message.
	page := postLogin(c, url.Values{"user": {"alice"}, "password": {"nope"}, "csrf": {token[1]}}, http.StatusUnauthorized)
	mustContain(t, page, "Invalid user name or password")
	// The right one lands on the page asked for.
	resp, err = noFollow.PostForm(ts.URL+"/ui/login", url.Values{"user": {"alice"}, "password": {"alice-pw"}, "csrf": {token[1]}, "next": {"/ui/r/team/model"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/r/team/model" {
		t.Fatalf("login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict", session)
	}
	home = get(t, c, ts.URL+"/ui/", http.StatusOK)
	mustContain(t, home, `href="/ui/r/team/model"`, `id="user">alice<`)
	if strings.Contains(home, "secret/model") {
		t.Fatal("alice sees a repository she may not pull")
	}
	get(t, c, ts.URL+"/ui/r/team/model", http.StatusOK)
	get(t, c, ts.URL+"/ui/r/secret/model", http.StatusNotFound)
	// A forged session is no session.
	forged := &http.Client{}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/ui/", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: strings.Replace(session.Value, session.Value[:4], "YWRt", 1)})
	resp, err = forged.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "team/model") || strings.Contains(string(b), "secret/model") {
		t.Fatal("a tampered session cookie was accepted")
	}
	// Logging out needs the page's token.
	do(t, http.MethodPost, ts.URL+"/ui/logout", "", "", "application/x-www-form-urlencoded", nil, http.StatusForbidden)
	home = get(t, c, ts.URL+"/ui/", http.StatusOK)
	logoutToken := regexp.MustCompile(`name="csrf" value="([0-9a-f]{32})"`).FindStringSubmatch(home)
	resp, err = c.PostForm(ts.URL+"/ui/logout", url.Values{"csrf": {logoutToken[1]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	home = get(t, c, ts.URL+"/ui/", http.StatusOK)
	mustContain(t, home, `id="login-link"`)

	// Reports need push rights: alice may only pull.
	now := time.Now().UTC().Format(time.RFC3339)
	ds, err := ts.Store.ResolveTag(context.Background(), "team/model", "int8")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(fmt.Sprintf(`{"host":"h","config":"/c.yaml","key":"k","digest":%q,"time":%q}`, ds, now))
	do(t, http.MethodPost, ts.URL+"/v2/team/model/_modelctl/deployments", "alice", "alice-pw", "application/json", body, http.StatusForbidden)
	do(t, http.MethodPost, ts.URL+"/v2/team/model/_modelctl/deployments", "", "", "application/json", body, http.StatusUnauthorized)
	do(t, http.MethodPost, ts.URL+"/v2/team/model/_modelctl/deployments", "admin", "admin-pw", "application/json", body, http.StatusCreated)
	do(t, http.MethodGet, ts.URL+"/v2/team/model/_modelctl/deployments", "alice", "alice-pw", "", nil, http.StatusOK)
	do(t, http.MethodGet, ts.URL+"/v2/secret/model/_modelctl/deployments", "alice", "alice-pw", "", nil, http.StatusForbidden)
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/r/a/b":             "/ui/r/a/b",
		"/ui/r/a/-/compare?a=x": "/ui/r/a/-/compare?a=x",
		"":                      "/ui/",
		"//evil.example/ui/":    "/ui/",
		"https://evil/ui/":      "/ui/",
		"/ui/\\evil":            "/ui/",
		"/v2/_catalog":          "/ui/",
		"/ui/\r\nSet-Cookie:x":  "/ui/",
	} {
		if got := safeNext("/ui/", in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSessionExpires(t *testing.T) {
	s, err := newSessions([]byte("k"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := s.issue("alice")
	req, _ := http.NewRequest(http.MethodGet, "/ui/", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
	if u, ok := s.user(req); !ok || u != "alice" {
		t.Fatalf("fresh session: %q %v", u, ok)
	}
	s.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, ok := s.user(req); ok {
		t.Fatal("an expired session was accepted")
	}
}

// TagDigests lists current tags only, with their digests; ReferrerSubjects
// names the versions that have referrers.
func TestTagDigestsAndReferrerSubjects(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := storeModel(t, ts.Store, testModel{Repo: "r/m", Tag: "a", Created: t0, Files: map[string]string{"f": "1"}})
	b := storeModel(t, ts.Store, testModel{Repo: "r/m", Tag: "b", Created: t0.Add(time.Hour), Files: map[string]string{"f": "2"}})
	if err := ts.Store.DeleteTag(context.Background(), "r/m", "b", "tester"); err != nil {
		t.Fatal(err)
	}
	got, err := ts.Store.TagDigests(context.Background(), "r/m", 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["a"] != a {
		t.Fatalf("TagDigests: %v, want only a=%s (b=%s deleted)", got, a, b)
	}
	if _, err := ts.Store.TagDigests(context.Background(), "no/such", 4); !errors.Is(err, storage.ErrNameUnknown) {
		t.Fatalf("TagDigests of a missing repository: %v", err)
	}
	subj, err := ts.Store.ReferrerSubjects(context.Background(), "r/m")
	if err != nil || len(subj) != 0 {
		t.Fatalf("ReferrerSubjects without referrers: %v %v", subj, err)
	}
}

// Under TLS the cookies are Secure.
func TestCookiesSecureUnderTLS(t *testing.T) {
	a, err := auth.New(auth.Config{Users: users(t, "u:p"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := storage.NewStore(drv)
	h, err := New(Config{Store: st, Auth: a})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(registry.Config{Store: st, Auth: a, UI: h, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(srv)
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL + "/ui/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != loginCSRFCookie || !cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookies under TLS: %+v", cs)
	}
}

// TestSessionKeySharedByReplicas: servers whose session key derives from
// one token key (`serve --token-key`) accept each other's sessions, also
// after a restart; a session of a user the server does not know (removed
// from its htpasswd file) is no login; another key's sessions are refused.
func TestSessionKeySharedByReplicas(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	handler := func(key crypto.Signer, pairs ...string) *Handler {
		a, err := auth.New(auth.Config{Users: users(t, pairs...), Key: key, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		sk, err := a.SessionKey()
		if err != nil {
			t.Fatal(err)
		}
		drv, err := filesystem.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		h, err := New(Config{Store: storage.NewStore(drv), Auth: a, SessionKey: sk})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	first := handler(k, "alice:pw", "bob:pw")
	second := handler(k, "alice:pw") // bob was removed before it started
	other := handler(nil, "alice:pw", "bob:pw")
	req := func(h *Handler, user string) *http.Request {
		v, _ := h.sessions.issue(user)
		r, _ := http.NewRequest(http.MethodGet, "/ui/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
		return r
	}
	if u, ok := second.user(req(first, "alice")); !ok || u != "alice" {
		t.Fatalf("a session of the first server on the second: %q %v", u, ok)
	}
	if u, ok := second.user(req(first, "bob")); ok {
		t.Fatalf("a session of a user the second server does not know was accepted: %q", u)
	}
	if u, ok := first.user(req(first, "bob")); !ok || u != "bob" {
		t.Fatalf("bob's session on the server that knows him: %q %v", u, ok)
	}
	if u, ok := other.user(req(first, "alice")); ok {
		t.Fatalf("a session signed with another key was accepted: %q", u)
	}
}
