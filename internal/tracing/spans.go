package tracing

import (
	"context"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidisotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/journalsvc/journal/ratelimit"
)

// StartRequest starts the server span of r, the child of the trace a
// traceparent header names, and returns the context that carries it, its
// trace id for the access log, and the function that ends it with the route
// pattern the mux matched ("" when none) and the status. It fits
// httpapi.Options.StartSpan.
func (t *Tracing) StartRequest(r *http.Request) (context.Context, string, func(route string, status int)) {
	ctx := t.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := t.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	return ctx, span.SpanContext().TraceID().String(), func(route string, status int) {
		if route != "" {
			span.SetName(route) // "GET /v1/entries/{id}": method and route
			span.SetAttributes(attribute.String("http.route", route[strings.IndexByte(route, ' ')+1:]))
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		span.End()
	}
}

// Limiter wraps l so that each decision, peek and reset is a span named
// after the operation, with the policies, the outcome and whether it was
// degraded. With a nil Tracing it returns l itself.
func (t *Tracing) Limiter(l ratelimit.Limiter) ratelimit.Limiter {
	if t == nil {
		return l
	}
	return tracedLimiter{l: l, tracer: t.tracer}
}

type tracedLimiter struct {
	l      ratelimit.Limiter
	tracer trace.Tracer
}

var _ ratelimit.Limiter = tracedLimiter{}

func (tl tracedLimiter) Decide(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return tl.decision(ctx, "ratelimit.decide", d, items, func(ctx context.Context) error {
		return tl.l.Decide(ctx, d, subject, items...)
	})
}

func (tl tracedLimiter) Peek(ctx context.Context, d *ratelimit.Decision, subject string, items ...ratelimit.Item) error {
	return tl.decision(ctx, "ratelimit.peek", d, items, func(ctx context.Context) error {
		return tl.l.Peek(ctx, d, subject, items...)
	})
}

func (tl tracedLimiter) Reset(ctx context.Context, subject string, policy string) error {
	ctx, span := tl.tracer.Start(ctx, "ratelimit.reset", trace.WithAttributes(attribute.String("ratelimit.policy", policy)))
	defer span.End()
	err := tl.l.Reset(ctx, subject, policy)
	recordErr(span, err)
	return err
}

// decision runs one decision or peek into d in a span. The subject (an
// address, a user id) is not recorded.
func (tl tracedLimiter) decision(ctx context.Context, name string, d *ratelimit.Decision, items []ratelimit.Item, run func(context.Context) error) error {
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.Policy.Name
	}
	ctx, span := tl.tracer.Start(ctx, name, trace.WithAttributes(attribute.StringSlice("ratelimit.policies", names)))
	defer span.End()
	if err := run(ctx); err != nil {
		recordErr(span, err)
		return err
	}
	span.SetAttributes(attribute.Bool("ratelimit.allowed", d.Allowed), attribute.Bool("ratelimit.degraded", d.Degraded()))
	return nil
}

// NewRedisClient returns the constructor of Redis clients whose calls are
// spans (rueidis' own instrumentation, without the command's arguments), or
// rueidis.NewClient itself for a nil Tracing.
func (t *Tracing) NewRedisClient() func(rueidis.ClientOption) (rueidis.Client, error) {
	if t == nil {
		return rueidis.NewClient
	}
	return func(opt rueidis.ClientOption) (rueidis.Client, error) {
		return rueidisotel.NewClient(opt,
			rueidisotel.WithTracerProvider(t.provider),
			rueidisotel.WithMeterProvider(noop.NewMeterProvider()), // metrics go to Prometheus
		)
	}
}

// PgxTracer returns the pgx tracer that makes each PostgreSQL query a span
// with its SQL (placeholders, never the arguments), or nil for a nil Tracing.
func (t *Tracing) PgxTracer() pgx.QueryTracer {
	if t == nil {
		return nil
	}
	return pgxTracer{t.tracer}
}

type pgxTracer struct{ tracer trace.Tracer }

func (p pgxTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	name := "postgres"
	if op, _, ok := strings.Cut(strings.TrimSpace(data.SQL), " "); ok {
		name += " " + strings.ToUpper(op)
	}
	ctx, _ = p.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", "postgresql"), attribute.String("db.query.text", data.SQL)))
	return ctx
}

func (p pgxTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	span := trace.SpanFromContext(ctx)
	recordErr(span, data.Err)
	span.End()
}

func recordErr(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}
