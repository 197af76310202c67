package tracing

import (
	"errors"
	"testing"
)

func TestFromEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		enabled bool
		badVar  string
	}{
		{"nothing set", nil, false, ""},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true, ""},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true, ""},
		{"exporter otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, ""},
		{"exporter none wins", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false, ""},
		{"sdk disabled wins", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false, ""},
		{"http/protobuf", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, true, ""},
		{"other exporter", map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, false, "OTEL_TRACES_EXPORTER"},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"traces protocol wins", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, true, ""},
		{"grpc while off", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, ""},
	} {
		cfg, err := FromEnv(func(k string) string { return tc.env[k] })
		var ce *ConfigError
		switch {
		case tc.badVar != "" && (!errors.As(err, &ce) || ce.Variable != tc.badVar):
			t.Errorf("%s: FromEnv error %v, want a *ConfigError naming %s", tc.name, err, tc.badVar)
		case tc.badVar == "" && err != nil:
			t.Errorf("%s: FromEnv error %v", tc.name, err)
		case cfg.Enabled != tc.enabled:
			t.Errorf("%s: Enabled = %v, want %v", tc.name, cfg.Enabled, tc.enabled)
		}
	}
}

// TestNilTracing: with tracing off every adapter is a no-op.
func TestNilTracing(t *testing.T) {
	t.Parallel()
	var tr *Tracing
	if tr.Provider() != nil || tr.PgxTracer() != nil || tr.Shutdown(t.Context()) != nil || tr.NewRedisClient() == nil {
		t.Error("a nil Tracing must give no provider, no pgx tracer, a plain Redis constructor and a no-op Shutdown")
	}
}
