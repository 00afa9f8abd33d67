// Command sigstore-verify checks a Sigstore bundle with sigstore-go, the
// Sigstore project's own Go verifier: it is how modelctl's tests show that
// the bundles `modelctl sign` writes are ones Sigstore tooling accepts, not
// a look-alike. It lives in its own module so the main module does not
// depend on sigstore-go.
//
//	sigstore-verify --bundle B.json --artifact MANIFEST --key PUB.pem
//
// Exit status 0: the bundle's signature over the artifact verifies with the
// key; 1: it does not; 2: bad usage.
package main

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

func main() {
	bundlePath := flag.String("bundle", "", "Sigstore bundle (JSON)")
	artifactPath := flag.String("artifact", "", "the signed bytes (the model manifest)")
	keyPath := flag.String("key", "", "trusted PEM public key")
	flag.Parse()
	if *bundlePath == "" || *artifactPath == "" || *keyPath == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*bundlePath, *artifactPath, *keyPath); err != nil {
		fmt.Fprintln(os.Stderr, "sigstore-verify:", err)
		os.Exit(1)
	}
	fmt.Println("verified")
}

func run(bundlePath, artifactPath, keyPath string) error {
	b, err := bundle.LoadJSONFromPath(bundlePath)
	if err != nil {
		return fmt.Errorf("load bundle: %w", err)
	}
	artifact, err := os.ReadFile(artifactPath)
	if err != nil {
		return err
	}
	pemBytes, err := os.ReadFile(keyPath)
	if err != nil {
		return err
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	hash := crypto.SHA256
	if _, ok := pub.(ed25519.PublicKey); ok {
		hash = crypto.Hash(0)
	}
	sv, err := signature.LoadVerifier(pub, hash)
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	trusted := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(sv, time.Time{}, time.Time{}), nil
	})
	// A key-signed bundle without a transparency log entry or timestamp is
	// checked at the current time, which sigstore-go allows for keys.
	v, err := verify.NewVerifier(trusted, verify.WithCurrentTime())
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	if _, err := v.Verify(b, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(artifact)), verify.WithKey())); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}
