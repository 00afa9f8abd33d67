package pin

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	digest "github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/signing"
)

// signedRecord is written next to an installation's record once its
// signature verified: which key verified it. A later sync of the same pin
// under require_signature trusts it only for a key the section still
// names; anything else is verified against the registry again.
type signedRecord struct {
	Digest digest.Digest `json:"digest"`
	KeyID  string        `json:"keyId"`
}

func signedPath(root string, d digest.Digest) string { return recordPath(root, d) + ".signature" }

// requireSignature verifies that ref (a digest reference) is signed by one
// of the section's keys and returns the ID of the key that verified it.
func requireSignature(ctx context.Context, ref client.Reference, s Section, opts signing.Options) (string, error) {
	pol, err := signing.NewPolicy(true, s.SigningKey)
	if err != nil {
		return "", err
	}
	v, err := signing.Verify(ctx, ref.String(), pol.Keys, opts)
	if err != nil {
		return "", fmt.Errorf("signature required: %w", err)
	}
	if v.Subject.Digest != ref.Digest {
		return "", fmt.Errorf("signature required: verified %s, want %s", v.Subject.Digest, ref.Digest)
	}
	return v.KeyID, nil
}

func writeSigned(root string, d digest.Digest, keyID string) error {
	b, _ := json.Marshal(signedRecord{Digest: d, KeyID: keyID})
	return writeAtomic(signedPath(root, d), b)
}

// installedSigned reports whether the installation at root recorded a
// signature of d verified by one of the section's keys.
func installedSigned(root string, d digest.Digest, s Section) bool {
	b, err := os.ReadFile(signedPath(root, d))
	if err != nil {
		return false
	}
	var r signedRecord
	if json.Unmarshal(b, &r) != nil || r.Digest != d || r.KeyID == "" {
		return false
	}
	pol, err := signing.NewPolicy(true, s.SigningKey)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(pol.Keys, func(k crypto.PublicKey) bool { return signing.KeyID(k) == r.KeyID })
}
