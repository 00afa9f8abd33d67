package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
)

// startLANProxy is an HTTP proxy on 127.0.0.1 that sends every request,
// and every CONNECT tunnel, to target: through it a made-up LAN name
// (registry.lan:5000) reaches a registry on loopback the way a plain-HTTP
// registry on the LAN is reached, so the client's loopback rule does not
// apply.
func startLANProxy(t *testing.T, target string) string {
	t.Helper()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			rp.ServeHTTP(w, r)
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			up.Close()
			http.Error(w, "no hijack", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
		conn, _, err := hj.Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() { _, _ = io.Copy(up, conn); up.Close() }()
		go func() { _, _ = io.Copy(conn, up); conn.Close() }()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// Problem 5, second half: a registry without TLS on the LAN is named once
// in modelctl's settings (plain_http, default_registry) instead of
// --plain-http on every command, and doctor says what to change when it
// answers plain HTTP to an HTTPS client.
func TestServerRegistrySettingsSavedOnce(t *testing.T) {
	srv := testenv.StartServe(t, nil, "--root", t.TempDir())
	m := makeSrvModels(t, srv.Addr+"/sarai/audio")
	h := newSrvHost(t)
	proxy := startLANProxy(t, srv.Addr)
	settings := h.path(".state/settings.yaml")
	h.env = append(h.env, "HTTP_PROXY="+proxy, "HTTPS_PROXY="+proxy, "http_proxy="+proxy, "https_proxy="+proxy,
		"NO_PROXY=", "no_proxy=", "MODELCTL_CONFIG="+settings)
	const lan = "registry.lan:5000"
	cfg := h.writeConfig(lan+"/sarai/audio:v1", "")

	// Without settings: HTTPS to a plain-HTTP registry fails, and doctor
	// says which line to add where.
	if _, errOut, code := h.in("app", "pin", "config/app.yaml", "--key", "audio", lan+"/sarai/audio:v1"); code == 0 {
		t.Fatalf("pin over HTTPS to a plain-HTTP registry succeeded: %s", errOut)
	}
	out, _, _ := h.in("app", "doctor", lan)
	if !strings.Contains(out, "plain_http: true") || !strings.Contains(out, settings) {
		t.Fatalf("doctor does not say what to change:\n%s", out)
	}

	// Saved once: every command reaches it, short references too.
	if err := os.WriteFile(settings, []byte("default_registry: "+lan+"\nregistries:\n  "+lan+":\n    plain_http: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustIn("app", "pin", "config/app.yaml", "--key", "audio", "sarai/audio:v1")
	if got := pinnedDigest(t, cfg); got != m.dv1 {
		t.Fatalf("pinned %s, want %s", got, m.dv1)
	}
	if b, _ := os.ReadFile(cfg); !strings.Contains(string(b), lan+"/sarai/audio:v1") {
		t.Fatalf("the pin does not name the registry in full:\n%s", b)
	}
	h.mustIn("app", "sync", "config/app.yaml")
	h.mustIn("app", "verify", "config/app.yaml")
	out, _, _ = h.in("app", "doctor", lan)
	if !strings.Contains(out, "registry "+lan+": reachable") {
		t.Fatalf("doctor with the settings:\n%s", out)
	}
	// A bad settings file is an error that names it.
	if err := os.WriteFile(settings, []byte("registries:\n  x:\n    plain: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := h.in("app", "sync", "config/app.yaml"); code == 0 || !strings.Contains(errOut, settings) {
		t.Fatalf("bad settings: exit %d: %s", code, errOut)
	}
}

// A TLS registry on loopback (where modelctl speaks plain HTTP by default)
// refuses plain HTTP: doctor says to set plain_http: false (and insecure
// for a self-signed certificate); then every command reaches it.
func TestServerSettingsForATLSRegistry(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	addr := testenv.FreeAddr(t)
	testenv.Start(t, addr, "", nil, testenv.Modelctl(t), "serve", "--addr", addr, "--root", dir+"/data",
		"--tls-cert", certFile, "--tls-key", keyFile, "--log-level", "warn")
	h := newSrvHost(t)
	settings := h.path(".state/settings.yaml")
	h.env = append(h.env, "MODELCTL_CONFIG="+settings)

	out, _, _ := h.in("app", "doctor", addr)
	if !strings.Contains(out, "refused plain HTTP") || !strings.Contains(out, "plain_http: false") {
		t.Fatalf("doctor does not say what to change:\n%s", out)
	}
	if err := os.WriteFile(settings, []byte("registries:\n  "+addr+":\n    plain_http: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, _ = h.in("app", "doctor", addr)
	if !strings.Contains(out, "insecure: true") && !strings.Contains(out, "certificate") {
		t.Fatalf("doctor with HTTPS to a self-signed registry:\n%s", out)
	}
	if err := os.WriteFile(settings, []byte("registries:\n  "+addr+":\n    plain_http: false\n    insecure: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, _ = h.in("app", "doctor", addr)
	if !strings.Contains(out, "registry "+addr+": reachable") {
		t.Fatalf("doctor with the settings:\n%s", out)
	}
	// And a push and a pull go through with no flag.
	model := synthModel(t, t.TempDir(), 1<<20)
	h.mustIn("app", "push", model, addr+"/tls/m:v1")
	h.mustIn("app", "pull", addr+"/tls/m:v1", "-o", h.path("pulled"))
}
