package auth

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Actions a policy grants. "catalog" (listing repositories) and "metrics"
// (reading /metrics) are registry-wide; the others are per repository.
const (
	ActionPull    = "pull"
	ActionPush    = "push"
	ActionDelete  = "delete"
	ActionCatalog = "catalog"
	ActionMetrics = "metrics"
)

var knownActions = []string{ActionPull, ActionPush, ActionDelete, ActionCatalog, ActionMetrics}

// registryWide reports whether action is granted registry-wide, whatever
// the rule's repositories.
func registryWide(action string) bool { return action == ActionCatalog || action == ActionMetrics }

// Policy maps users and groups to actions on repositories matched by globs.
// Rules only grant; an action no rule grants is refused. The YAML form:
//
//	groups:
//	  ml: [alice, bob]
//	rules:
//	  - repositories: ["sarai/**"]     # "*" matches within one path segment, "**" any number of segments
//	    groups: [ml]
//	    actions: [pull, push]
//	  - repositories: ["**"]
//	    users: [ci]
//	    actions: [pull]
//	  - repositories: ["public/**"]
//	    users: ["*"]                   # any authenticated user
//	    actions: [pull]
//	  - repositories: ["public/**"]
//	    anonymous: true                # requests without credentials
//	    actions: [pull]
type Policy struct {
	Groups map[string][]string `yaml:"groups"`
	Rules  []Rule              `yaml:"rules"`
}

// Rule grants Actions on Repositories to Users, Groups, or anonymous requests.
type Rule struct {
	Repositories []string `yaml:"repositories"`
	Users        []string `yaml:"users"`
	Groups       []string `yaml:"groups"`
	Anonymous    bool     `yaml:"anonymous"`
	Actions      []string `yaml:"actions"`
}

const maxPolicySize = 4 << 20

// LoadPolicy reads and checks a policy file.
func LoadPolicy(file string) (*Policy, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("auth policy: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("auth policy %s: %w", file, err)
	}
	if len(b) > maxPolicySize {
		return nil, fmt.Errorf("auth policy %s: larger than %d bytes", file, maxPolicySize)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("auth policy %s: %w", file, err)
	}
	return p, nil
}

// ParsePolicy parses a policy document, refusing unknown fields, unknown
// actions and malformed globs, so that a typo does not silently grant or
// deny.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && err != io.EOF {
		return nil, fmt.Errorf("parse: %w", err)
	}
	for i, r := range p.Rules {
		if len(r.Repositories) == 0 {
			return nil, fmt.Errorf("rule %d: no repositories", i+1)
		}
		if len(r.Users) == 0 && len(r.Groups) == 0 && !r.Anonymous {
			return nil, fmt.Errorf("rule %d: names no users, groups, or anonymous", i+1)
		}
		if len(r.Actions) == 0 {
			return nil, fmt.Errorf("rule %d: no actions", i+1)
		}
		for _, a := range r.Actions {
			if a != "*" && !slices.Contains(knownActions, a) {
				return nil, fmt.Errorf("rule %d: unknown action %q (want pull, push, delete, catalog, metrics or *)", i+1, a)
			}
		}
		for _, g := range r.Repositories {
			if err := checkGlob(g); err != nil {
				return nil, fmt.Errorf("rule %d: repository glob %q: %w", i+1, g, err)
			}
		}
		for _, g := range r.Groups {
			if _, ok := p.Groups[g]; !ok {
				return nil, fmt.Errorf("rule %d: group %q is not defined under groups", i+1, g)
			}
		}
	}
	return &p, nil
}

func checkGlob(g string) error {
	if g == "" {
		return fmt.Errorf("empty")
	}
	for _, seg := range strings.Split(g, "/") {
		if seg == "**" {
			continue
		}
		if _, err := path.Match(seg, ""); err != nil {
			return err
		}
	}
	return nil
}

// matchGlob matches a repository name against a glob whose segments are
// path.Match patterns, with "**" standing for any number of segments.
func matchGlob(glob, name string) bool {
	return matchSegments(strings.Split(glob, "/"), strings.Split(name, "/"))
}

func matchSegments(g, n []string) bool {
	for len(g) > 0 {
		if g[0] == "**" {
			for i := 0; i <= len(n); i++ {
				if matchSegments(g[1:], n[i:]) {
					return true
				}
			}
			return false
		}
		if len(n) == 0 {
			return false
		}
		if ok, _ := path.Match(g[0], n[0]); !ok {
			return false
		}
		g, n = g[1:], n[1:]
	}
	return len(n) == 0
}

// Allowed returns the subset of actions user may perform on repository
// name; user "" is anonymous. For "catalog" and "metrics", name is ignored.
func (p *Policy) Allowed(user, name string, actions []string) []string {
	var out []string
	for _, a := range actions {
		if p.allows(user, name, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func (p *Policy) allows(user, name, action string) bool {
	for _, r := range p.Rules {
		if !slices.Contains(r.Actions, action) && !slices.Contains(r.Actions, "*") {
			continue
		}
		if !p.ruleNames(r, user) {
			continue
		}
		if registryWide(action) {
			return true
		}
		for _, g := range r.Repositories {
			if matchGlob(g, name) {
				return true
			}
		}
	}
	return false
}

func (p *Policy) ruleNames(r Rule, user string) bool {
	if user == "" {
		return r.Anonymous
	}
	if slices.Contains(r.Users, user) || slices.Contains(r.Users, "*") {
		return true
	}
	for _, g := range r.Groups {
		if slices.Contains(p.Groups[g], user) {
			return true
		}
	}
	return false
}

// Everywhere reports whether user may do action on every repository: a
// rule naming user grants it with the glob "**".
func (p *Policy) Everywhere(user, action string) bool {
	for _, r := range p.Rules {
		if (slices.Contains(r.Actions, action) || slices.Contains(r.Actions, "*")) && p.ruleNames(r, user) && slices.Contains(r.Repositories, "**") {
			return true
		}
	}
	return false
}

// AllowAll is the policy without a policy file: every authenticated user
// may do everything, and anonymous requests may pull when anonymousPull.
func AllowAll(anonymousPull bool) *Policy {
	p := &Policy{Rules: []Rule{{Repositories: []string{"**"}, Users: []string{"*"}, Actions: []string{"*"}}}}
	if anonymousPull {
		p.Rules = append(p.Rules, Rule{Repositories: []string{"**"}, Anonymous: true, Actions: []string{ActionPull}})
	}
	return p
}

// WithAnonymousPull returns p plus anonymous pull of every repository.
func (p *Policy) WithAnonymousPull() *Policy {
	q := *p
	q.Rules = append(slices.Clone(p.Rules), Rule{Repositories: []string{"**"}, Anonymous: true, Actions: []string{ActionPull}})
	return &q
}
