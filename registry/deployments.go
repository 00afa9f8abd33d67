package registry

import (
	"github.com/modelctl/modelctl/registry/api"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/modelctl/modelctl/registry/storage"
)

// Deployment reports: `modelctl sync` tells the registry what it installed
// where, through POST /v2/<name>/_modelctl/deployments (push rights), and
// the web UI and `modelctl history --deployments` read them back through
// GET (pull rights).
//
// A report is kept per target, the triple (host, config path, key): one
// small object at
//
//	repositories/<name>/_deployments/<sha256(host NUL config NUL key)>
//
// holding the latest report and the few before it. Like the rest of the
// layout it lives in the storage driver, so it works on filesystem and S3
// storage and any replica serves it; "_deployments" starts with "_" like
// every reserved directory, so it never collides with a repository.

// Bounds on what a report may hold: the stored object stays far below the
// layout's small-object limit, and a repository's reports stay listable.
const (
	maxDeploymentBody     = 16 << 10
	maxDeploymentHost     = 253
	maxDeploymentConfig   = 1024
	maxDeploymentKey      = 256
	maxDeploymentStatus   = 64
	maxDeploymentDetail   = 1024
	maxDeploymentObject   = 256 << 10
	deploymentHistoryKept = 16
	// MaxDeploymentTargets bounds the targets of one repository; a report
	// for a new target beyond it is refused.
	MaxDeploymentTargets = 1000
	maxDeploymentRetries = 8
)

// The report types are the extension's, shared with the client.
type (
	DeploymentReport    = api.DeploymentReport
	Deployment          = api.Deployment
	DeploymentTarget    = api.DeploymentTarget
	DeploymentsResponse = api.DeploymentsResponse
)

// Check and health results a report may carry.
const (
	ResultPassed = api.ResultPassed
	ResultFailed = api.ResultFailed
	ResultNotRun = api.ResultNotRun
)

var reDeployments = regexp.MustCompile(`^/v2/(.+)/_modelctl/deployments$`)

func deploymentsPath(name string) string { return "repositories/" + name + "/_deployments" }

func deploymentPath(name string, r DeploymentReport) string {
	sum := sha256.Sum256([]byte(r.Host + "\x00" + r.Config + "\x00" + r.Key))
	return deploymentsPath(name) + "/" + hex.EncodeToString(sum[:])
}

// errDeploymentInvalid marks a report refused for its content.
var errDeploymentInvalid = errors.New("invalid deployment report")

// errTooManyTargets is returned for a new target beyond MaxDeploymentTargets.
var errTooManyTargets = errors.New("too many deployment targets")

// validateReport checks a report's fields: lengths, printable text, a
// digest of a supported algorithm, a time set and not far in the future,
// known results.
func validateReport(r *DeploymentReport, now time.Time) error {
	if r.Check == "" {
		r.Check = ResultNotRun
	}
	if r.Health == "" {
		r.Health = ResultNotRun
	}
	for _, f := range []struct {
		name, v string
		max     int
		need    bool
	}{
		{"host", r.Host, maxDeploymentHost, true},
		{"config", r.Config, maxDeploymentConfig, true},
		{"key", r.Key, maxDeploymentKey, true},
		{"status", r.Status, maxDeploymentStatus, false},
		{"detail", r.Detail, maxDeploymentDetail, false},
	} {
		if f.need && f.v == "" {
			return fmt.Errorf("%w: %s is empty", errDeploymentInvalid, f.name)
		}
		if len(f.v) > f.max {
			return fmt.Errorf("%w: %s is %d bytes, over %d", errDeploymentInvalid, f.name, len(f.v), f.max)
		}
		if !printable(f.v, f.name == "detail") {
			return fmt.Errorf("%w: %s holds invalid UTF-8 or control characters", errDeploymentInvalid, f.name)
		}
	}
	if _, err := storage.ParseDigest(string(r.Digest)); err != nil {
		return fmt.Errorf("%w: digest: %w", errDeploymentInvalid, err)
	}
	if r.Time.IsZero() {
		return fmt.Errorf("%w: time is missing", errDeploymentInvalid)
	}
	if r.Time.After(now.Add(24 * time.Hour)) {
		return fmt.Errorf("%w: time %s is more than a day ahead of the registry's clock", errDeploymentInvalid, r.Time.Format(time.RFC3339))
	}
	for _, res := range []struct{ name, v string }{{"check", r.Check}, {"health", r.Health}} {
		switch res.v {
		case ResultPassed, ResultFailed, ResultNotRun:
		default:
			return fmt.Errorf("%w: %s is %q, want %q, %q or %q", errDeploymentInvalid, res.name, res.v, ResultPassed, ResultFailed, ResultNotRun)
		}
	}
	return nil
}

// printable: valid UTF-8 without control characters (newlines and tabs
// allowed where multiline says so).
func printable(s string, multiline bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if unicode.IsControl(c) && !(multiline && (c == '\n' || c == '\t')) {
			return false
		}
	}
	return true
}

// RecordDeployment stores a validated report for repository name, made by
// user. The digest must name a manifest of the repository.
func RecordDeployment(ctx context.Context, store *storage.Store, name, user string, rep DeploymentReport) (Deployment, error) {
	now := time.Now().UTC()
	if err := validateReport(&rep, now); err != nil {
		return Deployment{}, err
	}
	if _, err := store.ResolveManifest(ctx, name, string(rep.Digest)); err != nil {
		return Deployment{}, fmt.Errorf("deployment of %s@%s: %w", name, rep.Digest, err)
	}
	rep.Time = rep.Time.UTC()
	d := Deployment{DeploymentReport: rep, User: user, Received: now}
	drv := store.Driver()
	p := deploymentPath(name, rep)
	for attempt := 0; attempt < maxDeploymentRetries; attempt++ {
		var t DeploymentTarget
		version := ""
		fi, err := drv.Stat(ctx, p)
		switch {
		case storage.IsNotFound(err):
			if err := checkTargetRoom(ctx, drv, name); err != nil {
				return Deployment{}, err
			}
		case err != nil:
			return Deployment{}, fmt.Errorf("deployment of %s: %w", name, err)
		default:
			version = fi.Version
			b, err := drv.GetContent(ctx, p, maxDeploymentObject)
			if err != nil {
				return Deployment{}, fmt.Errorf("deployment of %s: read the target's reports: %w", name, err)
			}
			if err := json.Unmarshal(b, &t); err != nil {
				// A corrupt object is replaced rather than blocking every
				// later report of this target.
				t = DeploymentTarget{}
			}
		}
		next := DeploymentTarget{Deployment: d}
		if !t.Received.IsZero() {
			next.Previous = append([]Deployment{t.Deployment}, t.Previous...)
			if len(next.Previous) > deploymentHistoryKept-1 {
				next.Previous = next.Previous[:deploymentHistoryKept-1]
			}
		}
		b, err := json.Marshal(next)
		if err != nil {
			return Deployment{}, err
		}
		err = drv.PutContentIf(ctx, p, b, version)
		if errors.Is(err, storage.ErrPreconditionFailed) {
			continue // another report of this target landed; read it again
		}
		if err != nil {
			return Deployment{}, fmt.Errorf("deployment of %s: store the report: %w", name, err)
		}
		return d, nil
	}
	return Deployment{}, fmt.Errorf("deployment of %s: %w (gave up after %d attempts)", name, storage.ErrPreconditionFailed, maxDeploymentRetries)
}

func checkTargetRoom(ctx context.Context, drv storage.Driver, name string) error {
	entries, err := drv.List(ctx, deploymentsPath(name))
	if err != nil && !storage.IsNotFound(err) {
		return fmt.Errorf("deployment of %s: list the targets: %w", name, err)
	}
	if len(entries) >= MaxDeploymentTargets {
		return fmt.Errorf("%w: %s already has reports of %d host/config/key targets", errTooManyTargets, name, len(entries))
	}
	return nil
}

// Deployments returns the reports of repository name, one per target,
// sorted by host, config and key. A repository without reports has none.
func Deployments(ctx context.Context, store *storage.Store, name string) ([]DeploymentTarget, error) {
	drv := store.Driver()
	entries, err := drv.List(ctx, deploymentsPath(name))
	if err != nil {
		if storage.IsNotFound(err) {
			return []DeploymentTarget{}, nil
		}
		return nil, fmt.Errorf("deployments of %s: %w", name, err)
	}
	out := make([]DeploymentTarget, 0, len(entries))
	for _, e := range entries {
		if len(e) != sha256.Size*2 {
			continue // not ours
		}
		b, err := drv.GetContent(ctx, deploymentsPath(name)+"/"+e, maxDeploymentObject)
		if err != nil {
			if storage.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("deployments of %s: %w", name, err)
		}
		var t DeploymentTarget
		if err := json.Unmarshal(b, &t); err != nil || t.Host == "" {
			continue // corrupt: skipped, and replaced by the next report
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		if a.Config != b.Config {
			return a.Config < b.Config
		}
		return a.Key < b.Key
	})
	return out, nil
}

func (s *Server) postDeployment(w http.ResponseWriter, r *http.Request, m []string) {
	name := m[1]
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, codeUnsupported, "a deployment report is application/json")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxDeploymentBody+1))
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	if len(body) > maxDeploymentBody {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("a deployment report is at most %d bytes", maxDeploymentBody))
		return
	}
	var rep DeploymentReport
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		writeError(w, http.StatusBadRequest, codeUnsupported, "body must be a JSON deployment report: "+err.Error())
		return
	}
	d, err := RecordDeployment(r.Context(), s.store, name, userOf(r), rep)
	switch {
	case errors.Is(err, errDeploymentInvalid):
		writeError(w, http.StatusBadRequest, codeUnsupported, err.Error())
		return
	case errors.Is(err, errTooManyTargets):
		writeError(w, http.StatusConflict, codeDenied, err.Error())
		return
	case err != nil:
		s.storageError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, "application/json", d)
}

func (s *Server) getDeployments(w http.ResponseWriter, r *http.Request, m []string) {
	name := m[1]
	if ok, err := s.store.RepositoryExists(r.Context(), name); err != nil {
		s.storageError(w, r, err)
		return
	} else if !ok {
		writeError(w, http.StatusNotFound, codeNameUnknown, "repository "+name+" is not known")
		return
	}
	ds, err := Deployments(r.Context(), s.store, name)
	if err != nil {
		s.storageError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, "application/json", DeploymentsResponse{Name: name, Deployments: ds})
}
