package client

import (
	"github.com/modelctl/modelctl/registry/api"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Deployment reports: after a sync, the client tells the registry what it
// installed where (POST /v2/<name>/_modelctl/deployments, modelctl's
// registry only; push rights where authentication is on), and reads the
// reports back for `history --deployments`. It depends on the rest of the
// client only through Endpoint.Do.

// Results of a check or a health command in a DeploymentReport.
const (
	DeploymentPassed = api.ResultPassed
	DeploymentFailed = api.ResultFailed
	DeploymentNotRun = api.ResultNotRun
)

// The report types are the registry extension's (registry/api).
type (
	DeploymentReport = api.DeploymentReport
	DeploymentRecord = api.Deployment
	DeploymentTarget = api.DeploymentTarget
)

// maxDeploymentsResponse bounds what a GET of the reports may return.
const maxDeploymentsResponse = 64 << 20

func deploymentsPath(name string) string { return "/v2/" + name + "/_modelctl/deployments" }

// ReportDeployment sends one report for the repository e reaches (opened
// with push scope: the registry wants push rights for a report). Callers
// treat a failure as a warning: an installation never fails because its
// report did.
func ReportDeployment(ctx context.Context, e *Endpoint, name string, r DeploymentReport) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("report deployment of %s: %w", name, err)
	}
	resp, err := e.Do(ctx, http.MethodPost, deploymentsPath(name), body, http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return fmt.Errorf("report deployment of %s: %w", name, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

// ListDeployments returns the reports of the repository e reaches, one per
// host, config and key.
func ListDeployments(ctx context.Context, e *Endpoint, name string) ([]DeploymentTarget, error) {
	resp, err := e.Do(ctx, http.MethodGet, deploymentsPath(name), nil, nil)
	if err != nil {
		var he *HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound && he.Code == "" {
			return nil, fmt.Errorf("deployments of %s: the registry keeps no deployment reports (only modelctl serve does): %w", name, err)
		}
		return nil, fmt.Errorf("deployments of %s: %w", name, err)
	}
	defer resp.Body.Close()
	var out api.DeploymentsResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDeploymentsResponse)).Decode(&out); err != nil {
		return nil, fmt.Errorf("deployments of %s: unreadable answer: %w", name, err)
	}
	return out.Deployments, nil
}
