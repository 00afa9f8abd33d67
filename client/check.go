package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// RegistryCheck is the answer of GET /v2/ on a registry (doctor).
type RegistryCheck struct {
	Registry  string `json:"registry"`
	URL       string `json:"url"`
	Reachable bool   `json:"reachable"`
	Status    int    `json:"status,omitempty"`
	// AuthRequired: the registry answered 401; Challenge is its
	// WWW-Authenticate header and HaveCredentials whether the credential
	// store (what `modelctl login` fills) has some for it.
	AuthRequired    bool   `json:"auth_required"`
	Challenge       string `json:"challenge,omitempty"`
	HaveCredentials bool   `json:"have_credentials"`
	Error           string `json:"error,omitempty"`
}

// CheckRegistry asks the /v2/ endpoint of the registry ref names (a
// reference, or host[:port]) whether it answers and whether it wants
// credentials, over this client's connection.
func (c *Client) CheckRegistry(ctx context.Context, ref string, timeout time.Duration) RegistryCheck {
	host, _, err := ParseRegistry(ref)
	if r, rerr := ParseReference(ref); rerr == nil {
		host, err = r.Registry, nil
	}
	if strings.HasPrefix(ref, "s3://") {
		err = errors.New("s3:// references have no registry endpoint to check")
	}
	if err != nil {
		return RegistryCheck{Registry: ref, Error: err.Error()}
	}
	rc := RegistryCheck{Registry: host, URL: c.scheme(host) + "://" + host + "/v2/"}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rc.URL, nil)
	if err != nil {
		rc.Error = err.Error()
		return rc
	}
	resp, err := c.http.Do(req)
	if err != nil {
		rc.Error = Explain(err, host).Error()
		return rc
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	rc.Status = resp.StatusCode
	switch {
	case resp.StatusCode == http.StatusOK:
		rc.Reachable = true
	case resp.StatusCode == http.StatusUnauthorized:
		rc.Reachable, rc.AuthRequired = true, true
		rc.Challenge = resp.Header.Get("WWW-Authenticate")
	default:
		rc.Error = fmt.Sprintf("GET %s: %s (not an OCI registry?)", rc.URL, resp.Status)
	}
	if cr, err := c.creds.Get(ctx, host); err == nil && (cr.Username != "" || cr.Password != "" || cr.AccessToken != "" || cr.RefreshToken != "") {
		rc.HaveCredentials = true
	}
	return rc
}
