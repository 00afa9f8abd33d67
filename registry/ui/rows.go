package ui

import (
	"html"
	"html/template"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The long lists of a repository page (a row per tag, a point per version)
// are written here rather than by html/template: its reflection and
// per-action escaping cost about 50 µs a row, 50 ms for 1,000 tags, half the
// page's budget. Every value goes through html.EscapeString, which makes
// text safe both between tags and inside the double-quoted attributes used
// here; nothing is ever written unquoted or into a script, style or URL
// scheme position (links start with the UI's own path and carry only
// names and digests the grammar already restricted).

var esc = html.EscapeString

// tagRowsHTML is the <tbody> content of the tags table.
func (h *Handler) tagRowsHTML(name string, rows []tagRow, deployed map[digest.Digest]int) template.HTML {
	var b strings.Builder
	b.Grow(len(rows) * 900)
	for _, r := range rows {
		b.WriteString(`<tr data-tag="`)
		b.WriteString(esc(r.Tag))
		b.WriteString(`"><td class="tag">`)
		b.WriteString(esc(r.Tag))
		b.WriteString(`</td><td><a class="digest" href="`)
		b.WriteString(esc(h.artifactURL(name, r.Digest)))
		b.WriteString(`" title="`)
		b.WriteString(esc(string(r.Digest)))
		b.WriteString(`">`)
		b.WriteString(esc(short(r.Digest)))
		b.WriteString(`</a></td><td>`)
		b.WriteString(esc(when(r.Created)))
		b.WriteString(`</td><td class="num">`)
		b.WriteString(esc(humanBytes(r.Size)))
		b.WriteString(`</td><td>`)
		b.WriteString(esc(r.Precision))
		if r.Quant != "" {
			b.WriteString(` <span class="note">`)
			b.WriteString(esc(r.Quant))
			b.WriteString(`</span>`)
		}
		if r.Err != "" {
			b.WriteString(`<span class="error">`)
			b.WriteString(esc(r.Err))
			b.WriteString(`</span>`)
		}
		for _, f := range []string{optNum(r.P50, r.HasP50), optNum(r.Speedup, r.HasSpeed), optNum(r.SizeRatio, r.HasRatio), optNum(r.WorstCos, r.HasCos)} {
			b.WriteString(`</td><td class="num">`)
			b.WriteString(esc(f))
		}
		b.WriteString(`</td><td class="gate gate-`)
		b.WriteString(esc(gateClass(r.Gate)))
		b.WriteString(`">`)
		if r.Gate != "" {
			b.WriteString(esc(r.Gate))
		} else {
			b.WriteString("—")
		}
		b.WriteString(`</td><td>`)
		switch r.Signatures {
		case 0:
			b.WriteString(`<span class="unsigned">unsigned</span>`)
		case 1:
			b.WriteString(`<span class="signed">1 signature</span>`)
		default:
			b.WriteString(`<span class="signed">` + strconv.Itoa(r.Signatures) + ` signatures</span>`)
		}
		b.WriteString(`</td><td>`)
		switch n := deployed[r.Digest]; n {
		case 0:
			b.WriteString("—")
		case 1:
			b.WriteString("1 host")
		default:
			b.WriteString(strconv.Itoa(n) + " hosts")
		}
		b.WriteString("</td></tr>\n")
	}
	return template.HTML(b.String())
}

// gateClass is the CSS class suffix of a gate result.
func gateClass(gate string) string {
	switch {
	case gate == "passed":
		return "passed"
	case strings.HasPrefix(gate, "failed"):
		return "failed"
	}
	return "none"
}

// pointsHTML is the circles of one chart panel, each with its label as an
// SVG <title> (the browser's tooltip).
func pointsHTML(pts []chartPoint) template.HTML {
	var b strings.Builder
	b.Grow(len(pts) * 160)
	for _, p := range pts {
		b.WriteString(`<circle cx="`)
		b.WriteString(strconv.FormatFloat(p.X, 'f', 1, 64))
		b.WriteString(`" cy="`)
		b.WriteString(strconv.FormatFloat(p.Y, 'f', 1, 64))
		b.WriteString(`" r="3.5" class="pt"><title>`)
		b.WriteString(esc(p.Label))
		b.WriteString("</title></circle>")
	}
	return template.HTML(b.String())
}

// optionsHTML is the <option> list of a version picker.
func optionsHTML(values []string) template.HTML {
	var b strings.Builder
	for _, v := range values {
		b.WriteString("<option>")
		b.WriteString(esc(v))
		b.WriteString("</option>")
	}
	return template.HTML(b.String())
}
