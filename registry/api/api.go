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
