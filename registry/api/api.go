// Package api holds the types of modelctl's registry extension endpoints,
// under /v2/<name>/_modelctl/, so that the server (package registry) and
// its clients (client/tags) read one definition:
//
//	GET /v2/<name>/_modelctl/tags/<tag>/history   → TagHistory
//	PUT /v2/<name>/_modelctl/tags/<tag>           TagMoveRequest → TagMoveResponse
//
// It imports nothing of modelctl.
package api

import (
	"time"

	digest "github.com/opencontainers/go-digest"
)

// TagMove is one move of a tag: what it pointed at before (From, empty
// when it was created) and after (To, empty when it was deleted), when and
// by whom.
type TagMove struct {
	Time time.Time     `json:"time"`
	Tag  string        `json:"tag"`
	From digest.Digest `json:"from,omitempty"`
	To   digest.Digest `json:"to,omitempty"`
	User string        `json:"user,omitempty"`
}

// TagHistory answers GET /v2/<name>/_modelctl/tags/<tag>/history, oldest
// move first.
type TagHistory struct {
	Name    string    `json:"name"`
	Tag     string    `json:"tag"`
	History []TagMove `json:"history"`
}

// TagMoveRequest is the body of PUT /v2/<name>/_modelctl/tags/<tag>: point
// the tag at Digest, and, when From is set, only if it points at From now
// (a compare-and-swap: 412 Precondition Failed otherwise).
type TagMoveRequest struct {
	Digest digest.Digest `json:"digest"`
	From   digest.Digest `json:"from,omitempty"`
}

// TagMoveResponse answers a tag move.
type TagMoveResponse struct {
	Tag  string        `json:"tag"`
	From digest.Digest `json:"from,omitempty"`
	To   digest.Digest `json:"to"`
}

// Deployment reports (POST and GET /v2/<name>/_modelctl/deployments):
// after a sync, a client says what it installed where.

// Results of a check or a health command in a DeploymentReport.
const (
	ResultPassed = "passed"
	ResultFailed = "failed"
	ResultNotRun = "not run"
)

// DeploymentReport is what a client reports after installing an artifact.
type DeploymentReport struct {
	// Host is the machine's name, Config the path of its config file and
	// Key the section of that config the artifact was installed for.
	Host   string `json:"host"`
	Config string `json:"config"`
	Key    string `json:"key"`
	// Digest is the manifest installed; it must be in the repository.
	Digest digest.Digest `json:"digest"`
	// Time is when the client installed or confirmed it.
	Time time.Time `json:"time"`
	// Status is what the sync did ("installed", "up to date").
	Status string `json:"status,omitempty"`
	// Check is the result of running the model here against its reference
	// (sync --check), Health that of the service's health command:
	// ResultPassed, ResultFailed or ResultNotRun ("" means not run).
	Check  string `json:"check,omitempty"`
	Health string `json:"health,omitempty"`
	// Detail is free text (a failure's reason), shown as text.
	Detail string `json:"detail,omitempty"`
}

// Deployment is a stored report: what the client said, who said it (the
// authenticated user, "" when anonymous) and when the registry received it.
type Deployment struct {
	DeploymentReport
	User     string    `json:"user,omitempty"`
	Received time.Time `json:"received"`
}

// DeploymentTarget is the latest report for one target (host, config,
// key) and the reports before it, newest first.
type DeploymentTarget struct {
	Deployment
	Previous []Deployment `json:"previous,omitempty"`
}

// DeploymentsResponse is the body of GET .../_modelctl/deployments.
type DeploymentsResponse struct {
	Name        string             `json:"name"`
	Deployments []DeploymentTarget `json:"deployments"`
}
