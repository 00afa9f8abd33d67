package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/internal/testenv"
	"github.com/modelctl/modelctl/quantize/synth"
	regauth "github.com/modelctl/modelctl/registry/auth"
	"github.com/modelctl/modelctl/signing"
)

// Users of the secured test registries; each password is the name + "-pw".
var secUsers = []string{"admin", "writer", "reader"}

const secPolicy = `
rules:
  - repositories: ["**"]
    users: [admin]
    actions: ["*"]
  - repositories: ["sec/**", "models/**"]
    users: [writer]
    actions: [pull, push]
  - repositories: ["**"]
    users: [reader]
    actions: [pull]
`

// secureServe starts modelctl serve with an htpasswd file and the policy
// above, plus extra arguments.
func secureServe(t *testing.T, extra ...string) *testenv.Process {
	t.Helper()
	dir := t.TempDir()
	var lines []string
	for _, u := range secUsers {
		l, err := regauth.HashPassword(u, u+"-pw")
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(htpasswd, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policy, []byte(secPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--root", filepath.Join(dir, "data"), "--htpasswd", htpasswd, "--auth-policy", policy}, extra...)
	return testenv.StartServe(t, nil, args...)
}

func request(t *testing.T, hc *http.Client, method, url string, user string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, user+"-pw")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// mc runs the modelctl binary with env added and stdin, returning stdout,
// stderr and the error.
func mc(t *testing.T, env []string, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Modelctl(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func mustMC(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := mc(t, env, stdin, args...)
	if err != nil {
		t.Fatalf("modelctl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func TestAuthChallengesAndDenials(t *testing.T) {
	srv := secureServe(t)
	base := "http://" + srv.Addr
	hc := http.DefaultClient
	for _, tc := range []struct {
		name, method, path, user string
		status                   int
		challenge                string
	}{
		{"anonymous ping", "GET", "/v2/", "", 401, fmt.Sprintf(`Bearer realm="%s/token",service="modelctl"`, base)},
		{"anonymous push", "POST", "/v2/sec/m/blobs/uploads/", "", 401,
			fmt.Sprintf(`Bearer realm="%s/token",service="modelctl",scope="repository:sec/m:push"`, base)},
		{"anonymous delete", "DELETE", "/v2/sec/m/manifests/sha256:" + strings.Repeat("0", 64), "", 401,
			fmt.Sprintf(`Bearer realm="%s/token",service="modelctl",scope="repository:sec/m:delete"`, base)},
		{"anonymous pull", "GET", "/v2/sec/m/tags/list", "", 401,
			fmt.Sprintf(`Bearer realm="%s/token",service="modelctl",scope="repository:sec/m:pull"`, base)},
		{"reader push", "POST", "/v2/sec/m/blobs/uploads/", "reader", 403, ""},
		{"reader delete", "DELETE", "/v2/sec/m/manifests/sha256:" + strings.Repeat("0", 64), "reader", 403, ""},
		{"writer delete", "DELETE", "/v2/sec/m/manifests/sha256:" + strings.Repeat("0", 64), "writer", 403, ""},
		{"writer push elsewhere", "POST", "/v2/other/m/blobs/uploads/", "writer", 403, ""},
		{"writer push", "POST", "/v2/sec/m/blobs/uploads/", "writer", 202, ""},
		{"admin ping", "GET", "/v2/", "admin", 200, ""},
		{"reader catalog", "GET", "/v2/_catalog", "reader", 403, ""},
		{"admin catalog", "GET", "/v2/_catalog", "admin", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := request(t, hc, tc.method, base+tc.path, tc.user)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s as %q: %d, want %d", tc.method, tc.path, tc.user, resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Fatalf("challenge %q, want %q", got, tc.challenge)
			}
		})
	}

	// The token flow as a Docker-style client runs it: a reader's token
	// carries pull only, and a push with it is 403.
	tok := readerToken(t, base, "repository:sec/m:pull,push")
	req, _ := http.NewRequest("POST", base+"/v2/sec/m/blobs/uploads/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("reader's token, push: %d, want 403", resp.StatusCode)
	}
}

// readerToken asks the token endpoint for scope with the reader's
// credentials, as Docker's token protocol does.
func readerToken(t *testing.T, base, scope string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/token?service=modelctl&scope="+scope, nil)
	req.SetBasicAuth("reader", "reader-pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("token endpoint: %d %v", resp.StatusCode, err)
	}
	return body.Token
}

func TestFailedLoginsRateLimited(t *testing.T) {
	srv := secureServe(t, "--log-format", "json")
	base := "http://" + srv.Addr
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("GET", base+"/v2/", nil)
		req.SetBasicAuth("writer", fmt.Sprintf("wrong-secret-%d", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i, resp.StatusCode)
		}
	}
	// The eleventh attempt is refused before the password is checked, even
	// with the right one.
	resp := request(t, http.DefaultClient, "GET", base+"/v2/", "writer")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after 10 failures: %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	srv.Stop()
	log := srv.Log.String()
	if n := strings.Count(log, `"msg":"failed login"`); n != 10 {
		t.Fatalf("%d failed logins logged, want 10:\n%s", n, log)
	}
	if strings.Contains(log, "wrong-secret") || strings.Contains(log, "writer-pw") {
		t.Fatalf("a password reached the log:\n%s", log)
	}
}

func TestConformanceWithAuth(t *testing.T) {
	srv := secureServe(t, "--log-level", "warn")
	runConformance(t, srv.Addr, "OCI_USERNAME=admin", "OCI_PASSWORD=admin-pw")
}

func TestORASLoginPush(t *testing.T) {
	oras := testenv.Tool(t, "oras")
	srv := secureServe(t, "--log-level", "warn")
	work := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "oras-config.json")
	want := writeRandomFile(t, filepath.Join(work, "weights.bin"), 3<<20)
	ref := srv.Addr + "/models/oras:v1"

	// Without credentials the push is refused.
	cmd := exec.Command(oras, "push", "--plain-http", "--registry-config", cfg, ref, "weights.bin:application/vnd.cncf.model.weight.v1.raw")
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("anonymous oras push succeeded:\n%s", out)
	}
	login := exec.Command(oras, "login", "--plain-http", "--registry-config", cfg, "-u", "writer", "--password-stdin", srv.Addr)
	login.Stdin = strings.NewReader("writer-pw\n")
	if out, err := login.CombinedOutput(); err != nil {
		t.Fatalf("oras login: %v\n%s", err, out)
	}
	run(t, work, oras, "push", "--plain-http", "--registry-config", cfg, ref, "weights.bin:application/vnd.cncf.model.weight.v1.raw")
	dst := t.TempDir()
	run(t, dst, oras, "pull", "--plain-http", "--registry-config", cfg, ref)
	if got := fileSHA256(t, filepath.Join(dst, "weights.bin")); got != want {
		t.Fatalf("pulled %s, pushed %s", got, want)
	}
	// A wrong password does not log in.
	bad := exec.Command(oras, "login", "--plain-http", "--registry-config", filepath.Join(t.TempDir(), "c.json"), "-u", "writer", "--password-stdin", srv.Addr)
	bad.Stdin = strings.NewReader("nope\n")
	if out, err := bad.CombinedOutput(); err == nil {
		t.Fatalf("oras login with a wrong password succeeded:\n%s", out)
	}
	// The reader logs in but may not push.
	rcfg := filepath.Join(t.TempDir(), "reader.json")
	rl := exec.Command(oras, "login", "--plain-http", "--registry-config", rcfg, "-u", "reader", "--password-stdin", srv.Addr)
	rl.Stdin = strings.NewReader("reader-pw\n")
	if out, err := rl.CombinedOutput(); err != nil {
		t.Fatalf("oras login reader: %v\n%s", err, out)
	}
	rp := exec.Command(oras, "push", "--plain-http", "--registry-config", rcfg, srv.Addr+"/models/oras:v2", "weights.bin:application/vnd.cncf.model.weight.v1.raw")
	rp.Dir = work
	if out, err := rp.CombinedOutput(); err == nil || !strings.Contains(string(out), `denied: user "reader" may not repository:models/oras:push`) {
		t.Fatalf("reader oras push: %v, want a refusal (403 DENIED):\n%s", err, out)
	}
}

func TestModelctlLoginPushPull(t *testing.T) {
	srv := secureServe(t, "--log-level", "warn", "--anonymous-pull")
	env := []string{"DOCKER_CONFIG=" + t.TempDir(), "MODELCTL_CACHE=" + t.TempDir()}
	model, err := synth.Generate(t.TempDir(), synth.Config{WeightBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ref := srv.Addr + "/models/m:v1"
	if _, stderr, err := mc(t, env, "", "push", model, ref); err == nil {
		t.Fatal("anonymous modelctl push succeeded")
	} else if !strings.Contains(stderr, "401") && !strings.Contains(strings.ToLower(stderr), "unauthorized") && !strings.Contains(strings.ToLower(stderr), "credential") {
		t.Fatalf("anonymous push error does not say why: %s", stderr)
	}
	if _, stderr, err := mc(t, env, "wrong\n", "login", srv.Addr, "-u", "writer", "--password-stdin"); err == nil {
		t.Fatalf("login with a wrong password succeeded: %s", stderr)
	}
	mustMC(t, env, "writer-pw\n", "login", srv.Addr, "-u", "writer", "--password-stdin")
	mustMC(t, env, "", "push", model, ref)
	// Anonymous pull is on: another user with no credentials pulls.
	anon := []string{"DOCKER_CONFIG=" + t.TempDir(), "MODELCTL_CACHE=" + t.TempDir()}
	out := filepath.Join(t.TempDir(), "out")
	mustMC(t, anon, "", "pull", ref, "-o", out)
	if fileSHA256(t, filepath.Join(out, filepath.Base(model))) != fileSHA256(t, model) {
		t.Fatal("pulled model differs")
	}
	// But anonymous push stays refused.
	if _, _, err := mc(t, anon, "", "push", model, srv.Addr+"/models/m:v2"); err == nil {
		t.Fatal("anonymous push succeeded with --anonymous-pull")
	}
	mustMC(t, env, "", "logout", srv.Addr)
	if _, _, err := mc(t, env, "", "push", model, srv.Addr+"/models/m:v3"); err == nil {
		t.Fatal("push after logout succeeded")
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "modelctl test registry"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSWithAuth(t *testing.T) {
	oras := testenv.Tool(t, "oras")
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	var lines []string
	for _, u := range secUsers {
		l, _ := regauth.HashPassword(u, u+"-pw")
		lines = append(lines, l)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	testenv.Start(t, addr, "", nil, testenv.Modelctl(t), "serve", "--addr", addr, "--root", filepath.Join(dir, "data"),
		"--htpasswd", htpasswd, "--tls-cert", certFile, "--tls-key", keyFile, "--log-level", "warn")

	pemBytes, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + addr
	resp := request(t, hc, "GET", base+"/v2/", "")
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="`+base+`/token"`) {
		t.Fatalf("TLS anonymous ping: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("not TLS 1.2+: %+v", resp.TLS)
	}
	if resp := request(t, hc, "GET", base+"/v2/", "admin"); resp.StatusCode != 200 {
		t.Fatalf("TLS admin ping: %d", resp.StatusCode)
	}
	// Without trusting the certificate, the client refuses the server.
	if _, err := http.Get(base + "/v2/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted certificate accepted: %v", err)
	}
	// Plain HTTP to the TLS port gets no registry answer.
	if resp := request(t, http.DefaultClient, "GET", "http://"+addr+"/v2/", "admin"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain HTTP on the TLS port: %d, want 400", resp.StatusCode)
	}

	cfg := filepath.Join(t.TempDir(), "oras.json")
	login := exec.Command(oras, "login", "--ca-file", certFile, "--registry-config", cfg, "-u", "writer", "--password-stdin", addr)
	login.Stdin = strings.NewReader("writer-pw\n")
	if out, err := login.CombinedOutput(); err != nil {
		t.Fatalf("oras login over TLS: %v\n%s", err, out)
	}
	work := t.TempDir()
	want := writeRandomFile(t, filepath.Join(work, "w.bin"), 1<<20)
	run(t, work, oras, "push", "--ca-file", certFile, "--registry-config", cfg, addr+"/tls/m:v1", "w.bin:application/vnd.cncf.model.weight.v1.raw")
	dst := t.TempDir()
	run(t, dst, oras, "pull", "--ca-file", certFile, "--registry-config", cfg, addr+"/tls/m:v1")
	if fileSHA256(t, filepath.Join(dst, "w.bin")) != want {
		t.Fatal("pulled over TLS differs")
	}
}

// TestSignVerifyCLI signs a pushed model with the binary and checks the
// verification policy: the signed artifact verifies; a tampered signature,
// a signature by another key, and no signature are refused.
func TestSignVerifyCLI(t *testing.T) {
	srv := secureServe(t, "--log-level", "warn")
	docker := t.TempDir()
	env := []string{"DOCKER_CONFIG=" + docker, "MODELCTL_CACHE=" + t.TempDir()}
	mustMC(t, env, "writer-pw\n", "login", srv.Addr, "-u", "writer", "--password-stdin")
	keys := t.TempDir()
	mustMC(t, env, "", "keygen", filepath.Join(keys, "release"))
	mustMC(t, env, "", "keygen", filepath.Join(keys, "other"), "--algorithm", "ed25519")
	if fi, err := os.Stat(filepath.Join(keys, "release.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", fi, err)
	}
	if _, _, err := mc(t, env, "", "keygen", filepath.Join(keys, "release")); err == nil {
		t.Fatal("keygen overwrote an existing key")
	}
	model, err := synth.Generate(t.TempDir(), synth.Config{WeightBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(keys, "release.pub")
	refSigned := srv.Addr + "/models/signed:good"
	mustMC(t, env, "", "push", model, refSigned)
	var sig signing.Signature
	if err := json.Unmarshal([]byte(mustMC(t, env, "", "sign", refSigned, "--key", filepath.Join(keys, "release.key"), "--json")), &sig); err != nil {
		t.Fatal(err)
	}
	var v signing.Verification
	if err := json.Unmarshal([]byte(mustMC(t, env, "", "verify-signature", refSigned, "--key", pub, "--json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Subject.Digest != sig.Subject.Digest || v.Referrer.Digest != sig.Referrer.Digest || v.KeyID != sig.KeyID {
		t.Fatalf("verified %+v, signed %+v", v, sig)
	}
	// The stored referrer is a Sigstore bundle in cosign's layout.
	creds := credentials.NewMemoryStore()
	_ = creds.Put(context.Background(), srv.Addr, auth.Credential{Username: "admin", Password: "admin-pw"})
	c, err := client.New(client.Options{CacheDir: t.TempDir(), Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	opts := signing.Options{Open: c.OrasRepository}
	repo, _, err := signing.Repository(refSigned, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := content.FetchAll(context.Background(), repo, sig.Referrer)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != signing.BundleMediaType || m.Subject == nil || m.Subject.Digest != sig.Subject.Digest ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != signing.BundleMediaType || m.Config.MediaType != ocispec.MediaTypeEmptyJSON ||
		m.Annotations[signing.AnnotationBundleContent] != "message-signature" {
		t.Fatalf("signature manifest not in the bundle layout:\n%s", raw)
	}

	// Three more models, each distinct content, signed badly in three ways.
	model2, _ := synth.Generate(t.TempDir(), synth.Config{WeightBytes: 256 << 10, Seed: 2})
	model3, _ := synth.Generate(t.TempDir(), synth.Config{WeightBytes: 256 << 10, Seed: 3})
	model4, _ := synth.Generate(t.TempDir(), synth.Config{WeightBytes: 256 << 10, Seed: 4})
	refOther, refMissing, refTampered := srv.Addr+"/models/signed:other", srv.Addr+"/models/signed:missing", srv.Addr+"/models/signed:tampered"
	mustMC(t, env, "", "push", model2, refOther)
	mustMC(t, env, "", "push", model3, refMissing)
	mustMC(t, env, "", "push", model4, refTampered)
	mustMC(t, env, "", "sign", refOther, "--key", filepath.Join(keys, "other.key"))
	var tsig signing.Signature
	if err := json.Unmarshal([]byte(mustMC(t, env, "", "sign", refTampered, "--key", filepath.Join(keys, "release.key"), "--json")), &tsig); err != nil {
		t.Fatal(err)
	}
	tamper(t, srv.Addr, opts, &tsig)

	for _, tc := range []struct {
		name, ref string
		want      error
		msg       string
	}{
		{"other key", refOther, signing.ErrInvalidSignature, "does not verify with any trusted key"},
		{"missing", refMissing, signing.ErrNoSignature, "no signature"},
		{"tampered", refTampered, signing.ErrInvalidSignature, "does not verify with any trusted key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := mc(t, env, "", "verify-signature", tc.ref, "--key", pub)
			if err == nil || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("verify-signature %s: %v, want refusal %q:\n%s", tc.ref, err, tc.msg, stderr)
			}
			// The library policy pull and sync call refuses it too.
			pk, _ := signing.LoadPublicKey(pub)
			d, err := signing.Require(context.Background(), tc.ref, signing.Policy{Required: true, Keys: []crypto.PublicKey{pk}}, opts)
			if !errors.Is(err, tc.want) || d != "" {
				t.Fatalf("Require %s = %q, %v; want %v", tc.ref, d, err, tc.want)
			}
		})
	}
}

// tamper replaces a signature with a copy whose signature bytes differ.
func tamper(t *testing.T, host string, opts signing.Options, sig *signing.Signature) {
	t.Helper()
	ctx := context.Background()
	repo, _, err := signing.Repository(host+"/models/signed@"+sig.Subject.Digest.String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := content.FetchAll(ctx, repo, sig.Referrer)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	_ = json.Unmarshal(raw, &m)
	bundle, err := content.FetchAll(ctx, repo, m.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	var b map[string]any
	_ = json.Unmarshal(bundle, &b)
	ms := b["messageSignature"].(map[string]any)
	s := []byte(ms["signature"].(string))
	s[12] ^= 'A' ^ 'B'
	if s[12] != 'A' && s[12] != 'B' {
		s[12] = 'A'
	}
	ms["signature"] = string(s)
	bad, _ := json.Marshal(b)
	layer := content.NewDescriptorFromBytes(signing.BundleMediaType, bad)
	if err := repo.Push(ctx, layer, bytes.NewReader(bad)); err != nil {
		t.Fatal(err)
	}
	subj := sig.Subject
	if _, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, signing.BundleMediaType, oras.PackManifestOptions{Subject: &subj, Layers: []ocispec.Descriptor{layer}}); err != nil {
		t.Fatal(err)
	}
	if err := repo.Delete(ctx, sig.Referrer); err != nil {
		t.Fatal(err)
	}
}
