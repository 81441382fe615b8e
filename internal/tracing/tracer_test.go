package tracing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestUnsampledCostsNoStageSpans: a request that is not sampled gets no
// stage spans (Stage returns the zero Span, Fetch the fetch itself), and
// the upstream still receives a traceparent continuing the client's
// trace, not sampled.
func TestUnsampledCostsNoStageSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	zero := 0.0
	tr := NewWithExporter(Config{Enabled: true, SamplingRatio: &zero}, exp)
	h := http.Header{}
	r := tr.Start(context.Background(), h, "GET", "https", "api.example.com", 443, "/v1")
	if s := tr.Stage(r.Context(), SpanIdentity); s.s != nil {
		t.Error("Stage of an unsampled request made a span")
	}
	calls := 0
	f := func(context.Context) (int, error) { calls++; return 1, nil }
	if v, _ := Fetch(Span{}, "c", "p", f)(context.Background()); v != 1 || calls != 1 {
		t.Error("Fetch of the zero Span is not the fetch itself")
	}
	out := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	r.Upstream(r.Context(), out, "GET", "api.example.com", 443)
	r.UpstreamDone(200, "")
	r.End()
	if tp := out.Get("Traceparent"); len(tp) != 55 || tp[53:] != "00" {
		t.Errorf("upstream traceparent %q, want a new unsampled one in place of the stale client value", tp)
	}
	if err := tr.tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported at ratio 0", n)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// failingExporter fails every export.
type failingExporter struct{ sdktrace.SpanExporter }

func (failingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	return errors.New("connection refused")
}

// TestFailedExportIsLogged: a failed export is one JSON log line of the
// gateway's log, and the SDK sees success (nothing goes to OpenTelemetry's
// global error handler).
func TestFailedExportIsLogged(t *testing.T) {
	var buf bytes.Buffer
	e := loggedExporter{SpanExporter: failingExporter{}, log: slog.New(slog.NewJSONHandler(&buf, nil))}
	if err := e.ExportSpans(t.Context(), make([]sdktrace.ReadOnlySpan, 3)); err != nil {
		t.Fatalf("ExportSpans = %v, want nil", err)
	}
	if got := buf.String(); !strings.Contains(got, `"msg":"span export failed; the spans are dropped","spans":3,"error":"connection refused"`) {
		t.Errorf("log: %s", got)
	}
}
