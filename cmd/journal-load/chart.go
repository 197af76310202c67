package main

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// series is one named sequence of per-second values.
type series struct {
	Name  string
	Color string
	Vals  []float64
}

// hline is a horizontal reference line (a limit).
type hline struct {
	Value float64
	Label string
	Color string
}

// band is a stretch of the run shaded on a chart, between two vertical
// lines at the points of the buckets in which it began and ended: a fault
// the scenario saw.
type band struct {
	From, To float64 // seconds from the start; To < 0: to the end of the chart
	Label    string  // written at the start line
}

// bandColor is the colour of a fault band and its lines.
const bandColor = "#c92a2a"

// chart describes one SVG chart of per-second values; x is the second of
// the run.
type chart struct {
	ID      string
	Title   string
	Note    string // one sentence under the title
	Unit    string // of the y axis: "req/s", "ms"
	Series  []series
	Step    float64 // seconds between two points
	Stacked bool    // stacked areas; else lines
	Lines   []hline
	Bands   []band
}

// Chart geometry (viewBox units; the SVG scales to its container).
const (
	chartW  = 1100
	chartH  = 260
	marginL = 58
	marginR = 18
	marginT = 14
	marginB = 30
)

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// niceAxis returns the top of a y axis at or above v and its number of
// intervals (3 to 6), each a round step: 1, 2, 2.5 or 5 times a power of
// ten. The smallest such top wins.
func niceAxis(v float64) (top float64, intervals int) {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1, 4
	}
	best, bestN := math.Inf(1), 4
	for n := 3; n <= 6; n++ {
		step := niceCeil(v / float64(n))
		if t := step * float64(n); t < best*(1-1e-9) {
			best, bestN = t, n
		}
	}
	return best, bestN
}

// fmtNum formats an axis or tooltip number compactly.
func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 10000:
		return fmt.Sprintf("%.0fk", v/1000)
	case math.Abs(v) >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// fmtSec formats a time in seconds with at most two decimals: 0.1, 2, 2.5.
func fmtSec(v float64) string {
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// SVG renders the chart as an inline <svg> element.
func (c chart) SVG() template.HTML {
	n := 0
	for _, s := range c.Series {
		n = max(n, len(s.Vals))
	}
	// stacks[i][t] is the top of series i at second t.
	stacks := make([][]float64, len(c.Series))
	ymax := 0.0
	for i, s := range c.Series {
		stacks[i] = make([]float64, n)
		for t := 0; t < n; t++ {
			v := 0.0
			if t < len(s.Vals) {
				v = s.Vals[t]
			}
			if c.Stacked && i > 0 {
				v += stacks[i-1][t]
			}
			stacks[i][t] = v
			ymax = math.Max(ymax, v)
		}
	}
	for _, l := range c.Lines {
		ymax = math.Max(ymax, l.Value)
	}
	ymax, ticks := niceAxis(ymax * 1.05)
	pw, ph := float64(chartW-marginL-marginR), float64(chartH-marginT-marginB)
	span := float64(max(n-1, 1))
	x := func(t int) float64 { return marginL + float64(t)/span*pw }
	y := func(v float64) float64 { return marginT + ph - v/ymax*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-label="%s" class="chart" id="%s">`,
		chartW, chartH, html.EscapeString(c.Title), html.EscapeString(c.ID))
	// Grid and y axis labels.
	for i := 0; i <= ticks; i++ {
		v := ymax * float64(i) / float64(ticks)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="grid"/>`, marginL, y(v), chartW-marginR, y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" class="ylab">%s</text>`, marginL-8, y(v)+4, fmtNum(v))
	}
	fmt.Fprintf(&b, `<text x="14" y="%d" class="unit" transform="rotate(-90 14 %d)">%s</text>`,
		marginT+int(ph/2), marginT+int(ph/2), html.EscapeString(c.Unit))
	// X axis labels: about 10 ticks at round times.
	stepS := c.Step
	if stepS <= 0 {
		stepS = 1
	}
	tick := niceCeil(float64(max(n-1, 1)) * stepS / 10)
	every := max(1, int(math.Round(tick/stepS)))
	for t := 0; t < n; t += every {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="xlab">%ss</text>`, x(t), chartH-10, fmtSec(float64(t)*stepS))
	}
	// Fault bands go under the data, their lines and labels over it. A
	// point stands for the requests sent during its bucket, so a moment is
	// drawn at the point of the bucket it falls in: the spike of the
	// requests that met the fault lies on its line, not before it.
	xs := func(sec float64) float64 {
		return math.Min(math.Max(marginL+math.Floor(sec/stepS)/span*pw, marginL), chartW-marginR)
	}
	for _, bd := range c.Bands {
		to := float64(chartW - marginR)
		if bd.To >= 0 {
			to = xs(bd.To)
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%.1f" fill="%s" class="band"/>`,
			xs(bd.From), marginT, math.Max(to-xs(bd.From), 1), ph, bandColor)
	}
	if n > 0 {
		// Areas are drawn top series first so lower ones stay visible.
		for i := len(c.Series) - 1; i >= 0; i-- {
			s := c.Series[i]
			var pts []string
			for t := 0; t < n; t++ {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(t), y(stacks[i][t])))
			}
			if n == 1 { // one second: a flat segment across the plot
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", float64(chartW-marginR), y(stacks[i][0])))
			}
			if c.Stacked {
				last := float64(chartW - marginR)
				if n > 1 {
					last = x(n - 1)
				}
				fmt.Fprintf(&b, `<polygon points="%s %.1f,%.1f %.1f,%.1f" fill="%s" class="area"><title>%s</title></polygon>`,
					strings.Join(pts, " "), last, y(0), x(0), y(0), s.Color, html.EscapeString(s.Name))
				// Only the parts above the series below are its own.
				continue
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" class="line"><title>%s</title></polyline>`,
				strings.Join(pts, " "), s.Color, html.EscapeString(s.Name))
		}
	}
	for _, l := range c.Lines {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" class="limit"/>`,
			marginL, y(l.Value), chartW-marginR, y(l.Value), l.Color)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" class="limitlab" fill="%s">%s</text>`,
			chartW-marginR-6, y(l.Value)-6, l.Color, html.EscapeString(l.Label))
	}
	for _, bd := range c.Bands {
		lines := []float64{xs(bd.From)}
		if bd.To >= 0 {
			lines = append(lines, xs(bd.To))
		}
		for _, lx := range lines {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="%s" class="bandline"/>`,
				lx, marginT, lx, marginT+ph, bandColor)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="bandlab" fill="%s">%s</text>`,
			xs(bd.From)+5, marginT+14, bandColor, html.EscapeString(bd.Label))
	}
	// Hover: one transparent column per second with the values.
	colW := pw / float64(max(n, 1))
	for t := 0; t < n; t++ {
		var lines []string
		lines = append(lines, fmt.Sprintf("at %ss", fmtSec(float64(t)*stepS)))
		for _, s := range c.Series {
			if t < len(s.Vals) {
				lines = append(lines, fmt.Sprintf("%s: %s", s.Name, fmtNum(s.Vals[t])))
			}
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%.1f" class="hover"><title>%s</title></rect>`,
			math.Max(marginL, x(t)-colW/2), marginT, colW, ph, html.EscapeString(strings.Join(lines, "\n")))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="axis"/>`, marginL, y(0), chartW-marginR, y(0))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
