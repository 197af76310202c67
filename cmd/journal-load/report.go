package main

import (
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"os"
	"sort"
	"strconv"
	"time"
)

//go:embed report.html.tmpl
var reportTmpl string

// reportPage is what report.html.tmpl renders.
type reportPage struct {
	S         *summary
	Generated string
	Tiles     []tile
	Charts    []chart
	Instances []instanceRow
	Statuses  []kv
	Legends   map[string][]legendItem
	// ReadyEvery is how often the outage scenario asked /readyz.
	ReadyEvery time.Duration
}

// tile is one big number at the top of the page.
type tile struct {
	Label, Value, Sub string
	Tone              string // "good", "bad" or ""
}

type instanceRow struct {
	Name                       string
	Requests, Admitted, Denied int
	Share                      float64 // percent of all requests
}

type kv struct {
	Key   string
	Value int
	Color string
}

type legendItem struct {
	Name, Color, Total string
}

var classColor = map[string]string{
	"2xx": "#2f9e44", "3xx": "#1c7ed6", "4xx": "#f59f00", "429": "#f76707", "5xx": "#e03131", "error": "#862e9c",
}

var instancePalette = []string{"#4263eb", "#0ca678", "#f08c00", "#ae3ec9", "#1098ad", "#e64980", "#74b816", "#495057"}

// perSecond turns per-bucket counts into rates per second, scaling the
// last, partial bucket by how much of it the run covered (or dropping it
// when under a quarter, where the estimate is mostly noise).
func perSecond(vals []float64, tl timeline, elapsed float64) []float64 {
	w := tl.Width.Seconds()
	out := make([]float64, len(vals))
	for i, v := range vals {
		out[i] = v / w
	}
	return trimPartial(out, tl, elapsed, true)
}

// trimPartial drops the last bucket when the run covered under a quarter of
// it, unless it is the only one (a run shorter than a quarter of a bucket
// still draws its point); scale also scales a partial last bucket up to a
// full one.
func trimPartial(vals []float64, tl timeline, elapsed float64, scale bool) []float64 {
	if len(vals) == 0 {
		return vals
	}
	frac := (elapsed - float64(len(vals)-1)*tl.Width.Seconds()) / tl.Width.Seconds()
	switch {
	case frac >= 1 || frac <= 0:
	case frac < 0.25 && len(vals) > 1:
		vals = vals[:len(vals)-1]
	case scale:
		vals[len(vals)-1] /= frac
	}
	return vals
}

// buildReport assembles the page for s and its timeline.
func buildReport(s *summary, tl timeline) reportPage {
	step := tl.Width.Seconds()
	p := reportPage{S: s, Generated: time.Now().UTC().Format(time.RFC1123), Legends: map[string][]legendItem{}, ReadyEvery: readyEvery}
	good := func(ok bool) string {
		if ok {
			return "good"
		}
		return "bad"
	}
	p.Tiles = append(p.Tiles,
		tile{Label: "requests", Value: strconv.Itoa(s.Requests), Sub: fmt.Sprintf("%.0f per second over %.1f s", s.RPS, s.Elapsed)},
		tile{Label: "failed", Value: strconv.Itoa(s.Failed), Sub: "errors, 5xx, unexpected statuses", Tone: good(s.Failed == 0)},
		tile{Label: "latency p50", Value: fmt.Sprintf("%.1f ms", s.Latency.P50), Sub: fmt.Sprintf("p90 %.1f ms", s.Latency.P90)},
		tile{Label: "latency p99", Value: fmt.Sprintf("%.1f ms", s.Latency.P99), Sub: fmt.Sprintf("max %.1f ms", s.Latency.Max)},
	)
	if r := s.Ratelimit; r != nil {
		p.Tiles = append(p.Tiles,
			tile{Label: "admitted / expected", Value: fmt.Sprintf("%d / %d", r.Admitted, r.Expected),
				Sub: fmt.Sprintf("policy %q: %d per %d s", r.Policy, r.Limit, r.WindowS), Tone: good(r.Exact)},
			tile{Label: "refused (429)", Value: strconv.Itoa(r.Denied),
				Sub: fmt.Sprintf("%d without Retry-After", r.RetryAfterMissing), Tone: good(r.RetryAfterMissing == 0)})
	}
	if c := s.Coherence; c != nil {
		p.Tiles = append(p.Tiles,
			tile{Label: "stale reads", Value: strconv.Itoa(c.StaleReads),
				Sub: fmt.Sprintf("of %d reads on another instance", c.ItemReads+c.ListReads), Tone: good(c.StaleReads == 0)},
			tile{Label: "invalidation lag", Value: fmt.Sprintf("%.1f ms", c.LagMaxMs), Sub: "longest a stale read lasted"},
			tile{Label: "revocation lag", Value: fmt.Sprintf("%.1f ms", c.RevocationMax),
				Sub: fmt.Sprintf("max of %d revocations", c.Revocations), Tone: good(c.RevokedStill == 0 && c.RevocationMax < 100)})
	}
	if pc := s.Paced; pc != nil {
		p.Tiles = append(p.Tiles,
			tile{Label: "offered rate", Value: fmt.Sprintf("%g/s", pc.TargetRate), Sub: fmt.Sprintf("%d sent, %d missed (all workers busy)", pc.Sent, pc.Missed),
				Tone: missTone(pc.Sent, pc.Missed)})
		if s.Scenario == "outage" {
			p.Tiles = append(p.Tiles, tile{Label: "faults seen", Value: strconv.Itoa(len(pc.Faults)), Sub: "times /readyz was not ready"})
		}
	}
	p.Tiles = append(p.Tiles, tile{Label: "instances", Value: strconv.Itoa(len(s.ByInstance)), Sub: "answered (X-Instance)"})

	// Requests per second by status class.
	byStatus := chart{Step: step, ID: "by-status", Title: "Requests per second by status", Unit: "req/s", Stacked: true,
		Note: "Stacked: the top edge is the total throughput."}
	for _, c := range classes {
		vals := tl.Classes[c]
		total := sum(vals)
		if total == 0 && c != "2xx" {
			continue
		}
		byStatus.Series = append(byStatus.Series, series{Name: c, Color: classColor[c], Vals: perSecond(vals, tl, s.Elapsed)})
		p.Legends[byStatus.ID] = append(p.Legends[byStatus.ID], legendItem{c, classColor[c], fmtNum(total)})
	}
	p.Charts = append(p.Charts, byStatus)

	byInst := chart{Step: step, ID: "by-instance", Title: "Requests per second by instance", Unit: "req/s", Stacked: true,
		Note: "Which instance answered (X-Instance): the balancer's share-out over time."}
	for i, name := range sortedKeys(tl.Instances) {
		col := instancePalette[i%len(instancePalette)]
		byInst.Series = append(byInst.Series, series{Name: name, Color: col, Vals: perSecond(tl.Instances[name], tl, s.Elapsed)})
		p.Legends[byInst.ID] = append(p.Legends[byInst.ID], legendItem{name, col, fmtNum(sum(tl.Instances[name]))})
	}
	if len(byInst.Series) > 0 {
		p.Charts = append(p.Charts, byInst)
	}

	if r := s.Ratelimit; r != nil {
		adm := chart{Step: step, ID: "admitted", Title: "Admitted so far, against the limit", Unit: "requests",
			Note: "Cumulative admitted requests of the flood; the dashed line is what the limit allows."}
		// Points are the ends of the buckets, from 0 at the start.
		adm.Series = []series{{Name: "admitted", Color: "#2f9e44", Vals: append([]float64{0}, tl.Admitted...)}}
		if r.Limit > 0 {
			adm.Lines = []hline{{Value: float64(r.Expected), Label: fmt.Sprintf("limit %d", r.Expected), Color: "#e03131"}}
		}
		p.Legends[adm.ID] = []legendItem{{"admitted", "#2f9e44", strconv.Itoa(r.Admitted)}, {"limit", "#e03131", strconv.Itoa(r.Expected)}}
		p.Charts = append(p.Charts, adm)
	}

	lat := chart{Step: step, ID: "latency", Title: "Latency percentiles over time", Unit: "ms",
		Note: fmt.Sprintf("Each point covers %s of requests, from sending to the last byte of the response.", tl.Width)}
	lat.Series = []series{
		{Name: "p50", Color: "#74c0fc", Vals: trimPartial(trimTo(tl.P50, tl.Count), tl, s.Elapsed, false)},
		{Name: "p90", Color: "#339af0", Vals: trimPartial(trimTo(tl.P90, tl.Count), tl, s.Elapsed, false)},
		{Name: "p99", Color: "#1864ab", Vals: trimPartial(trimTo(tl.P99, tl.Count), tl, s.Elapsed, false)},
	}
	p.Legends[lat.ID] = []legendItem{
		{"p50", "#74c0fc", fmt.Sprintf("%.1f ms", s.Latency.P50)},
		{"p90", "#339af0", fmt.Sprintf("%.1f ms", s.Latency.P90)},
		{"p99", "#1864ab", fmt.Sprintf("%.1f ms", s.Latency.P99)},
	}
	p.Charts = append(p.Charts, lat)

	if s.Paced != nil || s.Failed > 0 {
		fail := chart{Step: step, ID: "failed", Title: "Failed requests per second", Unit: "req/s",
			Note: "Transport errors, 5xx and statuses the scenario did not expect: an outage shows here."}
		fail.Series = []series{{Name: "failed", Color: "#e03131", Vals: perSecond(tl.Failed, tl, s.Elapsed)}}
		p.Legends[fail.ID] = []legendItem{{"failed", "#e03131", strconv.Itoa(s.Failed)}}
		p.Charts = append(p.Charts, fail)
	}

	if pc := s.Paced; pc != nil && len(pc.Faults) > 0 {
		var bands []band
		for _, f := range pc.Faults {
			bands = append(bands, band{From: f.BeginS, To: f.EndS, Label: f.What})
		}
		for i := range p.Charts {
			c := &p.Charts[i]
			c.Bands = bands
			p.Legends[c.ID] = append(p.Legends[c.ID], legendItem{"fault: /readyz not ready", bandColor, strconv.Itoa(len(bands))})
		}
	}

	for name, n := range s.ByInstance {
		row := instanceRow{Name: name, Requests: n}
		if s.Requests > 0 {
			row.Share = 100 * float64(n) / float64(s.Requests)
		}
		if r := s.Ratelimit; r != nil {
			row.Admitted, row.Denied = r.AdmittedByInstance[name], r.DeniedByInstance[name]
		}
		p.Instances = append(p.Instances, row)
	}
	sort.Slice(p.Instances, func(i, j int) bool { return p.Instances[i].Name < p.Instances[j].Name })
	for k, v := range s.ByStatus {
		code, _ := strconv.Atoi(k)
		p.Statuses = append(p.Statuses, kv{k, v, classColor[statusClass(code)]})
	}
	sort.Slice(p.Statuses, func(i, j int) bool { return p.Statuses[i].Key < p.Statuses[j].Key })
	return p
}

// missTone is good without missed sends, neutral under 1%, else bad.
func missTone(sent, missed int) string {
	switch {
	case missed == 0:
		return "good"
	case float64(missed) < 0.01*float64(sent+missed):
		return ""
	default:
		return "bad"
	}
}

func sum(vs []float64) float64 {
	t := 0.0
	for _, v := range vs {
		t += v
	}
	return t
}

// trimTo drops trailing seconds without requests (a latency of 0 there would
// be a lie).
func trimTo(vals, counts []float64) []float64 {
	n := len(vals)
	for n > 0 && counts[n-1] == 0 {
		n--
	}
	return vals[:n]
}

// writeReport renders the HTML report of s to path.
func writeReport(path string, s *summary, tl timeline) error {
	t, err := template.New("report").Funcs(template.FuncMap{
		"f1":  func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
		"f2":  func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) },
		"pct": func(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', 1, 64) + "%" },
		"sub": func(a, b float64) float64 { return a - b },
	}).Parse(reportTmpl)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := t.Execute(f, buildReport(s, tl)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
