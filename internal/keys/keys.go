// Package keys reads the PEM private keys modelctl signs with (artifact
// signatures, registry tokens): ECDSA P-256 or ed25519, PKCS#8 or SEC 1,
// unencrypted.
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// MaxFile bounds what is read of a key file: a key is a few hundred bytes.
const MaxFile = 64 << 10

// ReadPEM reads the first PEM block of a key file.
func ReadPEM(path string) (*pem.Block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a key", path, MaxFile)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	return blk, nil
}

// LoadPrivate reads an unencrypted PEM private key, PKCS#8 ("PRIVATE KEY")
// or SEC 1 ("EC PRIVATE KEY"), ECDSA P-256 or ed25519.
func LoadPrivate(path string) (crypto.Signer, error) {
	blk, err := ReadPEM(path)
	if err != nil {
		return nil, err
	}
	var key any
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q, want an unencrypted PRIVATE KEY or EC PRIVATE KEY", path, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T, want ECDSA P-256 or ed25519", path, key)
	}
	if err := CheckPublic(s.Public()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// CheckPublic accepts ECDSA P-256 and ed25519 public keys.
func CheckPublic(k crypto.PublicKey) error {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA curve %s, want P-256", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("%T, want ECDSA P-256 or ed25519", k)
}
