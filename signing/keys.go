package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	"github.com/modelctl/modelctl/internal/keys"
)

// Key algorithms GenerateKey accepts.
const (
	AlgECDSAP256 = "ecdsa-p256"
	AlgEd25519   = "ed25519"
)

// GenerateKey returns a new private key and its public key, both PEM:
// PKCS#8 "PRIVATE KEY" and PKIX "PUBLIC KEY", the encodings openssl and
// cosign's --key import read.
func GenerateKey(alg string) (privPEM, pubPEM []byte, err error) {
	var priv crypto.Signer
	switch alg {
	case AlgECDSAP256, "":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgEd25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, nil, fmt.Errorf("key algorithm %q: want %s or %s", alg, AlgECDSAP256, AlgEd25519)
	}
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), nil
}

func readPEM(path string) (*pem.Block, error) { return keys.ReadPEM(path) }

// LoadPrivateKey reads a PEM private key: PKCS#8 or SEC 1 ("EC PRIVATE
// KEY"), ECDSA P-256 or ed25519. Encrypted keys are not read.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	k, err := keys.LoadPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w (modelctl keygen writes one)", err)
	}
	return k, nil
}

// LoadPublicKey reads a PEM PKIX public key ("PUBLIC KEY"), ECDSA P-256 or
// ed25519.
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	blk, err := readPEM(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("public key %s: PEM block %q, want PUBLIC KEY", path, blk.Type)
	}
	key, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	if err := checkPublic(key); err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return key, nil
}

// LoadPublicKeys reads several public keys; a signature by any of them is
// accepted.
func LoadPublicKeys(paths ...string) ([]crypto.PublicKey, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("no public key given")
	}
	out := make([]crypto.PublicKey, 0, len(paths))
	for _, p := range paths {
		k, err := LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func checkPublic(k crypto.PublicKey) error { return keys.CheckPublic(k) }

// KeyID is the hex SHA-256 of a public key's PKIX DER encoding: the hint a
// bundle carries and what reports name a key by.
func KeyID(k crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
