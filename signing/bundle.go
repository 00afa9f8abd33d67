package signing

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// BundleMediaType is the Sigstore bundle v0.3 media type: the bundle's own
// mediaType, the referrer manifest's artifactType and its layer's type, as
// cosign's bundle specification lays them out in a registry.
const BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// Annotations of the referrer manifest, from cosign's bundle specification.
const (
	AnnotationBundleContent = "dev.sigstore.bundle.content"
	contentMessageSignature = "message-signature"
)

// Bundle is the JSON form of a Sigstore bundle (protobuf-specs
// dev.sigstore.bundle.v1.Bundle) restricted to what modelctl writes and
// checks: a message signature over the subject manifest, with a public key
// as verification material. []byte fields are base64, as protobuf's JSON
// mapping writes bytes.
type Bundle struct {
	MediaType            string               `json:"mediaType"`
	VerificationMaterial verificationMaterial `json:"verificationMaterial"`
	MessageSignature     *messageSignature    `json:"messageSignature,omitempty"`
	DSSEEnvelope         json.RawMessage      `json:"dsseEnvelope,omitempty"`
}

type verificationMaterial struct {
	PublicKey                 *publicKeyIdentifier `json:"publicKey,omitempty"`
	Certificate               json.RawMessage      `json:"certificate,omitempty"`
	X509CertificateChain      json.RawMessage      `json:"x509CertificateChain,omitempty"`
	TlogEntries               []json.RawMessage    `json:"tlogEntries"`
	TimestampVerificationData json.RawMessage      `json:"timestampVerificationData,omitempty"`
}

type publicKeyIdentifier struct {
	Hint string `json:"hint"`
}

type messageSignature struct {
	MessageDigest *hashOutput `json:"messageDigest"`
	Signature     []byte      `json:"signature"`
}

type hashOutput struct {
	Algorithm string `json:"algorithm"`
	Digest    []byte `json:"digest"`
}

// newBundle signs manifest (the bytes of the subject, whose sha256 digest is
// d). ECDSA signs the SHA-256 digest (the message digest the bundle
// records); ed25519 signs the message itself, as Sigstore's PKIX_ED25519
// key details specify.
func newBundle(key crypto.Signer, manifest []byte, d digest.Digest) ([]byte, error) {
	if d.Algorithm() != digest.SHA256 || digest.SHA256.FromBytes(manifest) != d {
		return nil, fmt.Errorf("sign: manifest bytes do not hash to %s", d)
	}
	sum, err := hexBytes(d)
	if err != nil {
		return nil, err
	}
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		sig, err = ecdsa.SignASN1(rand.Reader, k, sum)
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, manifest)
	default:
		err = fmt.Errorf("sign: key %T, want ECDSA P-256 or ed25519", key)
	}
	if err != nil {
		return nil, err
	}
	b := Bundle{
		MediaType: BundleMediaType,
		VerificationMaterial: verificationMaterial{
			PublicKey:   &publicKeyIdentifier{Hint: KeyID(key.Public())},
			TlogEntries: []json.RawMessage{},
		},
		MessageSignature: &messageSignature{
			MessageDigest: &hashOutput{Algorithm: "SHA2_256", Digest: sum},
			Signature:     sig,
		},
	}
	return json.Marshal(b)
}

func hexBytes(d digest.Digest) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return hex.DecodeString(d.Encoded())
}

// Errors a verification returns, for errors.Is.
var (
	// ErrNoSignature: the artifact has no Sigstore bundle referrer at all.
	ErrNoSignature = errors.New("no signature")
	// ErrInvalidSignature: bundles exist but none verifies with a trusted key.
	ErrInvalidSignature = errors.New("no valid signature by a trusted key")
)

// verifyBundle checks that raw is a bundle signing the manifest whose bytes
// are manifest and digest d, by one of keys; it returns that key's ID.
func verifyBundle(raw, manifest []byte, d digest.Digest, keys []crypto.PublicKey) (string, error) {
	var b Bundle
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&b); err != nil {
		return "", fmt.Errorf("parse bundle: %w", err)
	}
	if b.MediaType != BundleMediaType {
		return "", fmt.Errorf("bundle mediaType %q, want %q", b.MediaType, BundleMediaType)
	}
	ms := b.MessageSignature
	if ms == nil || ms.MessageDigest == nil {
		return "", errors.New("bundle holds no message signature (DSSE attestations are not signatures of the model)")
	}
	want, err := hexBytes(d)
	if err != nil {
		return "", err
	}
	if ms.MessageDigest.Algorithm != "SHA2_256" || !bytes.Equal(ms.MessageDigest.Digest, want) {
		return "", fmt.Errorf("bundle signs digest %s:%x, not the artifact %s", ms.MessageDigest.Algorithm, ms.MessageDigest.Digest, d)
	}
	if digest.SHA256.FromBytes(manifest) != d {
		return "", fmt.Errorf("manifest bytes do not hash to %s", d)
	}
	for _, k := range keys {
		ok := false
		switch k := k.(type) {
		case *ecdsa.PublicKey:
			ok = ecdsa.VerifyASN1(k, want, ms.Signature)
		case ed25519.PublicKey:
			ok = len(ms.Signature) == ed25519.SignatureSize && ed25519.Verify(k, manifest, ms.Signature)
		}
		if ok {
			return KeyID(k), nil
		}
	}
	hint := ""
	if b.VerificationMaterial.PublicKey != nil {
		hint = b.VerificationMaterial.PublicKey.Hint
	}
	return "", fmt.Errorf("signature (key hint %.16s) does not verify with any trusted key", hint)
}
