package auth

import (
	"strings"
	"testing"

	"github.com/modelctl/modelctl/registry/storage"
)

// FuzzParseScopes: token requests carry attacker-chosen scopes; whatever
// is accepted names a valid repository (or the catalog), and no more than
// maxScopes of them.
func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"repository:a/b:pull,push", "registry:catalog:*", "repository:a:b:c:pull", "repository::pull", "x:y:z repository:q:*", strings.Repeat("repository:a:pull ", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseScopes([]string{s})
		if err != nil {
			return
		}
		if len(got) > maxScopes {
			t.Fatalf("%d scopes accepted", len(got))
		}
		for _, a := range got {
			switch a.Type {
			case "repository":
				if storage.ValidateName(a.Name) != nil {
					t.Fatalf("invalid repository %q accepted", a.Name)
				}
			case "registry":
				if a.Name != "catalog" {
					t.Fatalf("registry resource %q accepted", a.Name)
				}
			default:
				t.Fatalf("resource type %q accepted", a.Type)
			}
		}
	})
}

// FuzzPolicy: a policy either parses or is refused, and matching any name
// against what parsed does not panic or hang.
func FuzzPolicy(f *testing.F) {
	f.Add(testPolicy, "alice", "sarai/audio")
	f.Add("rules:\n- repositories: ['**/**/**/**/**/**/x']\n  users: ['*']\n  actions: [pull]\n", "u", "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p")
	f.Fuzz(func(t *testing.T, doc, user, name string) {
		p, err := ParsePolicy([]byte(doc))
		if err != nil {
			return
		}
		if len(name) > 255 || strings.Count(name, "/") > 32 {
			return // names are validated before they reach the policy
		}
		_ = p.Allowed(user, name, []string{ActionPull, ActionPush, ActionDelete})
		_ = p.Everywhere(user, ActionPull)
	})
}
