package pin

import (
	"bytes"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"unicode/utf8"

	digest "github.com/opencontainers/go-digest"
	"gopkg.in/yaml.v3"
)

// SetPin writes artifact and its digest into section key. Existing values
// are replaced where they stand (their quoting and trailing comments kept);
// missing keys are added as new lines, indented like the section's other
// keys, after model_path and artifact. Nothing else in the file changes:
// re-encoding through a YAML library would drop blank lines and reflow the
// file, so the edit is made on the text, and the result is parsed back and
// compared with the original before it is kept. An edit that cannot be
// made safely (flow-style sections, multi-line values, anchors shared with
// other sections) is refused with the reason, and the config is unchanged.
func (c *Config) SetPin(key, artifact string, d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("pin %s: digest %q: %w", key, d, err)
	}
	if artifact == "" || strings.ContainsFunc(artifact, isControl) {
		return fmt.Errorf("pin %s: artifact %q: empty or contains control characters", key, artifact)
	}
	want := []struct{ field, value string }{{KeyArtifact, artifact}, {KeyDigest, d.String()}}
	data := c.data
	for _, f := range want {
		nd, err := setField(data, key, f.field, f.value)
		if err != nil {
			return fmt.Errorf("pin %s: %w", key, err)
		}
		data = nd
	}
	if err := checkEdit(c.data, data, key, map[string]string{KeyArtifact: artifact, KeyDigest: d.String()}); err != nil {
		return fmt.Errorf("pin %s: cannot edit the file safely (%v): write %s and %s by hand", key, err, KeyArtifact, KeyDigest)
	}
	nc, err := Parse(data)
	if err != nil {
		return fmt.Errorf("pin %s: the edited file does not parse: %w", key, err)
	}
	c.data, c.doc = nc.data, nc.doc
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// setField sets one scalar field of section key in data.
func setField(data []byte, key, field, value string) ([]byte, error) {
	cfg, err := Parse(data)
	if err != nil {
		return nil, err
	}
	m, err := cfg.find(key)
	if err != nil {
		return nil, err
	}
	if m.Style&yaml.FlowStyle != 0 {
		return nil, fmt.Errorf("section %q is written in flow style ({...}): write it one key per line", key)
	}
	if len(m.Content) == 0 {
		return nil, fmt.Errorf("section %q is empty", key)
	}
	crlf := bytes.Contains(data, []byte("\r\n"))
	lines := strings.Split(string(data), "\n")

	if v := lookup(m, field); v != nil {
		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s is not a plain value", field)
		}
		if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			return nil, fmt.Errorf("%s is a block scalar (| or >)", field)
		}
		if v.Tag == "!!null" && v.Value == "" {
			// `field:` with nothing after it: the value goes after the colon.
			k := keyNode(m, field)
			li := k.Line - 1
			if li < 0 || li >= len(lines) {
				return nil, fmt.Errorf("%s: position out of range", field)
			}
			line := lines[li]
			ks := runeOffset(line, k.Column-1)
			ke := keyEnd(line, ks, k.Style, k.Value)
			if ke < 0 {
				return nil, fmt.Errorf("%s: cannot find the key on its line", field)
			}
			colon := ke
			for colon < len(line) && (line[colon] == ' ' || line[colon] == '\t') {
				colon++
			}
			if colon >= len(line) || line[colon] != ':' {
				return nil, fmt.Errorf("%s: cannot find the colon after the key", field)
			}
			rest, cr := strings.CutSuffix(line[colon+1:], "\r")
			text := " " + quote(value, sectionStyle(m))
			if ci := commentStart(rest, 0); ci >= 0 {
				text += " " + rest[ci:]
			}
			if cr {
				text += "\r"
			}
			lines[li] = line[:colon+1] + text
			return []byte(strings.Join(lines, "\n")), nil
		}
		li := v.Line - 1
		if li < 0 || li >= len(lines) {
			return nil, fmt.Errorf("%s: position out of range", field)
		}
		line := lines[li]
		start := runeOffset(line, v.Column-1)
		end := scalarEnd(line, start, v.Style, v.Value)
		if start < 0 || end < 0 {
			return nil, fmt.Errorf("%s: its value spans several lines", field)
		}
		lines[li] = line[:start] + quote(value, v.Style) + line[end:]
		return []byte(strings.Join(lines, "\n")), nil
	}

	// A new key: indented like the section's first key, after the field it
	// belongs with, or else before the first key.
	k0 := m.Content[0]
	indent := strings.Repeat(" ", k0.Column-1)
	newLine := indent + field + ": " + quote(value, sectionStyle(m))
	if crlf {
		newLine += "\r"
	}
	at := -1
	anchors := []string{KeyArtifact}
	if field == KeyArtifact {
		anchors = []string{KeyModelPath, KeyName}
	}
	for _, a := range anchors {
		if av := lookup(m, a); av != nil && av.Kind == yaml.ScalarNode && av.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
			line := av.Line
			if av.Tag == "!!null" && av.Value == "" {
				line = keyNode(m, a).Line
			} else if li := av.Line - 1; li < 0 || li >= len(lines) || scalarEnd(lines[li], runeOffset(lines[li], av.Column-1), av.Style, av.Value) < 0 {
				continue // spans lines: its end is not known
			}
			at = line
			break
		}
	}
	if at < 0 {
		li := k0.Line - 1
		if li < 0 || li >= len(lines) || strings.TrimSpace(lines[li][:runeOffsetOrLen(lines[li], k0.Column-1)]) != "" {
			return nil, fmt.Errorf("cannot find where to add %s in section %q", field, key)
		}
		at = li
	}
	if at > len(lines) {
		return nil, fmt.Errorf("%s: position out of range", field)
	}
	if at == len(lines) {
		// After a last line that has no newline.
		lines = append(lines, newLine)
		return []byte(strings.Join(lines, "\n")), nil
	}
	lines = append(lines[:at], append([]string{newLine}, lines[at:]...)...)
	return []byte(strings.Join(lines, "\n")), nil
}

// sectionStyle is the quoting a new value takes: that of the section's
// model_path or artifact when they are quoted, so the file stays uniform.
func sectionStyle(m *yaml.Node) yaml.Style {
	for _, f := range []string{KeyArtifact, KeyModelPath, KeyName} {
		if v := lookup(m, f); v != nil && v.Kind == yaml.ScalarNode {
			switch {
			case v.Style&yaml.DoubleQuotedStyle != 0:
				return yaml.DoubleQuotedStyle
			case v.Style&yaml.SingleQuotedStyle != 0:
				return yaml.SingleQuotedStyle
			}
		}
	}
	return 0
}

// plainSafe matches values that stay strings when written without quotes:
// references and digests, which always hold a '/' or a ':'.
var plainSafe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/@+-]*[:/][A-Za-z0-9._:/@+-]*$`)

func quote(v string, style yaml.Style) string {
	switch {
	case style&yaml.SingleQuotedStyle != 0:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case style&yaml.DoubleQuotedStyle != 0 || !plainSafe.MatchString(v) || strings.Contains(v, ": "):
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
	}
	return v
}

// runeOffset converts a 0-based column in runes (as yaml.v3 counts) to a
// byte offset in line; -1 when the line is shorter.
func runeOffset(line string, col int) int {
	off := 0
	for i := 0; i < col; i++ {
		if off >= len(line) {
			return -1
		}
		_, w := utf8.DecodeRuneInString(line[off:])
		off += w
	}
	return off
}

func runeOffsetOrLen(line string, col int) int {
	if o := runeOffset(line, col); o >= 0 {
		return o
	}
	return len(line)
}

// scalarEnd returns the byte offset just after the scalar that starts at
// start on line, or -1 when it does not end on this line (or does not look
// like the scalar yaml.v3 parsed).
func scalarEnd(line string, start int, style yaml.Style, value string) int {
	if start < 0 || start >= len(line) {
		return -1
	}
	switch {
	case style&yaml.DoubleQuotedStyle != 0:
		if line[start] != '"' {
			return -1
		}
		for i := start + 1; i < len(line); i++ {
			switch line[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return -1
	case style&yaml.SingleQuotedStyle != 0:
		if line[start] != '\'' {
			return -1
		}
		for i := start + 1; i < len(line); i++ {
			if line[i] == '\'' {
				if i+1 < len(line) && line[i+1] == '\'' {
					i++
					continue
				}
				return i + 1
			}
		}
		return -1
	}
	end := len(strings.TrimSuffix(line, "\r"))
	if ci := commentStart(line[:end], start); ci >= 0 {
		end = ci
	}
	for end > start && (line[end-1] == ' ' || line[end-1] == '\t') {
		end--
	}
	if line[start:end] != value {
		return -1
	}
	return end
}

// keyEnd is scalarEnd for a mapping key, which a plain scalar's rules
// would run into the colon.
func keyEnd(line string, start int, style yaml.Style, value string) int {
	if style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return scalarEnd(line, start, style, value)
	}
	if start < 0 || !strings.HasPrefix(line[start:], value) {
		return -1
	}
	return start + len(value)
}

// commentStart returns the offset of a " #" comment at or after from.
func commentStart(line string, from int) int {
	for i := from; i < len(line); i++ {
		if line[i] == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			return i
		}
	}
	return -1
}

// checkEdit decodes the old and new text and requires them to be equal
// once the wanted fields are set in the old one: the edit changed exactly
// the pin.
func checkEdit(oldData, newData []byte, key string, want map[string]string) error {
	var before, after any
	if err := yaml.Unmarshal(oldData, &before); err != nil {
		return fmt.Errorf("decode the original: %w", err)
	}
	if err := yaml.Unmarshal(newData, &after); err != nil {
		return fmt.Errorf("decode the edit: %w", err)
	}
	sec := navigate(before, key)
	if sec == nil {
		return fmt.Errorf("section %q not found when decoding", key)
	}
	for f, v := range want {
		switch m := sec.(type) {
		case map[string]any:
			m[f] = v
		case map[any]any:
			m[f] = v
		}
	}
	if !reflect.DeepEqual(before, after) {
		return fmt.Errorf("the edit would change more than %s", strings.Join(sortedKeys(want), " and "))
	}
	return nil
}

func navigate(v any, key string) any {
	if s := child(v, key); s != nil {
		return s
	}
	for _, part := range strings.Split(key, ".") {
		v = child(v, part)
		if v == nil {
			return nil
		}
	}
	return v
}

func child(v any, key string) any {
	var out any
	switch m := v.(type) {
	case map[string]any:
		out = m[key]
	case map[any]any:
		out = m[key]
	}
	switch out.(type) {
	case map[string]any, map[any]any:
		return out
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for _, k := range []string{KeyArtifact, KeyDigest} {
		if _, ok := m[k]; ok {
			out = append(out, k)
		}
	}
	return out
}
