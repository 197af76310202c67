package httpapi

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/journalsvc/journal/internal/metrics/childcache"
)

// metrics are the HTTP collectors. The route label is the pattern the mux
// matched ("GET /v1/entries/{id}") or "unmatched", so its cardinality is
// bounded by the route table.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// byRoute holds the children of requests and duration by route and
	// status, so that a request costs one lookup rather than two
	// WithLabelValues and the formatting of its status.
	byRoute childcache.Cache[routeStatus, routeMetrics]
}

type routeStatus struct {
	route  string
	status int
}

type routeMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "journal_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "journal_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	rm := m.byRoute.Get(routeStatus{route, status}, m.routeChildren)
	rm.requests.Inc()
	rm.duration.Observe(d.Seconds())
}

// routeChildren returns the children of k's labels.
func (m *metrics) routeChildren(k routeStatus) routeMetrics {
	return routeMetrics{
		requests: m.requests.WithLabelValues(k.route, strconv.Itoa(k.status)),
		duration: m.duration.WithLabelValues(k.route),
	}
}
