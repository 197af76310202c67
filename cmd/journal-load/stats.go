package main

import (
	"sort"
	"sync"
	"time"
)

// result is the outcome of one request as the recorder sees it.
type result struct {
	At       time.Time     // when the request was sent
	Latency  time.Duration // until the response headers (and body) were read
	Status   int           // 0 when the request failed without a response
	Instance string        // the X-Instance header, "" when absent
	Failed   bool          // a transport error, a 5xx or a status the scenario did not expect
}

// second aggregates the results of one bucket (a second, or a tenth of
// one for short scenarios) of the run.
type second struct {
	ByClass    map[string]int // "2xx", "3xx", "4xx", "429", "5xx", "error"
	ByInstance map[string]int
	Failed     int
	Admitted   int // ratelimit: responses not refused by the limiter
	hist       histogram
}

// recorder collects results into per-second buckets and totals. It is safe
// for concurrent use. Memory is bounded by the run's length in seconds, not
// by the number of requests.
type recorder struct {
	start time.Time
	width time.Duration // of a bucket

	mu         sync.Mutex
	seconds    []*second
	total      histogram
	byStatus   map[int]int
	byInstance map[string]int
	failed     int
	requests   int
	// lastProgress is the window of the latest progress line.
	window histogram
}

// newRecorder returns a recorder of a run that started at start, with
// buckets of width (a second for charts "per second").
func newRecorder(start time.Time, width time.Duration) *recorder {
	return &recorder{start: start, width: width, byStatus: map[int]int{}, byInstance: map[string]int{}}
}

// Begin restarts the recorder's clock at t, when a scenario's setup
// (sign-ups, which the charts do not show) is done (see [progress.Begin]). It must be called
// before the first Record.
func (r *recorder) Begin(t time.Time) {
	r.mu.Lock()
	r.start = t
	r.mu.Unlock()
}

// Start returns when the measured part of the run began.
func (r *recorder) Start() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.start
}

// statusClass names the class a status code is charted in.
func statusClass(code int) string {
	switch {
	case code == 0:
		return "error"
	case code == 429:
		return "429"
	case code < 300:
		return "2xx"
	case code < 400:
		return "3xx"
	case code < 500:
		return "4xx"
	default:
		return "5xx"
	}
}

// classes lists the status classes in chart order.
var classes = []string{"2xx", "3xx", "4xx", "429", "5xx", "error"}

// Record adds one result; admitted marks a request the rate limiter let
// through (for the ratelimit scenario's cumulative chart).
func (r *recorder) Record(res result, admitted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := int(res.At.Sub(r.start) / r.width)
	if idx < 0 {
		idx = 0
	}
	for len(r.seconds) <= idx {
		r.seconds = append(r.seconds, &second{ByClass: map[string]int{}, ByInstance: map[string]int{}})
	}
	s := r.seconds[idx]
	s.ByClass[statusClass(res.Status)]++
	if res.Instance != "" {
		s.ByInstance[res.Instance]++
		r.byInstance[res.Instance]++
	}
	if res.Failed {
		s.Failed++
		r.failed++
	}
	if admitted {
		s.Admitted++
	}
	s.hist.Record(res.Latency)
	r.total.Record(res.Latency)
	r.window.Record(res.Latency)
	r.byStatus[res.Status]++
	r.requests++
}

// snapshot is a consistent copy of the recorder's totals.
type snapshot struct {
	Requests   int
	Failed     int
	ByStatus   map[int]int
	ByInstance map[string]int
	Latency    latencySummary
	// Window is the latency of the requests since the previous
	// snapshot(true).
	Window latencySummary
}

// latencySummary holds the percentiles of a histogram in milliseconds.
type latencySummary struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func summarize(h *histogram) latencySummary {
	return latencySummary{
		P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		Max: ms(h.Max()), Mean: ms(h.Mean()),
	}
}

// snapshot copies the totals; resetWindow starts a new progress window.
func (r *recorder) snapshot(resetWindow bool) snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := snapshot{
		Requests: r.requests, Failed: r.failed,
		ByStatus: map[int]int{}, ByInstance: map[string]int{},
		Latency: summarize(&r.total), Window: summarize(&r.window),
	}
	for k, v := range r.byStatus {
		s.ByStatus[k] = v
	}
	for k, v := range r.byInstance {
		s.ByInstance[k] = v
	}
	if resetWindow {
		r.window = histogram{}
	}
	return s
}

// timeline is the per-bucket view of a run, for the report.
type timeline struct {
	Buckets   int
	Width     time.Duration
	Classes   map[string][]float64 // per class, requests in each bucket
	Instances map[string][]float64
	Failed    []float64
	Admitted  []float64 // cumulative
	P50       []float64 // ms; NaN-free: 0 for an empty second
	P90       []float64
	P99       []float64
	Count     []float64
}

// timeline returns the per-bucket series.
func (r *recorder) timeline() timeline {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.seconds)
	tl := timeline{Buckets: n, Width: r.width, Classes: map[string][]float64{}, Instances: map[string][]float64{}}
	for _, c := range classes {
		tl.Classes[c] = make([]float64, n)
	}
	for name := range r.byInstance {
		tl.Instances[name] = make([]float64, n)
	}
	tl.Failed = make([]float64, n)
	tl.Admitted = make([]float64, n)
	tl.P50, tl.P90, tl.P99, tl.Count = make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	cum := 0.0
	for i := 0; i < n; i++ {
		if i < len(r.seconds) {
			s := r.seconds[i]
			for c, v := range s.ByClass {
				tl.Classes[c][i] = float64(v)
			}
			for name, v := range s.ByInstance {
				tl.Instances[name][i] = float64(v)
			}
			tl.Failed[i] = float64(s.Failed)
			cum += float64(s.Admitted)
			tl.P50[i] = ms(s.hist.Quantile(0.5))
			tl.P90[i] = ms(s.hist.Quantile(0.9))
			tl.P99[i] = ms(s.hist.Quantile(0.99))
			tl.Count[i] = float64(s.hist.Count())
		}
		tl.Admitted[i] = cum
	}
	return tl
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
