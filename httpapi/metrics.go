package httpapi

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the HTTP collectors. The route label is the pattern the mux
// matched ("GET /v1/entries/{id}") or "unmatched", so its cardinality is
// bounded by the route table.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// byRoute holds the children of requests and duration by route and
	// status, so that a request costs a lookup in an immutable map rather
	// than two WithLabelValues (which check and hash the values and take
	// the vector's lock) and the formatting of its status. Routes and
	// statuses are few: the map is copied when one is added, under mu.
	byRoute atomic.Pointer[map[routeStatus]routeMetrics]
	mu      sync.Mutex
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
	rm := m.forRoute(routeStatus{route, status})
	rm.requests.Inc()
	rm.duration.Observe(d.Seconds())
}

// forRoute returns the children of k's labels, adding them to byRoute the
// first time.
func (m *metrics) forRoute(k routeStatus) routeMetrics {
	if byRoute := m.byRoute.Load(); byRoute != nil {
		if rm, ok := (*byRoute)[k]; ok {
			return rm
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next := map[routeStatus]routeMetrics{}
	if old := m.byRoute.Load(); old != nil {
		if rm, ok := (*old)[k]; ok {
			return rm
		}
		next = maps.Clone(*old)
	}
	rm := routeMetrics{
		requests: m.requests.WithLabelValues(k.route, strconv.Itoa(k.status)),
		duration: m.duration.WithLabelValues(k.route),
	}
	next[k] = rm
	m.byRoute.Store(&next)
	return rm
}
