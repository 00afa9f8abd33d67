package auth

import (
	"net/http"
	"testing"
)

// With authentication on, /metrics needs a user the policy grants
// "metrics"; it was readable by anyone who reached the port.
func TestMetricsNeedsTheMetricsAction(t *testing.T) {
	policy := testPolicy + `
  - repositories: ["**"]
    users: [bob]
    actions: [metrics]
`
	ts, _, _ := testServer(t, policy, true)
	basic := func(u string) map[string]string {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.SetBasicAuth(u, u+"-pw")
		return map[string]string{"Authorization": req.Header.Get("Authorization")}
	}
	for _, tc := range []struct {
		who  string
		hdr  map[string]string
		want int
	}{
		{"anonymous", nil, http.StatusUnauthorized},
		{"alice (no metrics rule)", basic("alice"), http.StatusForbidden},
		{"bob (metrics)", basic("bob"), http.StatusOK},
		{"bob with a wrong password", map[string]string{"Authorization": "Basic Ym9iOng="}, http.StatusUnauthorized},
	} {
		if resp := do(t, http.MethodGet, ts.URL+"/metrics", tc.hdr); resp.StatusCode != tc.want {
			t.Errorf("/metrics as %s: %d, want %d", tc.who, resp.StatusCode, tc.want)
		}
	}
	// A token for registry:metrics:* works too, as Prometheus' bearer
	// token does.
	tok, code := token(t, ts, "bob", "bob-pw", "registry:metrics:*")
	if code != http.StatusOK {
		t.Fatalf("token: %d", code)
	}
	if resp := do(t, http.MethodGet, ts.URL+"/metrics", map[string]string{"Authorization": "Bearer " + tok}); resp.StatusCode != http.StatusOK {
		t.Errorf("/metrics with a metrics token: %d", resp.StatusCode)
	}
	// /healthz stays open: load balancers probe it.
	if resp := do(t, http.MethodGet, ts.URL+"/healthz", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
}
