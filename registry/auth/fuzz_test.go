package auth

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

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
				if !registryWide(a.Name) {
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

// FuzzParseToken: a bearer token is attacker input. Whatever parses must be
// a token this signer issued, with the claims it was issued with: no
// mutation of a signed token may change who it names or what it grants.
func FuzzParseToken(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	ts, err := newTokenSigner(k, "modelctl", "modelctl")
	if err != nil {
		f.Fatal(err)
	}
	grants := []access{{Type: "repository", Name: "sarai/audio", Actions: []string{"pull"}}}
	tok, _, err := ts.sign("alice", grants, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{tok, tok + "x", strings.Replace(tok, ".", "..", 1), "e30.e30.", "eyJhbGciOiJub25lIn0.e30.", strings.Repeat("A", 20<<10)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ts.parse(s)
		if err != nil {
			return
		}
		if c.Subject != "alice" || len(c.Access) != 1 || c.Access[0].Name != "sarai/audio" || !slices.Equal(c.Access[0].Actions, []string{"pull"}) {
			t.Fatalf("a changed token parsed: subject %q access %+v", c.Subject, c.Access)
		}
	})
}

// FuzzParseHtpasswd: an htpasswd file parses into users with usable names
// and hashes, or is refused; checking any password against what parsed
// does not panic.
func FuzzParseHtpasswd(f *testing.F) {
	line, err := hashPassword("alice", "pw", bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{line, line + "\n" + line, "# c\n\n" + line + "\n", "bob:$apr1$x$y", "bob:", ":x", "a:$2y$04$" + strings.Repeat("x", 53), "a:$2a$99$x"} {
		f.Add(s, "pw")
	}
	f.Fuzz(func(t *testing.T, file, password string) {
		// Costs above 6 only make the run slow: what they exercise is the
		// same code.
		sc := bufio.NewScanner(strings.NewReader(file))
		for sc.Scan() {
			if _, h, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok {
				if c, err := bcrypt.Cost([]byte(h)); err == nil && c > 6 {
					return
				}
			}
		}
		h, err := ParseHtpasswd(strings.NewReader(file))
		if err != nil {
			return
		}
		users := h.Users()
		if len(users) == 0 {
			t.Fatal("parsed with no users")
		}
		for _, u := range users {
			if u == "" || strings.ContainsAny(u, ":\n") {
				t.Fatalf("user name %q", u)
			}
			h.Authenticate(u, password)
		}
		h.Authenticate("nobody-"+password, password)
	})
}
