package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/client/pin"
)

// Deployment reports: sync tells the registry what it installed (best
// effort), and history --deployments prints what every host reported.

// deployFlags are sync's flags for its reports.
type deployFlags struct {
	noReport bool
	host     string
}

func (f *deployFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.noReport, "no-report", false, "do not report the installed digests to the registry (see history --deployments)")
	fs.StringVar(&f.host, "report-host", "", "host name the report gives (default: this machine's host name)")
}

// deployReportTimeout bounds the reports of one sync: a registry that does
// not answer costs the sync at most this much.
const deployReportTimeout = 15 * time.Second

// reportDeployments sends one report per section synced, to the registry of
// its artifact. A failure is printed as a warning and never fails the sync.
func reportDeployments(ctx context.Context, c *client.Client, f *deployFlags, configPath string, results []pin.SyncResult, stderr io.Writer) {
	if f.noReport || len(results) == 0 {
		return
	}
	host := f.host
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(stderr, "modelctl: warning: deployment not reported: no host name (%v); give --report-host\n", err)
			return
		}
		host = h
	}
	if abs, err := filepath.Abs(configPath); err == nil {
		configPath = abs
	}
	ctx, cancel := context.WithTimeout(ctx, deployReportTimeout)
	defer cancel()
	for _, r := range results {
		if r.Digest == "" {
			continue
		}
		ref, err := client.ParseReference(r.Artifact)
		if err != nil || ref.S3 {
			// An s3:// artifact has no registry to report to.
			continue
		}
		rep := deploymentReport(r)
		rep.Host, rep.Config, rep.Time = host, configPath, time.Now().UTC()
		e, ectx, err := c.Endpoint(ctx, ref, true)
		if err == nil {
			err = client.ReportDeployment(ectx, e, ref.Repository, rep)
		}
		if err != nil {
			fmt.Fprintf(stderr, "modelctl: warning: %s: deployment not reported to %s (the sync itself succeeded): %v\n", r.Key, ref.Registry, oneLine(err))
		}
	}
}

// deploymentReport says what a section's sync left running: the digest
// installed, or, when the service failed with it and was switched back, the
// one it runs again, with why.
func deploymentReport(r pin.SyncResult) client.DeploymentReport {
	rep := client.DeploymentReport{Key: r.Key, Digest: r.Digest, Status: r.Status,
		Check: client.DeploymentNotRun, Health: client.DeploymentNotRun}
	if r.Checked {
		rep.Check = client.DeploymentPassed
	}
	if r.Health != nil {
		rep.Health = client.DeploymentFailed
		if r.Health.OK {
			rep.Health = client.DeploymentPassed
		}
	}
	var why []string
	for _, c := range []struct {
		name string
		res  *pin.CommandResult
	}{{"restart", r.Restart}, {"health", r.Health}} {
		if c.res != nil && !c.res.OK {
			why = append(why, c.name+" failed: "+c.res.Error)
		}
	}
	if r.RolledBack {
		rep.Status = "rolled back"
		if r.Previous != "" {
			// As pin.Sync returns it, Digest is the version that failed;
			// sync's deployed() has already put the previous one there.
			rep.Digest = r.Previous
			why = append([]string{"switched back from " + string(r.Digest)}, why...)
		}
	}
	rep.Detail = truncateDetail(strings.Join(why, "; "))
	return rep
}

// truncateDetail keeps a report's free text under the registry's bound.
func truncateDetail(s string) string {
	const max = 1000
	s = printable(s)
	if len(s) <= max {
		return s
	}
	for i := max; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}

// printDeployments prints the reports of ref's repository: which host runs
// which digest of it.
func printDeployments(cmd *cobra.Command, ref client.Reference, plainHTTP, insecure, asJSON bool) error {
	if ref.S3 {
		return fmt.Errorf("%s: deployment reports live in a registry; serve the bucket with modelctl serve and ask it", ref)
	}
	c, err := client.New(client.Options{PlainHTTP: plainHTTP, Insecure: insecure})
	if err != nil {
		return err
	}
	e, ctx, err := c.Endpoint(cmd.Context(), ref, false)
	if err != nil {
		return err
	}
	ds, err := client.ListDeployments(ctx, e, ref.Repository)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if asJSON {
		return xferPrintJSON(out, ds)
	}
	if len(ds) == 0 {
		fmt.Fprintf(out, "no host has reported a sync of %s/%s\n", ref.Registry, ref.Repository)
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCONFIG\tKEY\tDIGEST\tSTATUS\tCHECK\tHEALTH\tTIME\tUSER")
	for _, d := range ds {
		user := d.User
		if user == "" {
			user = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(d.Host), printable(d.Config), printable(d.Key),
			printable(short(string(d.Digest))), orDash(d.Status), orDash(d.Check), orDash(d.Health), d.Time.Local().Format(time.RFC3339), printable(user))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

// printable keeps a registry's text from steering the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
