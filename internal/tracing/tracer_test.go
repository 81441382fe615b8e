package tracing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestUnsampledCostsNoStageSpans: a request that is not sampled gets no
// span (Start returns its context as it was, without allocating; Stage
// returns the zero Span, Fetch the fetch itself), and the upstream still
// receives a traceparent: a new unsampled one in place of a stale client
// value.
func TestUnsampledCostsNoStageSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	zero := 0.0
	tr := NewWithExporter(Config{Enabled: true, SamplingRatio: &zero}, exp)
	h := http.Header{}
	ctx, r := tr.Start(t.Context(), h, "GET", "https", "api.example.com", 443, "/v1")
	if ctx != t.Context() || r.Sampled() {
		t.Error("Start of an unsampled request made a span")
	}
	if s := tr.Stage(ctx, SpanIdentity); s.s != nil {
		t.Error("Stage of an unsampled request made a span")
	}
	calls := 0
	f := func(context.Context) (int, error) { calls++; return 1, nil }
	if v, _ := Fetch(Span{}, "c", "p", f)(context.Background()); v != 1 || calls != 1 {
		t.Error("Fetch of the zero Span is not the fetch itself")
	}
	if n := testing.AllocsPerRun(100, func() {
		_, r := tr.Start(ctx, h, "GET", "https", "api.example.com", 443, "/v1")
		r.Outcome("w", "rule", "inject", "", 200)
		r.End()
	}); n != 0 {
		t.Errorf("an unsampled request's Start, Outcome and End allocate %v times, want 0", n)
	}
	out := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "Tracestate": {"stale=1"}}
	if got := r.Upstream(ctx, out, "GET", "api.example.com", 443); got != ctx {
		t.Error("Upstream of an unsampled request changed its context")
	}
	r.UpstreamDone(200, "")
	r.End()
	tp := out.Get("Traceparent")
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(t.Context(), propagation.HeaderCarrier(out)))
	if len(out["Traceparent"]) != 1 || !sc.IsValid() || sc.IsSampled() || strings.Contains(tp, "4bf92f3577b34da6a3ce929d0e0e4736") || out["Tracestate"] != nil {
		t.Errorf("upstream traceparent %q tracestate %q, want a new valid unsampled traceparent and no tracestate", tp, out["Tracestate"])
	}
	if tp2 := newUnsampledTraceparent(); tp2 == tp {
		t.Errorf("two new traceparents are both %q", tp)
	}
	if err := tr.tp.ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported at ratio 0", n)
	}
	if err := tr.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestSamplingDecision: the client's sampled flag decides whatever the
// ratio (parent-based); an unsampled client traceparent and its
// tracestate reach the upstream as sent; an invalid one counts as none
// (a new trace at the ratio); new traces are sampled at the ratio.
func TestSamplingDecision(t *testing.T) {
	const (
		traceID   = "4bf92f3577b34da6a3ce929d0e0e4736"
		sampled   = "00-" + traceID + "-00f067aa0ba902b7-01"
		unsampled = "00-" + traceID + "-00f067aa0ba902b7-00"
	)
	for _, tc := range []struct {
		name        string
		ratio       float64
		traceparent string
		want        bool
		client      string // client_sampling
	}{
		{"client sampled, ratio 0", 0, sampled, true, ""},
		{"client not sampled, ratio 1", 1, unsampled, false, ""},
		{"invalid client traceparent, ratio 1", 1, "00-zz-00f067aa0ba902b7-01", true, ""},
		{"invalid client traceparent, ratio 0", 0, "00-zz-00f067aa0ba902b7-01", false, ""},
		{"no client traceparent, ratio 1", 1, "", true, ""},
		// client_sampling: ratio: a client's flag 1 is sampled at the
		// ratio (passed on as sent when not), its flag 0 still followed.
		{"client sampled, ratio 0, client_sampling ratio", 0, sampled, false, ClientSamplingRatio},
		{"client sampled, ratio 1, client_sampling ratio", 1, sampled, true, ClientSamplingRatio},
		{"client not sampled, ratio 1, client_sampling ratio", 1, unsampled, false, ClientSamplingRatio},
		{"client sampled, ratio 0, client_sampling follow", 0, sampled, true, ClientSamplingFollow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tr := NewWithExporter(Config{Enabled: true, SamplingRatio: &tc.ratio, ClientSampling: tc.client}, exp)
			defer tr.Shutdown(t.Context())
			in := http.Header{"Tracestate": {"vendor=opaque"}}
			if tc.traceparent != "" {
				in.Set("Traceparent", tc.traceparent)
			}
			ctx, r := tr.Start(t.Context(), in, "GET", "https", "api.example.com", 443, "/v1")
			out := in.Clone()
			r.Upstream(ctx, out, "GET", "api.example.com", 443)
			r.UpstreamDone(200, "")
			r.End()
			if r.Sampled() != tc.want {
				t.Fatalf("sampled %v, want %v", r.Sampled(), tc.want)
			}
			if tc.client == ClientSamplingRatio && tc.traceparent == sampled && !tc.want {
				// Not recorded: the client's context goes on as sent.
				if out.Get("Traceparent") != sampled || out.Get("Tracestate") != "vendor=opaque" {
					t.Errorf("upstream got %q %q, want the client's traceparent and tracestate as sent", out.Get("Traceparent"), out.Get("Tracestate"))
				}
				return
			}
			sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(t.Context(), propagation.HeaderCarrier(out)))
			if !sc.IsValid() || sc.IsSampled() != tc.want {
				t.Errorf("upstream traceparent %q: valid %v sampled %v, want valid, sampled %v", out.Get("Traceparent"), sc.IsValid(), sc.IsSampled(), tc.want)
			}
			if tc.traceparent == unsampled && (out.Get("Traceparent") != unsampled || out.Get("Tracestate") != "vendor=opaque") {
				t.Errorf("upstream got %q %q, want the client's unsampled traceparent and tracestate as sent", out.Get("Traceparent"), out.Get("Tracestate"))
			}
			if err := tr.tp.ForceFlush(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n := len(exp.GetSpans()); (n > 0) != tc.want {
				t.Errorf("%d spans exported, sampled %v", n, tc.want)
			}
		})
	}
	// New traces at ratio 0.1: 2000 requests, about 200 sampled (bounds
	// 6 standard deviations wide).
	ratio := 0.1
	tr := NewWithExporter(Config{Enabled: true, SamplingRatio: &ratio}, tracetest.NewNoopExporter())
	defer tr.Shutdown(t.Context())
	n := 0
	for range 2000 {
		_, r := tr.Start(t.Context(), http.Header{}, "GET", "https", "api.example.com", 443, "/v1")
		if r.Sampled() {
			n++
		}
		r.End()
	}
	if n < 120 || n > 280 {
		t.Errorf("%d of 2000 new traces sampled at ratio 0.1, want about 200", n)
	}
	// Under client_sampling: ratio, 2000 requests each with a sampled
	// client traceparent (a client flooding the collector) are sampled
	// at 0.1 too.
	tr = NewWithExporter(Config{Enabled: true, SamplingRatio: &ratio, ClientSampling: ClientSamplingRatio}, tracetest.NewNoopExporter())
	defer tr.Shutdown(t.Context())
	n = 0
	for range 2000 {
		_, r := tr.Start(t.Context(), http.Header{"Traceparent": {sampled}}, "GET", "https", "api.example.com", 443, "/v1")
		if r.Sampled() {
			n++
		}
		r.End()
	}
	if n < 120 || n > 280 {
		t.Errorf("%d of 2000 client-sampled requests recorded at ratio 0.1 under client_sampling: ratio, want about 200", n)
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

// TestAttributesBounded: every string attribute a span gets is at most
// MaxAttributeBytes, valid UTF-8 when its input was, and, when cut, a
// copy that does not share the input's memory (a substring would keep
// the whole request line alive while the span waits in the queue). Each
// of the tracer's calls is driven with values far over the bound — the
// path, method and host come from the client; the others are names the
// policy chose, bounded all the same. Before, a span kept the client's
// path whole: 3,000 sampled requests with 60 KiB paths to a receiver that
// was down held about 100 MiB in the span queue.
func TestAttributesBounded(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	one := 1.0
	tr := NewWithExporter(Config{Enabled: true, SamplingRatio: &one}, exp)
	defer tr.Shutdown(t.Context())
	inputs := map[string]string{
		"ascii":       strings.Repeat("a", 64<<10),
		"two-byte":    strings.Repeat("é", 32<<10),
		"four-byte":   strings.Repeat("😀", 16<<10),
		"at bound":    strings.Repeat("b", MaxAttributeBytes),
		"one over":    strings.Repeat("c", MaxAttributeBytes) + "é",
		"rune across": strings.Repeat("d", MaxAttributeBytes-1) + "é",
	}
	for name, v := range inputs {
		t.Run(name, func(t *testing.T) {
			exp.Reset()
			ctx, r := tr.Start(t.Context(), http.Header{}, v, v, v, 443, v)
			id := tr.Stage(ctx, SpanIdentity)
			id.Fail(v)
			dec := tr.Stage(ctx, SpanDecision)
			dec.Decided(v, v)
			cred := tr.Stage(ctx, SpanCredential)
			cred.Credential(v, v)
			if _, err := Fetch(cred, v, v, func(context.Context) (int, error) { return 0, nil })(ctx); err != nil {
				t.Fatal(err)
			}
			cred.CacheResult(false, v)
			r.Upstream(ctx, http.Header{}, v, v, 443)
			r.UpstreamDone(200, v)
			r.Outcome(v, v, v, v, 200)
			r.End()
			if err := tr.tp.ForceFlush(t.Context()); err != nil {
				t.Fatal(err)
			}
			spans := exp.GetSpans()
			if len(spans) != 6 {
				t.Fatalf("%d spans, want 6", len(spans))
			}
			lo := uintptr(unsafe.Pointer(unsafe.StringData(v)))
			hi := lo + uintptr(len(v))
			n := 0
			for _, sp := range spans {
				for _, kv := range sp.Attributes {
					if kv.Value.Type() != attribute.STRING {
						continue
					}
					n++
					s := kv.Value.AsString()
					want := min(len(v), MaxAttributeBytes)
					for want > 0 && want < len(v) && !utf8.RuneStart(v[want]) {
						want--
					}
					if len(s) != want || s != v[:want] {
						t.Errorf("%s %s: %d bytes, want the first %d bytes of the value", sp.Name, kv.Key, len(s), want)
					}
					if !utf8.ValidString(s) {
						t.Errorf("%s %s: not valid UTF-8 (cut inside a character)", sp.Name, kv.Key)
					}
					if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); len(s) < len(v) && p >= lo && p < hi {
						t.Errorf("%s %s: a substring of the value, which keeps all %d bytes alive", sp.Name, kv.Key, len(v))
					}
				}
			}
			if n < 15 {
				t.Errorf("%d string attributes checked, want every one the calls set (at least 15)", n)
			}
		})
	}
}
