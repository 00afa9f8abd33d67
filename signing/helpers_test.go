package signing

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
)

func must(priv, _ []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return priv
}

func mustParse(_ *testing.T, privPEM []byte) crypto.Signer {
	blk, _ := pem.Decode(privPEM)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		panic(err)
	}
	return k.(crypto.Signer)
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }
