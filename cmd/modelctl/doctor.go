package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client"
	"github.com/modelctl/modelctl/internal/version"
	"github.com/modelctl/modelctl/quantize/bench"
)

func init() { register(newDoctorCmd) }

type doctorOptions struct {
	clientFlags
	ortLib  string
	timeout time.Duration
}

// doctorReport is what `modelctl doctor --json` prints.
type doctorReport struct {
	Modelctl    string                `json:"modelctl"`
	ONNXRuntime *bench.RuntimeInfo    `json:"onnxruntime,omitempty"`
	ORTError    string                `json:"onnxruntime_error,omitempty"`
	System      bench.SystemInfo      `json:"system"`
	Advice      []string              `json:"advice,omitempty"`
	Registry    *client.RegistryCheck `json:"registry,omitempty"`
	// Settings is modelctl's own settings file and what it says.
	Settings     string   `json:"settings"`
	SettingsNote []string `json:"settings_registries,omitempty"`
}

func newDoctorCmd() *cobra.Command {
	o := &doctorOptions{}
	cmd := &cobra.Command{
		Use:   "doctor [REF]",
		Short: "Check onnxruntime, the CPU, memory, disk and (given REF) a registry",
		Long: `Report the onnxruntime library (version, path, execution providers and whether
each initializes), CPU features that matter to INT8 inference (AVX2, AVX-512,
VNNI), memory and free disk; given a reference (host[:port][/repo...]), whether
its registry answers GET /v2/ and whether it needs credentials. It prints
modelctl's settings file ($MODELCTL_CONFIG, default the user config directory +
modelctl/config.yaml: default_registry, and per registry plain_http and
insecure) and, when the registry answers plain HTTP to HTTPS, refuses plain
HTTP, has an untrusted certificate or does not answer, what to change there.
Exits 1 when a check fails.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runDoctor(cmd, o, args) },
	}
	f := cmd.Flags()
	f.StringVar(&o.ortLib, "ort-lib", "", "onnxruntime shared library (default: $"+bench.LibraryEnv+", then the `make ort` cache)")
	o.registerConn(f)
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the registry")
	return cmd
}

func runDoctor(cmd *cobra.Command, o *doctorOptions, args []string) error {
	ctx := cmd.Context()
	wd, _ := os.Getwd()
	rep := doctorReport{
		Modelctl: fmt.Sprintf("%s %s/%s %s", version.Version, runtime.GOOS, runtime.GOARCH, runtime.Version()),
		System:   bench.System(wd),
	}
	var problems []string
	info, err := bench.Runtime(o.ortLib)
	if err != nil {
		rep.ORTError = err.Error()
		problems = append(problems, "onnxruntime: "+err.Error())
	} else {
		rep.ONNXRuntime = info
	}
	if st, err := o.settings(); err != nil {
		problems = append(problems, err.Error())
	} else {
		rep.Settings = st.Path
		if st.DefaultRegistry != "" {
			rep.SettingsNote = append(rep.SettingsNote, "default_registry "+st.DefaultRegistry)
		}
		for _, h := range st.Hosts() {
			r := st.Registries[h]
			note := h + ":"
			if r.PlainHTTP != nil {
				note += fmt.Sprintf(" plain_http %v", *r.PlainHTTP)
			}
			if r.Insecure {
				note += " insecure"
			}
			rep.SettingsNote = append(rep.SettingsNote, note)
		}
	}
	if !rep.System.VNNI {
		rep.Advice = append(rep.Advice, "this CPU has no VNNI: models quantized with --full-range compute wrong here (sync refuses them); the default portable int8 is exact here")
	}
	if len(args) == 1 {
		c, err := o.client(cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		rc := c.CheckRegistry(ctx, o.expandRef(args[0]), o.timeout)
		rep.Registry = &rc
		if !rc.Reachable {
			problems = append(problems, "registry "+rc.Registry+": "+rc.Error)
			if a := registryAdvice(rc, c.Settings()); a != "" {
				rep.Advice = append(rep.Advice, a)
			}
		} else if rc.AuthRequired && !rc.HaveCredentials {
			rep.Advice = append(rep.Advice, fmt.Sprintf("%s needs credentials: run `modelctl login %s -u USER --password-stdin`", rc.Registry, rc.Registry))
		}
	}
	out := cmd.OutOrStdout()
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printDoctor(out, rep)
	}
	if len(problems) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("doctor: %s", strings.Join(problems, "; "))}
	}
	return nil
}

func printDoctor(w io.Writer, r doctorReport) {
	fmt.Fprintf(w, "modelctl %s\n", r.Modelctl)
	if r.ONNXRuntime != nil {
		ort := r.ONNXRuntime
		fmt.Fprintf(w, "onnxruntime %s  %s\n", ort.Version, ort.Path)
		if ort.Build != "" {
			fmt.Fprintf(w, "  build: %s\n", ort.Build)
		}
		fmt.Fprintf(w, "  providers listed: %s\n", strings.Join(ort.Available, ", "))
		for _, p := range ort.Providers {
			state := "ok"
			switch {
			case p.Initializes:
			case p.Available:
				state = "listed, does not initialize: " + p.Error
			default:
				state = "not in this build"
			}
			fmt.Fprintf(w, "  %-9s %s\n", p.Name, state)
		}
	} else {
		fmt.Fprintf(w, "onnxruntime: %s\n", r.ORTError)
	}
	s := r.System
	fmt.Fprintf(w, "cpu: %s, %d logical cores\n", orUnknown(s.CPU), s.CPUs)
	fmt.Fprintf(w, "  features: %s\n", strings.Join(s.CPUFeatures, " "))
	vnni := "yes"
	if !s.VNNI {
		vnni = "no"
	}
	fmt.Fprintf(w, "  int8 dot product (VNNI): %s\n", vnni)
	fmt.Fprintf(w, "memory: %s total, %s available\n", gib(s.MemoryTotal), gib(s.MemoryAvailable))
	fmt.Fprintf(w, "disk: %s free in %s\n", gib(s.DiskFree), s.DiskPath)
	if rc := r.Registry; rc != nil {
		switch {
		case !rc.Reachable:
			fmt.Fprintf(w, "registry %s: UNREACHABLE: %s\n", rc.Registry, rc.Error)
		case rc.AuthRequired:
			have := "none stored"
			if rc.HaveCredentials {
				have = "stored"
			}
			fmt.Fprintf(w, "registry %s: reachable (%s: %d), credentials required (%s)\n", rc.Registry, rc.URL, rc.Status, have)
		default:
			fmt.Fprintf(w, "registry %s: reachable (%s: %d), no credentials needed\n", rc.Registry, rc.URL, rc.Status)
		}
	}
	if r.Settings != "" {
		fmt.Fprintf(w, "settings: %s\n", r.Settings)
		for _, n := range r.SettingsNote {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	for _, a := range r.Advice {
		fmt.Fprintf(w, "advice: %s\n", a)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func gib(n uint64) string {
	if n == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// registryAdvice says what to change when a registry did not answer as
// expected: the scheme, the certificate, or where it runs.
func registryAdvice(rc client.RegistryCheck, st *client.Settings) string {
	path := "$" + client.SettingsEnv
	if st != nil && st.Path != "" {
		path = st.Path
	}
	h := rc.Registry
	e := strings.ToLower(rc.Error)
	switch {
	case strings.Contains(e, "server gave http response to https client"):
		return fmt.Sprintf("%s answers plain HTTP, not HTTPS: add it to %s once (registries:\n  %s:\n    plain_http: true) instead of --plain-http on every command", h, path, h)
	case rc.Status == 400 && strings.HasPrefix(rc.URL, "http://"):
		return fmt.Sprintf("%s refused plain HTTP (400): it speaks HTTPS: set plain_http: false for %s in %s (and insecure: true if its certificate is self-signed), or drop --plain-http", h, h, path)
	case strings.Contains(e, "x509") || strings.Contains(e, "certificate"):
		return fmt.Sprintf("%s's TLS certificate is not trusted here: install its CA, or set insecure: true for %s in %s (or pass --insecure)", h, h, path)
	case strings.Contains(e, "tls: first record does not look like a tls handshake"):
		return fmt.Sprintf("%s answers plain HTTP, not HTTPS: add it to %s with plain_http: true", h, path)
	case strings.Contains(e, "connection refused") || strings.Contains(e, "no such host") || strings.Contains(e, "timeout") || strings.Contains(e, "deadline"):
		d := ""
		if st != nil && st.DefaultRegistry != "" {
			d = fmt.Sprintf(" (default_registry in %s is %s)", path, st.DefaultRegistry)
		}
		return fmt.Sprintf("nothing answers at %s: is the registry running there? check the host and port%s; sync, verify and rollback CONFIG still work from the local cache", h, d)
	}
	return ""
}
