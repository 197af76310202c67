// Package tracing gives the journal service its OpenTelemetry traces: the
// configuration from the standard OTEL_* variables ([FromEnv]), the tracer
// provider and its OTLP exporter ([New]), and the adapters that make the
// spans: one per HTTP request ([Tracing.StartRequest], for
// httpapi.Options.StartSpan), one per rate-limit decision ([Limiter]), one
// per Redis call (rueidis' own instrumentation, [Tracing.NewRedisClient]) and
// one per PostgreSQL query ([Tracing.PgxTracer]).
//
// Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER=otlp is set;
// then spans go to the OTLP/HTTP exporter, which reads the other standard
// variables (headers, timeout, compression, certificates) itself, and the
// SDK reads OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES. Nothing here sets OpenTelemetry's global
// providers: every user is handed the provider.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation names the tracer of this package's spans.
const instrumentation = "github.com/journalsvc/journal"

// Config is what the OTEL_* variables ask for.
type Config struct {
	// Enabled reports that traces are exported.
	Enabled bool
}

// ConfigError reports an OTEL_* variable this service cannot honour.
type ConfigError struct {
	Variable, Value, Want string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Variable, e.Value, e.Want)
}

// FromEnv reads the configuration through getenv. OTEL_TRACES_EXPORTER may
// be "otlp" (turns tracing on) or "none" (keeps it off, whatever else is
// set); OTEL_SDK_DISABLED=true keeps it off too. Only OTLP over HTTP with
// protobuf is built in: another OTEL_EXPORTER_OTLP_PROTOCOL (or its TRACES_
// form) is a *ConfigError, as is another exporter.
func FromEnv(getenv func(string) string) (Config, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return Config{}, nil
	}
	exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	on := getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	switch exp {
	case "":
	case "none":
		return Config{}, nil
	case "otlp":
		on = true
	default:
		return Config{}, &ConfigError{"OTEL_TRACES_EXPORTER", exp, "want otlp or none (other exporters are not built in)"}
	}
	if !on {
		return Config{}, nil
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(getenv(v)); p != "" {
			if p != "http/protobuf" {
				return Config{}, &ConfigError{v, p, "want http/protobuf (OTLP over gRPC is not built in)"}
			}
			break
		}
	}
	return Config{Enabled: true}, nil
}

// Tracing is the service's tracer provider and what it needs to make spans.
// A nil *Tracing is valid and makes none.
type Tracing struct {
	provider   *sdktrace.TracerProvider
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// New returns the tracing of cfg for the instance named instance, or nil
// when cfg is not enabled. Spans go to exporter when it is not nil (tests
// pass an in-memory one, which then sees every span as it ends), else to the
// OTLP/HTTP exporter in batches. Call Shutdown to flush them.
func New(ctx context.Context, cfg Config, instance string, exporter sdktrace.SpanExporter) (*Tracing, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "journal"), attribute.String("service.instance.id", instance)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	var proc sdktrace.SpanProcessor
	if exporter != nil {
		proc = sdktrace.NewSimpleSpanProcessor(exporter)
	} else {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
		}
		proc = sdktrace.NewBatchSpanProcessor(exp)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSpanProcessor(proc))
	return &Tracing{
		provider:   tp,
		tracer:     tp.Tracer(instrumentation),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// Provider returns the tracer provider, or nil for a nil Tracing.
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.provider
}

// Shutdown exports the spans still buffered and stops the provider; ctx
// bounds the wait. A nil Tracing does nothing.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}
