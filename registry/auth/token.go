package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/modelctl/modelctl/registry/storage"
)

// tokenClaims are the claims of a registry token, in the shape Docker's
// token specification gives them.
type tokenClaims struct {
	jwt.RegisteredClaims
	Access []access `json:"access"`
}

type tokenSigner struct {
	key      crypto.Signer
	method   jwt.SigningMethod
	issuer   string
	audience string
}

func newTokenSigner(key crypto.Signer, issuer, audience string) (*tokenSigner, error) {
	var m jwt.SigningMethod
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("auth: token key: ECDSA curve %s, want P-256", k.Curve.Params().Name)
		}
		m = jwt.SigningMethodES256
	case ed25519.PrivateKey:
		m = jwt.SigningMethodEdDSA
	default:
		return nil, fmt.Errorf("auth: token key: %T, want ECDSA P-256 or ed25519", key)
	}
	return &tokenSigner{key: key, method: m, issuer: issuer, audience: audience}, nil
}

func (s *tokenSigner) sign(subject string, grants []access, ttl time.Duration) (string, time.Time, error) {
	now := time.Now()
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", now, err
	}
	if grants == nil {
		grants = []access{}
	}
	c := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{s.audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Second)),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        hex.EncodeToString(id),
		},
		Access: grants,
	}
	t, err := jwt.NewWithClaims(s.method, c).SignedString(s.key)
	return t, now, err
}

// maxTokenSize bounds what is parsed from an Authorization header.
const maxTokenSize = 16 << 10

func (s *tokenSigner) parse(tok string) (*tokenClaims, error) {
	if len(tok) > maxTokenSize {
		return nil, errors.New("token too large")
	}
	var c tokenClaims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return s.key.Public(), nil },
		jwt.WithValidMethods([]string{s.method.Alg()}),
		jwt.WithIssuer(s.issuer),
		jwt.WithAudience(s.audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(30*time.Second),
	)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// maxScopes bounds the scopes one token request may ask for.
const maxScopes = 32

// parseScopes parses Docker token scopes ("repository:NAME:pull,push",
// "registry:catalog:*", "registry:metrics:*"); several may be space-separated in one value.
// Unknown resource types are ignored, as the token specification says.
func parseScopes(values []string) ([]access, error) {
	var out []access
	for _, v := range values {
		for _, s := range strings.Fields(v) {
			typ, rest, ok1 := strings.Cut(s, ":")
			i := strings.LastIndexByte(rest, ':')
			if !ok1 || i < 0 {
				return nil, fmt.Errorf("scope %q: want type:name:actions", s)
			}
			name, acts := rest[:i], strings.Split(rest[i+1:], ",")
			switch typ {
			case "repository":
				if err := storage.ValidateName(name); err != nil {
					return nil, fmt.Errorf("scope %q: %w", s, err)
				}
			case "registry":
				if !registryWide(name) {
					continue
				}
			default:
				continue
			}
			if len(out) == maxScopes {
				return nil, fmt.Errorf("more than %d scopes", maxScopes)
			}
			out = append(out, access{Type: typ, Name: name, Actions: acts})
		}
	}
	return out, nil
}

// grant narrows the requested access to what user may do.
func (a *Authenticator) grant(user string, want []access) []access {
	var out []access
	for _, w := range want {
		var acts []string
		if w.Type == "registry" {
			if len(a.policy.Allowed(user, "", []string{w.Name})) == 1 {
				acts = []string{"*"}
			}
		} else {
			req := w.Actions
			if containsAll(req, []string{"*"}) {
				req = []string{ActionPull, ActionPush, ActionDelete}
			}
			acts = a.policy.Allowed(user, w.Name, req)
		}
		if len(acts) > 0 {
			out = append(out, access{Type: w.Type, Name: w.Name, Actions: acts})
		}
	}
	return out
}

// TokenHandler serves the token endpoint: GET with optional Basic
// credentials (Docker's token protocol, as docker and oras use it), and POST
// with a password grant (the OAuth2 form). Without credentials it issues an
// anonymous token carrying what anonymous requests may do, possibly nothing.
func (a *Authenticator) TokenHandler() http.Handler {
	return http.HandlerFunc(a.serveToken)
}

const maxTokenForm = 64 << 10

func (a *Authenticator) serveToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	var (
		user, pass string
		hasCreds   bool
		scopeVals  []string
		service    string
		oauth      bool
	)
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		scopeVals, service = q["scope"], q.Get("service")
		user, pass, hasCreds = r.BasicAuth()
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxTokenForm)
		if err := r.ParseForm(); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form")
			return
		}
		oauth = true
		scopeVals, service = r.PostForm["scope"], r.PostForm.Get("service")
		switch gt := r.PostForm.Get("grant_type"); gt {
		case "password":
			user, pass, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
		default:
			oauthError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported; use password", gt))
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if service != "" && service != a.cfg.Service {
		oauthError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("service %q: this is %q", service, a.cfg.Service))
		return
	}
	want, err := parseScopes(scopeVals)
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_scope", err.Error())
		return
	}
	if hasCreds {
		if user == "" || !a.login(w, r, user, pass) {
			if user == "" {
				a.challenge(w, r, nil, "", "empty user name")
			}
			return
		}
	}
	grants := a.grant(user, want)
	tok, issued, err := a.tokens.sign(user, grants, a.cfg.TokenTTL)
	if err != nil {
		a.log.Error("sign token", "err", err)
		oauthError(w, http.StatusInternalServerError, "server_error", "could not sign a token")
		return
	}
	resp := map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(a.cfg.TokenTTL.Seconds()),
		"issued_at":    issued.UTC().Format(time.RFC3339),
	}
	if oauth {
		resp["token_type"] = "Bearer"
		resp["scope"] = scopes(grants)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
