package client

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// SettingsEnv names the environment variable that points at modelctl's own
// settings file (default: the user config directory + modelctl/config.yaml).
const SettingsEnv = "MODELCTL_CONFIG"

// Settings are modelctl's own settings, saved once for every command:
//
//	default_registry: registry.lan:5000     # for references without a host
//	registries:
//	  registry.lan:5000:
//	    plain_http: true                     # no TLS on the LAN
//	  127.0.0.1:5443:
//	    plain_http: false                    # a TLS registry on loopback
//	    insecure: true                       # self-signed certificate
type Settings struct {
	// Path is the file the settings were read from ("" when none).
	Path            string                      `yaml:"-"`
	DefaultRegistry string                      `yaml:"default_registry,omitempty"`
	Registries      map[string]RegistrySettings `yaml:"registries,omitempty"`
}

// RegistrySettings are how to speak to one registry (host[:port]).
type RegistrySettings struct {
	// PlainHTTP speaks HTTP instead of HTTPS; unset: HTTPS except on
	// loopback (or with --plain-http).
	PlainHTTP *bool `yaml:"plain_http,omitempty"`
	// Insecure skips TLS certificate verification for this registry.
	Insecure bool `yaml:"insecure,omitempty"`
}

// SettingsPath is where the settings are read from: $MODELCTL_CONFIG, else
// the user config directory + modelctl/config.yaml.
func SettingsPath() (string, error) {
	if p := os.Getenv(SettingsEnv); p != "" {
		return p, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the settings file (set $%s): %w", SettingsEnv, err)
	}
	return filepath.Join(base, "modelctl", "config.yaml"), nil
}

// LoadSettings reads the settings file at path; a missing file is empty
// settings (with Path set, so messages can name where to write them).
func LoadSettings(path string) (*Settings, error) {
	s := &Settings{Path: path}
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return s, nil
		}
		return nil, fmt.Errorf("settings %s: %w", path, err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, 1<<20+1)); err != nil {
		return nil, fmt.Errorf("settings %s: %w", path, err)
	}
	if buf.Len() > 1<<20 {
		return nil, fmt.Errorf("settings %s: over 1 MiB: not a settings file", path)
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil && err != io.EOF {
		return nil, fmt.Errorf("settings %s: %w (keys: default_registry, registries: HOST: plain_http, insecure)", path, err)
	}
	s.Path = path
	if s.DefaultRegistry != "" {
		if _, _, err := ParseRegistry(s.DefaultRegistry); err != nil || strings.Contains(s.DefaultRegistry, "/") {
			return nil, fmt.Errorf("settings %s: default_registry %q: want host[:port]", path, s.DefaultRegistry)
		}
	}
	return s, nil
}

// Expand puts the default registry in front of a reference that names no
// host (sarai/audio:int8); any other reference is returned as it is.
func (s *Settings) Expand(ref string) string {
	if s == nil || s.DefaultRegistry == "" || strings.HasPrefix(ref, "s3://") || strings.Contains(ref, "://") {
		return ref
	}
	first, _, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return ref
	}
	return s.DefaultRegistry + "/" + ref
}

func (s *Settings) registry(host string) (RegistrySettings, bool) {
	if s == nil {
		return RegistrySettings{}, false
	}
	r, ok := s.Registries[host]
	return r, ok
}

// Hosts lists the registries with settings, sorted.
func (s *Settings) Hosts() []string {
	if s == nil {
		return nil
	}
	var out []string
	for h := range s.Registries {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// hostTransport sends requests for the registries marked insecure through
// a transport that skips certificate checks, and the rest through base.
type hostTransport struct {
	base, insecure http.RoundTripper
	hosts          map[string]bool
}

func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.hosts[req.URL.Host] {
		return t.insecure.RoundTrip(req)
	}
	return t.base.RoundTrip(req)
}
