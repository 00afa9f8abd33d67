// Package e2e drives the real modelctl binary against real servers.
package e2e

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelctl/modelctl/internal/testenv"
)

// minConformanceChecks guards against a suite run that silently tests less
// (a disabled API, a changed default): with every workflow on, the pinned
// suite makes 986 checks.
const minConformanceChecks = 900

type junitSuites struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Skipped  int `xml:"skipped,attr"`
}

// runConformance runs the pinned OCI conformance suite against the registry
// at addr with every workflow and optional API on, and fails the test on any
// failed, errored or skipped check.
func runConformance(t *testing.T, addr string, extraEnv ...string) {
	t.Helper()
	bin := testenv.Tool(t, "conformance.test")
	dir := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+addr,
		"OCI_TLS=disabled",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_TEST_PULL=1",
		"OCI_TEST_PUSH=1",
		"OCI_TEST_CONTENT_DISCOVERY=1",
		"OCI_TEST_CONTENT_MANAGEMENT=1",
		"OCI_API_BLOBS_UPLOAD_CANCEL=true",
		"OCI_API_MANIFESTS_TAG_PARAM=true",
		"OCI_API_BLOBS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_DIGEST_HEADER=true",
		"OCI_RESULTS_DIR="+filepath.Join(dir, "results"),
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	out, err := cmd.CombinedOutput()
	raw, rerr := os.ReadFile(filepath.Join(dir, "results", "junit.xml"))
	if rerr != nil {
		t.Fatalf("conformance suite wrote no results (%v): %v\n%s", rerr, err, tail(out))
	}
	var res junitSuites
	if err := xml.Unmarshal(raw, &res); err != nil {
		t.Fatalf("parse junit.xml: %v", err)
	}
	t.Logf("OCI conformance: %d checks, %d failures, %d errors, %d skipped", res.Tests, res.Failures, res.Errors, res.Skipped)
	if err != nil || res.Failures != 0 || res.Errors != 0 || res.Skipped != 0 {
		t.Fatalf("conformance suite failed (exit: %v):\n%s", err, problems(out))
	}
	if res.Tests < minConformanceChecks {
		t.Fatalf("conformance suite ran %d checks, expected at least %d", res.Tests, minConformanceChecks)
	}
}

// problems picks the failed and skipped checks, with their reasons, out of
// the suite's report, which is otherwise thousands of lines of passes.
func problems(out []byte) string {
	var b strings.Builder
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		if strings.HasSuffix(l, ": FAIL") || strings.HasSuffix(l, ": Skip") || strings.HasSuffix(l, ": Error") || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			b.WriteString(l + "\n")
			if i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "- ") {
				b.WriteString(lines[i+1] + "\n")
			}
		}
	}
	if b.Len() == 0 {
		return tail(out)
	}
	return tail([]byte(b.String()))
}

func tail(b []byte) string {
	const n = 6000
	if len(b) > n {
		return "..." + string(b[len(b)-n:])
	}
	return string(b)
}

func TestConformanceFilesystem(t *testing.T) {
	srv := testenv.StartServe(t, nil, "--root", t.TempDir(), "--log-level", "warn")
	runConformance(t, srv.Addr)
}
