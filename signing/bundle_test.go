package signing

import (
	"crypto"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestVerifyBundle(t *testing.T) {
	manifest := []byte(`{"schemaVersion":2}`)
	d := digest.SHA256.FromBytes(manifest)
	other := []byte(`{"schemaVersion":3}`)
	for _, alg := range []string{AlgECDSAP256, AlgEd25519} {
		privPEM, _, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		key := mustParse(t, privPEM)
		otherKey := mustParse(t, must(GenerateKey(alg)))
		good, err := newBundle(key, manifest, d)
		if err != nil {
			t.Fatal(err)
		}
		forOther, _ := newBundle(key, other, digest.SHA256.FromBytes(other))
		edit := func(f func(b map[string]any)) []byte {
			var b map[string]any
			_ = json.Unmarshal(good, &b)
			f(b)
			out, _ := json.Marshal(b)
			return out
		}
		for _, tc := range []struct {
			name string
			raw  []byte
			keys []crypto.PublicKey
			want string
		}{
			{"good", good, []crypto.PublicKey{otherKey.Public(), key.Public()}, ""},
			{"other key", good, []crypto.PublicKey{otherKey.Public()}, "does not verify"},
			{"signs another manifest", forOther, []crypto.PublicKey{key.Public()}, "not the artifact"},
			{"not json", []byte("{"), []crypto.PublicKey{key.Public()}, "parse bundle"},
			{"wrong media type", edit(func(b map[string]any) { b["mediaType"] = "application/json" }), []crypto.PublicKey{key.Public()}, "mediaType"},
			{"dsse only", edit(func(b map[string]any) { delete(b, "messageSignature"); b["dsseEnvelope"] = map[string]any{} }), []crypto.PublicKey{key.Public()}, "no message signature"},
			{"sha512 claim", edit(func(b map[string]any) {
				b["messageSignature"].(map[string]any)["messageDigest"].(map[string]any)["algorithm"] = "SHA2_512"
			}), []crypto.PublicKey{key.Public()}, "not the artifact"},
			{"empty signature", edit(func(b map[string]any) { b["messageSignature"].(map[string]any)["signature"] = "" }), []crypto.PublicKey{key.Public()}, "does not verify"},
		} {
			t.Run(alg+"/"+tc.name, func(t *testing.T) {
				id, err := verifyBundle(tc.raw, manifest, d, tc.keys)
				if tc.want == "" {
					if err != nil || id != KeyID(key.Public()) {
						t.Fatalf("verifyBundle = %q, %v; want key %s", id, err, KeyID(key.Public()))
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("verifyBundle err = %v, want %q", err, tc.want)
				}
			})
		}
	}
}

func TestBundleShape(t *testing.T) {
	manifest := []byte(`{}`)
	key := mustParse(t, must(GenerateKey(AlgECDSAP256)))
	raw, err := newBundle(key, manifest, digest.SHA256.FromBytes(manifest))
	if err != nil {
		t.Fatal(err)
	}
	// The protobuf-JSON field names of a v0.3 bundle with a public key.
	var b struct {
		MediaType            string `json:"mediaType"`
		VerificationMaterial struct {
			PublicKey struct {
				Hint string `json:"hint"`
			} `json:"publicKey"`
		} `json:"verificationMaterial"`
		MessageSignature struct {
			MessageDigest struct {
				Algorithm string `json:"algorithm"`
				Digest    string `json:"digest"`
			} `json:"messageDigest"`
			Signature string `json:"signature"`
		} `json:"messageSignature"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	// base64 of sha256("{}")
	if b.MediaType != BundleMediaType || b.VerificationMaterial.PublicKey.Hint != KeyID(key.Public()) ||
		b.MessageSignature.MessageDigest.Algorithm != "SHA2_256" ||
		b.MessageSignature.MessageDigest.Digest != "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=" || b.MessageSignature.Signature == "" {
		t.Fatalf("bundle shape: %s", raw)
	}
}

func TestLoadKeysRefuseOthers(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, pem, want string }{
		{"garbage", "not a key", "no PEM block"},
		{"encrypted", "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n", "unencrypted"},
	} {
		p := dir + "/" + tc.name
		if err := writeFile(p, tc.pem); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadPrivateKey(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	_, pub, _ := GenerateKey(AlgEd25519)
	_ = writeFile(dir+"/pub", string(pub))
	if _, err := LoadPrivateKey(dir + "/pub"); err == nil {
		t.Error("a public key loaded as a private key")
	}
	if _, err := LoadPublicKeys(); err == nil {
		t.Error("no keys accepted")
	}
	if _, _, err := GenerateKey("rsa"); err == nil {
		t.Error("rsa accepted")
	}
}

// FuzzVerifyBundle: a bundle fetched from a registry is hostile input. No
// input panics, and none verifies without the key's signature.
func FuzzVerifyBundle(f *testing.F) {
	manifest := []byte(`{"schemaVersion":2}`)
	d := digest.SHA256.FromBytes(manifest)
	signer := mustParse(nil, must(GenerateKey(AlgECDSAP256)))
	good, _ := newBundle(signer, manifest, d)
	f.Add(good)
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"AAAA"},"signature":"AAAA"}}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{}}`))
	// The verifier trusts a different key: nothing may verify.
	trusted := mustParse(nil, must(GenerateKey(AlgECDSAP256))).Public()
	f.Fuzz(func(t *testing.T, raw []byte) {
		if _, err := verifyBundle(raw, manifest, d, []crypto.PublicKey{trusted}); err == nil {
			t.Fatalf("a bundle verified without the trusted key's signature: %s", raw)
		}
	})
}

func TestNewPolicy(t *testing.T) {
	dir := t.TempDir()
	_, pub, _ := GenerateKey(AlgECDSAP256)
	_ = writeFile(dir+"/k.pub", string(pub))
	if p, err := NewPolicy(false); err != nil || p.Required {
		t.Fatalf("no policy: %+v %v", p, err)
	}
	if p, err := NewPolicy(true, dir+"/k.pub"); err != nil || !p.Required || len(p.Keys) != 1 {
		t.Fatalf("required with a key: %+v %v", p, err)
	}
	for _, tc := range []struct {
		req  bool
		keys []string
	}{{true, nil}, {false, []string{dir + "/k.pub"}}, {true, []string{dir + "/missing.pub"}}} {
		if _, err := NewPolicy(tc.req, tc.keys...); err == nil {
			t.Errorf("NewPolicy(%v, %v) accepted", tc.req, tc.keys)
		}
	}
}
