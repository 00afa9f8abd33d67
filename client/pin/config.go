// Package pin ties an application's YAML config to model artifacts: a
// section names what to follow (`artifact`, a tag) and carries the pin
// (`artifact_digest`), which modelctl writes without disturbing the rest of
// the file. Sync installs exactly the pinned digests next to each section's
// model_path, Verify re-hashes them, and Verified gives an application the
// verified local path of a model so that it can refuse to start on a
// tampered or missing one:
//
//	cfg, err := pin.Load("config/sarai.yaml")
//	...
//	m, err := cfg.Verified(ctx, "audio_omni")
//	if err != nil {
//		log.Fatal(err) // names every file that is missing or differs
//	}
//	session := onnx.Open(m.Path)
package pin

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"gopkg.in/yaml.v3"

	"github.com/modelctl/modelctl/internal/atomicfile"
)

// The keys of a model section.
const (
	KeyName      = "name"
	KeyModelPath = "model_path"
	KeyArtifact  = "artifact"
	KeyDigest    = "artifact_digest"
	// KeyRequireSignature (true/false) makes sync refuse to install an
	// artifact without a valid signature by one of the section's keys.
	KeyRequireSignature = "require_signature"
	// KeySigningKey is the public key (PEM) signatures must verify with;
	// a relative path is relative to the config file.
	KeySigningKey = "signing_key"
)

// MaxConfigSize bounds a config file: it is read whole, and a config is
// hand-written text, not data.
const MaxConfigSize = 4 << 20

// maxDepth bounds the nesting walked when looking for sections.
const maxDepth = 32

// Section is one model section of a config.
type Section struct {
	// Key is the section's key, dotted for nested sections (models.audio).
	Key       string
	Name      string
	ModelPath string
	// Artifact is the reference followed (usually a tag).
	Artifact string
	// Digest is the pin, "" when the section is not pinned yet.
	Digest digest.Digest
	// RequireSignature and SigningKey are the section's signature policy.
	RequireSignature bool
	SigningKey       string
	// AppDir is the application's directory (app_dir), "" when unset.
	AppDir string
	// Restart and Health are the section's service commands (restart,
	// health), HealthTimeout how long health may take to pass
	// (health_timeout, a Go duration such as 90s).
	Restart, Health string
	HealthTimeout   string

	base    string // the directory a relative model_path was resolved in
	relPath string // model_path as written, when it was resolved
}

// Config is a parsed YAML config file. It keeps the file's bytes so that
// edits change only the lines they must.
type Config struct {
	// Path is the file the config was loaded from ("" when parsed).
	Path string
	// Dir, when set (-C DIR), is the application's directory: relative
	// model_paths of every section are relative to it.
	Dir  string
	data []byte
	doc  *yaml.Node // the mapping at the root of the document
}

// Load reads and parses a config file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxConfigSize+1)); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if buf.Len() > MaxConfigSize {
		return nil, fmt.Errorf("config %s: over %d bytes: not a config file", path, MaxConfigSize)
	}
	c, err := Parse(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// Parse parses config text.
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("over %d bytes: not a config file", MaxConfigSize)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	c := &Config{data: append([]byte(nil), data...)}
	if doc.Kind == 0 {
		return c, nil // empty file
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("the document is not a YAML mapping of sections")
	}
	c.doc = doc.Content[0]
	return c, nil
}

// Bytes returns the config text (with any edits).
func (c *Config) Bytes() []byte { return append([]byte(nil), c.data...) }

// Sections returns every section that names an artifact or carries a pin,
// in file order.
func (c *Config) Sections() ([]Section, error) {
	var out []Section
	var walk func(m *yaml.Node, prefix string, depth int) error
	walk = func(m *yaml.Node, prefix string, depth int) error {
		if depth > maxDepth {
			return nil
		}
		if m != c.doc && (lookup(m, KeyArtifact) != nil || lookup(m, KeyDigest) != nil) {
			s, err := sectionOf(m, prefix)
			if err != nil {
				return err
			}
			out = append(out, s)
			return nil
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			if k.Kind != yaml.ScalarNode || v.Kind != yaml.MappingNode {
				continue
			}
			key := k.Value
			if prefix != "" {
				key = prefix + "." + k.Value
			}
			if err := walk(v, key, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if c.doc == nil {
		return nil, nil
	}
	if err := walk(c.doc, "", 0); err != nil {
		return nil, err
	}
	return out, nil
}

// Section returns the section under key: a top-level key, or a dotted path
// to a nested one.
func (c *Config) Section(key string) (Section, error) {
	m, err := c.find(key)
	if err != nil {
		return Section{}, err
	}
	return sectionOf(m, key)
}

// find returns the mapping under key.
func (c *Config) find(key string) (*yaml.Node, error) {
	if key == "" {
		return nil, fmt.Errorf("empty section key")
	}
	if c.doc == nil {
		return nil, fmt.Errorf("no section %q: the config is empty", key)
	}
	v := lookup(c.doc, key)
	if v == nil && strings.Contains(key, ".") {
		v = c.doc
		for _, part := range strings.Split(key, ".") {
			if v == nil || v.Kind != yaml.MappingNode {
				v = nil
				break
			}
			v = lookup(v, part)
		}
	}
	if v == nil {
		return nil, fmt.Errorf("no section %q in the config", key)
	}
	if v.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("section %q is not a mapping of keys (it needs model_path, artifact, ...)", key)
	}
	return v, nil
}

// lookup returns the value of key in mapping m, nil when absent.
func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// keyNode returns the key node of key in mapping m, nil when absent.
func keyNode(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return k
		}
	}
	return nil
}

func sectionOf(m *yaml.Node, key string) (Section, error) {
	s := Section{Key: key}
	for _, f := range []struct {
		name string
		dst  *string
	}{{KeyName, &s.Name}, {KeyModelPath, &s.ModelPath}, {KeyArtifact, &s.Artifact}, {KeySigningKey, &s.SigningKey},
		{KeyAppDir, &s.AppDir}, {KeyRestart, &s.Restart}, {KeyHealth, &s.Health}, {KeyHealthTimeout, &s.HealthTimeout}} {
		v, err := scalarValue(m, f.name, key)
		if err != nil {
			return Section{}, err
		}
		*f.dst = v
	}
	req, err := scalarValue(m, KeyRequireSignature, key)
	if err != nil {
		return Section{}, err
	}
	switch strings.ToLower(req) {
	case "", "false", "no":
	case "true", "yes":
		s.RequireSignature = true
	default:
		return Section{}, fmt.Errorf("section %q: %s %q: want true or false", key, KeyRequireSignature, req)
	}
	if s.RequireSignature && s.SigningKey == "" {
		return Section{}, fmt.Errorf("section %q: %s is true but no %s names the public key", key, KeyRequireSignature, KeySigningKey)
	}
	d, err := scalarValue(m, KeyDigest, key)
	if err != nil {
		return Section{}, err
	}
	if d != "" {
		pd, err := digest.Parse(d)
		if err != nil {
			return Section{}, fmt.Errorf("section %q: %s %q: %w", key, KeyDigest, d, err)
		}
		s.Digest = pd
	}
	return s, nil
}

func scalarValue(m *yaml.Node, field, key string) (string, error) {
	v := lookup(m, field)
	if v == nil {
		return "", nil
	}
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("section %q: %s is not a plain value", key, field)
	}
	if v.Tag == "!!null" {
		return "", nil
	}
	return v.Value, nil
}

// Save writes the config back to its file atomically (temp, fsync,
// rename), keeping the file's mode.
func (c *Config) Save() error {
	if c.Path == "" {
		return fmt.Errorf("save config: it was not loaded from a file")
	}
	return writeAtomic(c.Path, c.data)
}

func writeAtomic(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := atomicfile.WriteFile(path, data, mode, true); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
