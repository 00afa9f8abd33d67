package ui

import (
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/modelctl/modelctl/internal/humanize"
)

// The chart of a repository: p50 latency and size of each version over
// time, drawn on the server as SVG. Only numbers computed here reach the
// SVG's geometry; labels (tag names) go through the template's escaping.
const (
	chartWidth   = 900
	panelHeight  = 150
	chartLeft    = 80
	chartRight   = 20
	panelTop     = 24
	panelBottom  = 26
	maxChartTags = 4
)

type chart struct {
	Width, Height int
	Panels        []panel
	// Versions is how many versions have a push time to place.
	Versions int
}

type panel struct {
	Title  string
	Top    float64
	Bottom float64
	Left   float64
	Right  float64
	Line   string
	Points []chartPoint
	// PointsHTML is Points drawn (see rows.go).
	PointsHTML template.HTML
	YTicks     []tick
	XTicks     []tick
	ID         string
	Empty      bool
	TitleY     float64
	XLabelsY   float64
}

type chartPoint struct {
	X, Y  float64
	Label string
}

type tick struct {
	Pos   float64
	Label string
	// Anchor is the SVG text-anchor: the first time label starts at its
	// point, the last one ends there, so neither leaves the chart.
	Anchor string
}

type version struct {
	d       digest.Digest
	created time.Time
	tags    []string
	p50     float64
	hasP50  bool
	size    int64
}

func newChart(rows []tagRow) *chart {
	byDigest := map[digest.Digest]*version{}
	var vs []*version
	for _, r := range rows {
		if r.Created.IsZero() || r.Err != "" {
			continue
		}
		v, ok := byDigest[r.Digest]
		if !ok {
			v = &version{d: r.Digest, created: r.Created, p50: r.P50, hasP50: r.HasP50, size: r.Size}
			byDigest[r.Digest] = v
			vs = append(vs, v)
		}
		v.tags = append(v.tags, r.Tag)
	}
	sort.Slice(vs, func(i, j int) bool {
		if !vs[i].created.Equal(vs[j].created) {
			return vs[i].created.Before(vs[j].created)
		}
		return vs[i].d < vs[j].d
	})
	c := &chart{Width: chartWidth, Versions: len(vs)}
	lat := c.panel("latency", "p50 latency (ms)", 0, vs, func(v *version) (float64, bool) { return v.p50, v.hasP50 },
		func(f float64) string { return strconv.FormatFloat(f, 'g', 3, 64) })
	size := c.panel("size", "size", 1, vs, func(v *version) (float64, bool) { return float64(v.size), v.size > 0 },
		func(f float64) string { return humanize.Bytes(int64(f)) })
	c.Panels = []panel{lat, size}
	c.Height = int(size.Bottom) + panelBottom
	return c
}

func (c *chart) panel(id, title string, i int, vs []*version, val func(*version) (float64, bool), label func(float64) string) panel {
	top := float64(i)*(panelHeight+panelTop+panelBottom) + panelTop
	p := panel{ID: id, Title: title, Top: top, Bottom: top + panelHeight, Left: chartLeft, Right: chartWidth - chartRight, TitleY: top - 8}
	p.XLabelsY = p.Bottom + 16
	var ts []time.Time
	var ys []float64
	var labels []string
	maxY := 0.0
	for _, v := range vs {
		y, ok := val(v)
		if !ok || math.IsNaN(y) || math.IsInf(y, 0) || y < 0 {
			continue
		}
		ts = append(ts, v.created)
		ys = append(ys, y)
		tags := v.tags
		more := ""
		if len(tags) > maxChartTags {
			tags, more = tags[:maxChartTags], " +"+strconv.Itoa(len(v.tags)-maxChartTags)
		}
		labels = append(labels, strings.Join(tags, ", ")+more+" · "+short(v.d)+" · "+v.created.Format("2006-01-02 15:04")+" · "+label(y))
		maxY = math.Max(maxY, y)
	}
	if len(ys) == 0 {
		p.Empty = true
		return p
	}
	if maxY == 0 {
		maxY = 1
	}
	maxY *= 1.1
	t0, t1 := ts[0], ts[len(ts)-1]
	span := t1.Sub(t0).Seconds()
	x := func(t time.Time) float64 {
		if span <= 0 {
			return (p.Left + p.Right) / 2
		}
		return p.Left + (p.Right-p.Left)*t.Sub(t0).Seconds()/span
	}
	y := func(v float64) float64 { return p.Bottom - (p.Bottom-p.Top)*v/maxY }
	var line strings.Builder
	for i := range ys {
		px, py := round1(x(ts[i])), round1(y(ys[i]))
		p.Points = append(p.Points, chartPoint{X: px, Y: py, Label: labels[i]})
		if i > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(strconv.FormatFloat(px, 'f', 1, 64) + "," + strconv.FormatFloat(py, 'f', 1, 64))
	}
	p.Line = line.String()
	p.PointsHTML = pointsHTML(p.Points)
	for k := 0; k <= 4; k++ {
		v := maxY * float64(k) / 4
		p.YTicks = append(p.YTicks, tick{Pos: round1(y(v)), Label: label(v)})
	}
	layout := "2006-01-02 15:04"
	if span < 3600 {
		layout = "2006-01-02 15:04:05"
	}
	if span > 0 {
		p.XTicks = append(p.XTicks, tick{Pos: round1(x(t0)), Label: t0.Format(layout), Anchor: "start"},
			tick{Pos: round1(x(t1)), Label: t1.Format(layout), Anchor: "end"})
	} else {
		p.XTicks = append(p.XTicks, tick{Pos: round1(x(t0)), Label: t0.Format(layout), Anchor: "middle"})
	}
	return p
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// Template helpers.

func short(d digest.Digest) string {
	s := string(d)
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func humanBytes(n int64) string { return humanize.Bytes(n) }

func optNum(f float64, ok bool) string {
	if !ok {
		return "—"
	}
	return strconv.FormatFloat(f, 'g', 4, 64)
}

var funcs = template.FuncMap{
	"short":     short,
	"when":      when,
	"bytes":     humanBytes,
	"num":       optNum,
	"join":      strings.Join,
	"shortText": func(s string) string { return truncate(s, 120) },
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
