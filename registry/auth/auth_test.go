package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/modelctl/modelctl/registry"
	"github.com/modelctl/modelctl/registry/storage"
	"github.com/modelctl/modelctl/registry/storage/filesystem"
)

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		glob, name string
		want       bool
	}{
		{"**", "a", true},
		{"**", "a/b/c", true},
		{"sarai/*", "sarai/audio", true},
		{"sarai/*", "sarai/audio/x", false},
		{"sarai/**", "sarai/audio/x", true},
		{"sarai/**", "sarai", true},
		{"sarai/**", "saraix/a", false},
		{"*/audio", "team/audio", true},
		{"a/**/z", "a/b/c/z", true},
		{"a/**/z", "a/z", true},
		{"a/**/z", "a/b/y", false},
		{"audio-*", "audio-core", true},
		{"audio-*", "video-core", false},
	} {
		if got := matchGlob(tc.glob, tc.name); got != tc.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", tc.glob, tc.name, got, tc.want)
		}
	}
}

const testPolicy = `
groups:
  ml: [alice, bob]
rules:
  - repositories: ["sarai/**"]
    groups: [ml]
    actions: [pull, push]
  - repositories: ["sarai/**"]
    users: [alice]
    actions: [delete]
  - repositories: ["**"]
    users: [reader]
    actions: [pull, catalog]
  - repositories: ["public/*"]
    anonymous: true
    actions: [pull]
`

func TestPolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	all := []string{ActionPull, ActionPush, ActionDelete}
	for _, tc := range []struct {
		user, name string
		want       []string
	}{
		{"alice", "sarai/audio", all},
		{"bob", "sarai/audio", []string{ActionPull, ActionPush}},
		{"bob", "other/x", nil},
		{"reader", "sarai/audio", []string{ActionPull}},
		{"", "public/x", []string{ActionPull}},
		{"", "sarai/audio", nil},
		{"mallory", "public/x", nil},
	} {
		if got := p.Allowed(tc.user, tc.name, all); !slices.Equal(got, tc.want) {
			t.Errorf("Allowed(%q, %q) = %v, want %v", tc.user, tc.name, got, tc.want)
		}
	}
	if got := p.Allowed("reader", "", []string{ActionCatalog}); len(got) != 1 {
		t.Errorf("reader catalog = %v", got)
	}
	if got := p.Allowed("alice", "", []string{ActionCatalog}); len(got) != 0 {
		t.Errorf("alice catalog = %v", got)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"rules:\n- repositories: [a]\n  users: [x]\n  actions: [pul]\n", "unknown action"},
		{"rules:\n- repositories: [a]\n  groups: [g]\n  actions: [pull]\n", "not defined"},
		{"rules:\n- repositories: ['[']\n  users: [x]\n  actions: [pull]\n", "glob"},
		{"rules:\n- repositories: [a]\n  actions: [pull]\n", "names no users"},
		{"rulez: []\n", "not found"},
	} {
		_, err := ParsePolicy([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePolicy(%q) = %v, want error containing %q", tc.doc, err, tc.want)
		}
	}
}

func TestHtpasswd(t *testing.T) {
	line, err := HashPassword("alice", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHtpasswd(strings.NewReader("# users\n" + line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, pass string
		want       bool
	}{{"alice", "s3cret", true}, {"alice", "s3cret", true}, {"alice", "wrong", false}, {"bob", "s3cret", false}, {"alice", "", false}} {
		if got := h.Authenticate(tc.user, tc.pass); got != tc.want {
			t.Errorf("Authenticate(%q, %q) = %v, want %v", tc.user, tc.pass, got, tc.want)
		}
	}
	if _, err := ParseHtpasswd(strings.NewReader("bob:$apr1$abc$def\n")); err == nil || !strings.Contains(err.Error(), "bcrypt") {
		t.Errorf("MD5 htpasswd line accepted: %v", err)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(3, time.Minute)
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if b, _ := l.blocked("k"); b {
			t.Fatalf("blocked after %d failures", i)
		}
		l.fail("k")
	}
	if b, wait := l.blocked("k"); !b || wait != time.Minute {
		t.Fatalf("after 3 failures: blocked %v wait %v, want true 1m", b, wait)
	}
	if b, _ := l.blocked("other"); b {
		t.Fatal("another key is blocked")
	}
	now = now.Add(time.Minute + time.Second)
	if b, _ := l.blocked("k"); b {
		t.Fatal("still blocked after the window")
	}
}

// testServer runs the real registry server with an Authenticator on a
// loopback port.
func testServer(t *testing.T, policy string, anonymousPull bool) (*httptest.Server, *Authenticator, *bytes.Buffer) {
	t.Helper()
	var lines []string
	for _, u := range []string{"alice", "bob", "reader"} {
		l, err := hashPassword(u, u+"-pw", bcrypt.MinCost) // the race detector makes DefaultCost slow
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	users, err := ParseHtpasswd(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	cfg := Config{Users: users, AnonymousPull: anonymousPull, Logger: log, MaxFailures: 3}
	if policy != "" {
		if cfg.Policy, err = ParsePolicy([]byte(policy)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	drv, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(registry.Config{Store: storage.NewStore(drv), Logger: log, Auth: a,
		ExtraRoutes: map[string]http.Handler{TokenPath: a.TokenHandler()}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts, a, logs
}

func do(t *testing.T, method, u string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func token(t *testing.T, ts *httptest.Server, user, pass string, scopes ...string) (string, int) {
	t.Helper()
	q := url.Values{"service": {"modelctl"}, "scope": scopes}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+TokenPath+"?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return body.Token, resp.StatusCode
}

func TestAuthorizeFlow(t *testing.T) {
	ts, _, logs := testServer(t, testPolicy, false)
	blobs := ts.URL + "/v2/sarai/audio/blobs/uploads/"
	// Anonymous push: 401 and the challenge naming the scope.
	resp := do(t, http.MethodPost, blobs, nil)
	wantChallenge := `Bearer realm="` + ts.URL + `/token",service="modelctl",scope="repository:sarai/audio:push"`
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != wantChallenge {
		t.Fatalf("anonymous push: %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), wantChallenge)
	}
	// A token for bob with push scope lets him start an upload.
	tok, code := token(t, ts, "bob", "bob-pw", "repository:sarai/audio:pull,push")
	if code != 200 || tok == "" {
		t.Fatalf("token for bob: %d", code)
	}
	if resp := do(t, http.MethodPost, blobs, map[string]string{"Authorization": "Bearer " + tok}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("bob push with token: %d", resp.StatusCode)
	}
	// The same token does not cover another repository: bob may not push
	// there at all, so 403.
	if resp := do(t, http.MethodPost, ts.URL+"/v2/other/x/blobs/uploads/", map[string]string{"Authorization": "Bearer " + tok}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob push elsewhere: %d, want 403", resp.StatusCode)
	}
	// reader asks for push; the token grants pull only; a push is 403.
	rtok, _ := token(t, ts, "reader", "reader-pw", "repository:sarai/audio:pull,push")
	if resp := do(t, http.MethodPost, blobs, map[string]string{"Authorization": "Bearer " + rtok}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("reader push: %d, want 403", resp.StatusCode)
	}
	if resp := do(t, http.MethodGet, ts.URL+"/v2/sarai/audio/tags/list", map[string]string{"Authorization": "Bearer " + rtok}); resp.StatusCode != http.StatusOK {
		t.Fatalf("reader pull: %d, want 200", resp.StatusCode)
	}
	// A pull-scoped token of a user who may push: 401 insufficient_scope,
	// so the client fetches a wider token.
	ptok, _ := token(t, ts, "bob", "bob-pw", "repository:sarai/audio:pull")
	resp = do(t, http.MethodPost, blobs, map[string]string{"Authorization": "Bearer " + ptok})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("narrow token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// A tampered token is refused.
	bad := tok[:len(tok)-4] + "AAAA"
	if resp := do(t, http.MethodPost, blobs, map[string]string{"Authorization": "Bearer " + bad}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("tampered token: %d", resp.StatusCode)
	}
	// Basic directly: bob deletes nothing (403), alice may.
	basic := func(u, p string) map[string]string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(u, p)
		return map[string]string{"Authorization": req.Header.Get("Authorization")}
	}
	dm := ts.URL + "/v2/sarai/audio/manifests/sha256:" + strings.Repeat("a", 64)
	if resp := do(t, http.MethodDelete, dm, basic("bob", "bob-pw")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob delete: %d, want 403", resp.StatusCode)
	}
	if resp := do(t, http.MethodDelete, dm, basic("alice", "alice-pw")); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("alice delete: %d, want 404", resp.StatusCode)
	}
	// Anonymous pull of public/* only.
	if resp := do(t, http.MethodGet, ts.URL+"/v2/public/x/tags/list", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("anonymous pull public: %d", resp.StatusCode)
	}
	if resp := do(t, http.MethodGet, ts.URL+"/v2/sarai/audio/tags/list", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous pull private: %d", resp.StatusCode)
	}
	// Catalog: reader yes, bob no.
	if resp := do(t, http.MethodGet, ts.URL+"/v2/_catalog", basic("reader", "reader-pw")); resp.StatusCode != http.StatusOK {
		t.Fatalf("reader catalog: %d", resp.StatusCode)
	}
	if resp := do(t, http.MethodGet, ts.URL+"/v2/_catalog", basic("bob", "bob-pw")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob catalog: %d", resp.StatusCode)
	}
	// Failed logins: three, then refused without a password check (429),
	// even with the right password, and logged without the password.
	for i := 0; i < 3; i++ {
		if _, code := token(t, ts, "alice", "guess-"+string(rune('a'+i)), "repository:sarai/audio:pull"); code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, code)
		}
	}
	if _, code := token(t, ts, "alice", "alice-pw"); code != http.StatusTooManyRequests {
		t.Fatalf("after 3 failures: %d, want 429", code)
	}
	if !strings.Contains(logs.String(), "failed login") || strings.Contains(logs.String(), "guess-") || strings.Contains(logs.String(), "alice-pw") {
		t.Fatalf("log must record failed logins without passwords:\n%s", logs.String())
	}
}

func TestOAuth2PasswordGrant(t *testing.T) {
	ts, _, _ := testServer(t, "", false)
	form := url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"bob-pw"}, "service": {"modelctl"}, "scope": {"repository:a/b:pull,push"}, "client_id": {"oras"}}
	resp, err := http.PostForm(ts.URL+TokenPath, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("password grant: %d %v", resp.StatusCode, err)
	}
	if body.Scope != "repository:a/b:pull,push" {
		t.Fatalf("scope %q", body.Scope)
	}
	if r := do(t, http.MethodPost, ts.URL+"/v2/a/b/blobs/uploads/", map[string]string{"Authorization": "Bearer " + body.AccessToken}); r.StatusCode != http.StatusAccepted {
		t.Fatalf("push with OAuth2 token: %d", r.StatusCode)
	}
	form.Set("grant_type", "refresh_token")
	resp2, _ := http.PostForm(ts.URL+TokenPath, form)
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Fatalf("refresh_token grant: %d, want 400", resp2.StatusCode)
	}
}

func TestParseScopes(t *testing.T) {
	got, err := parseScopes([]string{"repository:a/b:pull,push registry:catalog:*", "foo:bar:baz"})
	if err != nil || len(got) != 2 || got[0].Name != "a/b" || got[1].Type != "registry" {
		t.Fatalf("parseScopes = %+v, %v", got, err)
	}
	for _, bad := range []string{"repository:../x:pull", "repository", "repository:A:pull"} {
		if _, err := parseScopes([]string{bad}); err == nil {
			t.Errorf("parseScopes(%q) accepted", bad)
		}
	}
}

const mountPolicy = `
rules:
  - repositories: ["**"]
    users: [alice]
    actions: [pull, push]
  - repositories: ["team/**"]
    users: [bob]
    actions: [pull, push]
  - repositories: ["secret/**"]
    users: [reader]
    actions: [pull, push]
`

// TestMountAuthorization: a cross-repository mount reads its source, so it
// needs pull there; a mount without a source needs pull everywhere.
func TestMountAuthorization(t *testing.T) {
	ts, _, _ := testServer(t, mountPolicy, false)
	body := []byte("secret weights")
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	basic := func(user string) string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(user, user+"-pw")
		return req.Header.Get("Authorization")
	}
	req, _ := http.NewRequest("POST", ts.URL+"/v2/secret/x/blobs/uploads/?digest="+d, bytes.NewReader(body))
	req.Header.Set("Authorization", basic("reader"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("reader pushes the secret blob: %v %v", resp, err)
	}
	resp.Body.Close()
	mount := func(name, from, authz string) *http.Response {
		u := ts.URL + "/v2/" + name + "/blobs/uploads/?mount=" + d
		if from != "" {
			u += "&from=" + from
		}
		return do(t, http.MethodPost, u, map[string]string{"Authorization": authz})
	}
	for _, tc := range []struct {
		name, target, from, user string
		want                     int
	}{
		{"no pull on the source", "team/a", "secret/x", "bob", http.StatusAccepted},
		{"no source, no pull everywhere", "team/a", "", "bob", http.StatusAccepted},
		{"pull on the source", "team/b", "secret/x", "alice", http.StatusCreated},
		{"no source, pull everywhere", "team/c", "", "alice", http.StatusCreated},
	} {
		if r := mount(tc.target, tc.from, basic(tc.user)); r.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, r.StatusCode, tc.want)
		}
	}
	// With a token for the target alone, the mount asks for a token that
	// covers the source too; with it, the mount succeeds.
	tok, _ := token(t, ts, "alice", "alice-pw", "repository:team/d:pull,push")
	r := mount("team/d", "secret/x", "Bearer "+tok)
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `scope="repository:team/d:push,pull repository:secret/x:pull"`) {
		t.Fatalf("narrow token mount: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	tok, _ = token(t, ts, "alice", "alice-pw", "repository:team/d:pull,push", "repository:secret/x:pull")
	if r := mount("team/d", "secret/x", "Bearer "+tok); r.StatusCode != http.StatusCreated {
		t.Fatalf("mount with a token covering both: %d", r.StatusCode)
	}
	// bob's token can never cover the source: no challenge, a plain upload.
	btok, _ := token(t, ts, "bob", "bob-pw", "repository:team/e:pull,push", "repository:secret/x:pull")
	if r := mount("team/e", "secret/x", "Bearer "+btok); r.StatusCode != http.StatusAccepted {
		t.Fatalf("bob's mount with a token: %d, want 202", r.StatusCode)
	}
}

func TestOpen(t *testing.T) {
	if a, err := Open(Options{}, nil); a != nil || err != nil {
		t.Fatalf("Open without htpasswd = %v, %v; want an open registry", a, err)
	}
	for _, o := range []Options{{AnonymousPull: true}, {PolicyFile: "p.yaml"}, {KeyFile: "k.pem"}} {
		if _, err := Open(o, nil); err == nil || !strings.Contains(err.Error(), "need --htpasswd") {
			t.Errorf("Open(%+v) = %v, want a refusal naming --htpasswd", o, err)
		}
	}
	if _, err := Open(Options{HtpasswdFile: t.TempDir() + "/missing"}, nil); err == nil {
		t.Error("a missing htpasswd file accepted")
	}
}

// BenchmarkAuthenticate: a bcrypt check at DefaultCost against the cached
// verdict a client sending Basic on every request gets after its first.
func BenchmarkAuthenticate(b *testing.B) {
	line, _ := HashPassword("alice", "pw")
	h, err := ParseHtpasswd(strings.NewReader(line))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("bcrypt", func(b *testing.B) {
		for b.Loop() {
			clear(h.verdict)
			if !h.Authenticate("alice", "pw") {
				b.Fatal("refused")
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if !h.Authenticate("alice", "pw") {
				b.Fatal("refused")
			}
		}
	})
}

// TestSessionKey: the UI's session key follows the token key, so replicas
// given one key share logins; another key gives another session key, and
// a fresh token key (none given) a fresh one.
func TestSessionKey(t *testing.T) {
	users, err := ParseHtpasswd(strings.NewReader("a:$2y$04$" + strings.Repeat("x", 53)))
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key := func(k crypto.Signer) []byte {
		a, err := New(Config{Users: users, Key: k})
		if err != nil {
			t.Fatal(err)
		}
		s, err := a.SessionKey()
		if err != nil || len(s) != 32 {
			t.Fatalf("session key: %x, %v", s, err)
		}
		return s
	}
	a, b, c := key(k1), key(k1), key(k2)
	if !bytes.Equal(a, b) {
		t.Fatal("one token key gave two session keys: replicas would not share logins")
	}
	if bytes.Equal(a, c) || bytes.Equal(key(nil), key(nil)) {
		t.Fatal("different token keys gave one session key")
	}
}
