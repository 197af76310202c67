package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/journalsvc/journal/internal/testenv"
)

// TestTracing runs the service with Redis and PostgreSQL and tracing turned
// on by OTEL_TRACES_EXPORTER, spans going to an in-memory exporter. A request
// that continues a caller's trace (traceparent) makes the server span, named
// after its route, and under it a span per rate-limit decision, per Redis
// call and per PostgreSQL query; its access-log line carries the trace id.
func TestTracing(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	j := startJournalWith(t, hooks{spans: exp}, map[string]string{
		"JOURNAL_DATABASE_URL": testenv.PostgresURL(t),
		"JOURNAL_REDIS_URL":    "redis://" + testenv.RedisAddr(t),
		"JOURNAL_REDIS_PREFIX": testenv.RandomPrefix(),
		"OTEL_TRACES_EXPORTER": "otlp",
	})
	c := signup(t, j.URL, "tracy")

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := c.do("POST", "/v1/entries", map[string]string{"title": "traced", "body": "b"},
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01", "X-Request-ID", "traced-1")
	expect(t, "POST /v1/entries", r, http.StatusCreated)

	var spans tracetest.SpanStubs
	var server tracetest.SpanStub
	testenv.WaitFor(t, 10*time.Second, "the request's server span", func() bool {
		spans = nil
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() == traceID {
				spans = append(spans, s)
				if s.SpanKind == trace.SpanKindServer {
					server = s
				}
			}
		}
		return server.Name != ""
	})
	if server.Name != "POST /v1/entries" || server.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("server span %q with parent %s, want POST /v1/entries under the caller's span", server.Name, server.Parent.SpanID())
	}
	kinds := map[string]int{}
	for _, s := range spans {
		switch {
		case strings.HasPrefix(s.Name, "ratelimit."):
			kinds["limiter"]++
		case strings.HasPrefix(s.Name, "postgres"):
			kinds["postgres"]++
		case s.InstrumentationScope.Name == "github.com/redis/rueidis":
			kinds["redis"]++
		}
	}
	t.Logf("spans of the request by kind: %v", kinds)
	// ip before authentication, user after; the entry's INSERT and outbox
	// row; the cache invalidation and the limiter's script calls.
	if kinds["limiter"] < 2 || kinds["postgres"] < 2 || kinds["redis"] < 1 {
		var names []string
		for _, s := range spans {
			names = append(names, s.InstrumentationScope.Name+" "+s.Name)
		}
		t.Errorf("spans of the request by kind %v, want at least 2 limiter decisions, 2 queries and 1 Redis call; spans: %q", kinds, names)
	}

	var logged string
	for _, line := range strings.Split(j.logs.String(), "\n") {
		var rec struct {
			Msg, RequestID, TraceID string
		}
		if json.Unmarshal([]byte(line), &struct {
			Msg       *string `json:"msg"`
			RequestID *string `json:"request_id"`
			TraceID   *string `json:"trace_id"`
		}{&rec.Msg, &rec.RequestID, &rec.TraceID}) == nil && rec.Msg == "request" && rec.RequestID == "traced-1" {
			logged = rec.TraceID
		}
	}
	if logged != traceID {
		t.Errorf("access-log line of the request has trace_id %q, want %q", logged, traceID)
	}
}

// TestTracingOff: without OTEL_* variables no span is made and the log
// lines carry no trace id.
func TestTracingOff(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	j := startJournalWith(t, hooks{spans: exp}, nil)
	signup(t, j.URL, "quiet")
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans without OTEL_* variables, want none", n)
	}
	if strings.Contains(j.logs.String(), "trace_id") {
		t.Errorf("a log line has a trace_id without tracing")
	}
}
