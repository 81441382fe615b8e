package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/credgate/credgate/internal/tracing"
)

// clientTraceparent is the W3C trace context a client sends: trace id,
// its own span id, sampled.
const (
	clientTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID      = "00f067aa0ba902b7"
	clientTraceparent = "00-" + clientTraceID + "-" + clientSpanID + "-01"
)

// TestTracingSpans: with tracing on, a request's spans continue the
// client's trace, each stage is a child of the request's server span, the
// provider call is a child of the credential span on a cache miss only,
// and the upstream receives a traceparent whose parent is the gateway's
// upstream span. No span carries the injected credential or the query.
func TestTracingSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	tg.tracer = tracing.NewWithExporter(tracing.Config{Enabled: true}, keptSpans{exp})
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("resolve: {\"api.origin.test:443\": %q}\n", tg.origin.addr))
	c := tg.client(t, false)
	for i := range 2 {
		req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+"/v1/things?api_key=query-secret-value", nil)
		req.Header.Set("Traceparent", clientTraceparent)
		req.Header.Set("Tracestate", "vendor=opaque")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	if err := tg.stop(); err != nil { // flushes the spans
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	for name, want := range map[string]int{
		tracing.SpanRequest: 2, tracing.SpanIdentity: 2, tracing.SpanDecision: 2,
		tracing.SpanCredential: 2, tracing.SpanProvider: 1, tracing.SpanUpstream: 2,
	} {
		if got := len(byName[name]); got != want {
			t.Errorf("%d spans %s, want %d (all: %v)", got, name, want, names(spans))
		}
	}
	if t.Failed() {
		return
	}
	reqs := tg.origin.all()
	for i, root := range byName[tracing.SpanRequest] {
		if root.SpanKind != trace.SpanKindServer || root.SpanContext.TraceID().String() != clientTraceID || root.Parent.SpanID().String() != clientSpanID {
			t.Errorf("request span %d: kind %v trace %s parent %s; want server, the client's trace and span", i, root.SpanKind, root.SpanContext.TraceID(), root.Parent.SpanID())
		}
		if ts := root.SpanContext.TraceState().Get("vendor"); ts != "opaque" {
			t.Errorf("request span %d: tracestate vendor=%q, want the client's", i, ts)
		}
		attrs := map[string]string{}
		for _, kv := range root.Attributes {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		for k, v := range map[string]string{"credgate.rule": "api", "credgate.decision": "inject", "credgate.workload": "local", "url.path": "/v1/things", "http.response.status_code": "200"} {
			if attrs[k] != v {
				t.Errorf("request span %d: %s = %q, want %q", i, k, attrs[k], v)
			}
		}
	}
	parentOf := func(s tracetest.SpanStub, name string) bool {
		for _, p := range byName[name] {
			if p.SpanContext.SpanID() == s.Parent.SpanID() && p.SpanContext.TraceID() == s.SpanContext.TraceID() {
				return true
			}
		}
		return false
	}
	for _, n := range []string{tracing.SpanIdentity, tracing.SpanDecision, tracing.SpanCredential, tracing.SpanUpstream} {
		for _, s := range byName[n] {
			if !parentOf(s, tracing.SpanRequest) {
				t.Errorf("%s span's parent is not a request span", n)
			}
		}
	}
	if !parentOf(byName[tracing.SpanProvider][0], tracing.SpanCredential) {
		t.Error("the provider span's parent is not a credential span")
	}
	hits := 0
	for _, s := range byName[tracing.SpanCredential] {
		for _, kv := range s.Attributes {
			if kv.Key == "credgate.cache_hit" && kv.Value.AsBool() {
				hits++
			}
		}
	}
	if hits != 1 {
		t.Errorf("%d credential spans with cache_hit true, want 1 (the second request)", hits)
	}
	// The upstream got a child traceparent: the client's trace, the
	// gateway's upstream span as parent, and the client's tracestate.
	upIDs := map[string]bool{}
	for _, s := range byName[tracing.SpanUpstream] {
		if s.SpanKind != trace.SpanKindClient {
			t.Errorf("upstream span kind %v, want client", s.SpanKind)
		}
		upIDs[s.SpanContext.SpanID().String()] = true
	}
	for _, r := range reqs {
		tp := r.Header.Get("Traceparent")
		parts := strings.Split(tp, "-")
		if len(parts) != 4 || parts[1] != clientTraceID || !upIDs[parts[2]] || r.Header.Get("Tracestate") != "vendor=opaque" {
			t.Errorf("upstream received traceparent %q tracestate %q; want the client's trace with an upstream span of the gateway as parent", tp, r.Header.Get("Tracestate"))
		}
	}
	dump, _ := json.Marshal(spans)
	for _, secret := range []string{tg.token, "query-secret-value", "api_key"} {
		if strings.Contains(string(dump), secret) {
			t.Errorf("a span holds %q", secret)
		}
	}
}

// TestTracingOffForwardsTraceparent: with tracing off the client's
// traceparent reaches the upstream as it was sent.
func TestTracingOffForwardsTraceparent(t *testing.T) {
	tg := startGateway(t)
	if tg.gw.tracer != nil {
		t.Fatal("tracing is on without a tracing: setting")
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+"/v1/things", nil)
	req.Header.Set("Traceparent", clientTraceparent)
	resp, err := tg.client(t, false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := tg.origin.all()
	if len(reqs) != 1 || reqs[0].Header.Get("Traceparent") != clientTraceparent {
		t.Fatalf("upstream received %v, want the client's traceparent unchanged", reqs)
	}
}

// keptSpans keeps the spans when the tracer shuts down (the in-memory
// exporter forgets them then).
type keptSpans struct{ *tracetest.InMemoryExporter }

func (keptSpans) Shutdown(context.Context) error { return nil }

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// BenchmarkInjectKeepAliveTracing is BenchmarkInjectKeepAlive with
// tracing off (no tracer: the hooks are nil checks) and on, sampling 10%
// and 100% of the requests (no client traceparent), the spans going
// through the SDK's batcher to an exporter that discards them.
func BenchmarkInjectKeepAliveTracing(b *testing.B) {
	for _, bc := range []struct {
		name  string
		ratio float64 // < 0: tracing off
	}{
		{"off", -1},
		{"on_10pct", 0.1},
		{"on_100pct", 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pki := newTestPKI(b, apiHost, tunnelHost, "credgate.test")
			tg := newTestGateway(b, pki, startOrigin(b, pki))
			if bc.ratio >= 0 {
				tg.tracer = tracing.NewWithExporter(tracing.Config{Enabled: true, SamplingRatio: &bc.ratio}, discardSpans{})
			}
			writeFile(b, tg.dir, "policy.yaml", []byte(testPolicy))
			tg.run(b, "resolve: {\"api.origin.test:443\": \""+tg.origin.addr+"\"}\n")
			benchKeepAlive(b, tg)
		})
	}
}

// BenchmarkRequestTrace is the tracing of one request as handle makes it
// (Start, the identity, decision and credential stages, the upstream's
// traceparent, the outcome, End) without the request itself: not sampled,
// 10% and 100% sampled, no client traceparent, the spans going through
// the SDK's batcher to an exporter that discards them. It isolates the
// hooks' cost, which BenchmarkInjectKeepAliveTracing measures inside a
// request 1000 times dearer; cpu-ns/op (the batcher's goroutine and the
// garbage collector included) is the figure to read on a shared machine,
// with -cpu 1.
func BenchmarkRequestTrace(b *testing.B) {
	for _, bc := range []struct {
		name  string
		ratio float64
	}{
		{"unsampled", 0},
		{"10pct", 0.1},
		{"sampled", 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := tracing.NewWithExporter(tracing.Config{Enabled: true, SamplingRatio: &bc.ratio}, discardSpans{})
			in := http.Header{"Accept": {"*/*"}}
			fetch := func(context.Context) (int, error) { return 1, nil }
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				ctx, r := tr.Start(b.Context(), in, http.MethodGet, "https", apiHost, 443, "/v1/bench")
				sp := tr.Stage(ctx, tracing.SpanIdentity)
				sp.End()
				sp = tr.Stage(ctx, tracing.SpanDecision)
				sp.Decided("inject", "api")
				sp = tr.Stage(ctx, tracing.SpanCredential)
				sp.Credential("api-key", "static")
				_ = tracing.Fetch(sp, "api-key", "static", fetch)
				sp.CacheResult(true, "")
				out := http.Header{"Accept": {"*/*"}}
				r.Upstream(ctx, out, http.MethodGet, apiHost, 443)
				r.UpstreamDone(http.StatusOK, "")
				r.Outcome("local", "api", "inject", "", http.StatusOK)
				r.End()
			}
			if err := tr.Shutdown(context.Background()); err != nil { // its queue's export counted
				b.Fatal(err)
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// discardSpans is a span exporter that drops what it is given.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// TestTracingConfigErrors: bad tracing: and audit.otlp: settings are
// refused when the config loads, each with FILE:LINE:COL at its key.
func TestTracingConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, extra, want string }{
		{"no endpoint", "tracing: {enabled: true}\n", ":4:1: tracing.endpoint is required"},
		{"bad endpoint", "tracing:\n  enabled: true\n  endpoint: http://collector:4317/v1\n", ":6:3: tracing.endpoint: \"http://collector:4317/v1\" is not host:port"},
		{"bad protocol", "tracing:\n  enabled: true\n  endpoint: c:4317\n  protocol: zipkin\n", ":7:3: tracing.protocol: unknown protocol \"zipkin\""},
		{"bad ratio", "tracing:\n  enabled: true\n  endpoint: c:4317\n  sampling_ratio: 1.5\n", ":7:3: tracing.sampling_ratio: 1.5 is not between 0 and 1"},
		{"bad client_sampling", "tracing:\n  enabled: true\n  endpoint: c:4317\n  client_sampling: never\n", ":7:3: tracing.client_sampling: unknown value \"never\""},
		{"header two sources", "tracing:\n  enabled: true\n  endpoint: c:4317\n  headers:\n    x-key: {value: a, env: B}\n", ":8:5: tracing.headers.x-key: set exactly one of value, env or file"},
		{"insecure and ca", "tracing:\n  enabled: true\n  endpoint: c:4317\n  insecure: true\n  ca: ca.pem\n", ":8:3: tracing: insecure exports in plaintext"},
		{"unknown key", "tracing:\n  enabled: true\n  endpoint: c:4317\n  sampling: 0.1\n", ":7:3:"},
		{"otlp sink without endpoint", "audit:\n  otlp: {protocol: http}\n", ":5:3: audit.otlp.endpoint is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "credgate.yaml", []byte("policy: p.yaml\nca: {cert: c.pem, key: k.pem}\nlisten: 127.0.0.1:0\n"+tc.extra))
			_, err := LoadConfig(p)
			if err == nil || !strings.Contains(err.Error(), p+tc.want) {
				t.Fatalf("LoadConfig: %v\nwant %q", err, p+tc.want)
			}
		})
	}
	// Off (the default), nothing else is looked at.
	p := writeFile(t, t.TempDir(), "credgate.yaml", []byte("policy: p.yaml\nca: {cert: c.pem, key: k.pem}\ntracing: {enabled: false, protocol: zipkin}\n"))
	if _, err := LoadConfig(p); err != nil {
		t.Errorf("tracing off with a bad protocol: %v", err)
	}
}

// TestTracingRefusal: a request refused because its credential cannot be
// had ends its credential span and its request span as errors with the
// refusal's code, and sends nothing upstream (no upstream span).
func TestTracingRefusal(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	tg.tracer = tracing.NewWithExporter(tracing.Config{Enabled: true}, keptSpans{exp})
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("resolve: {\"api.origin.test:443\": %q}\n", tg.origin.addr))
	resp, err := tg.client(t, false).Get("https://" + apiHost + "/unavailable")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %s, want 502", resp.Status)
	}
	if err := tg.stop(); err != nil {
		t.Fatal(err)
	}
	code := resp.Header.Get(ReasonHeader)
	seen := map[string]bool{}
	for _, s := range exp.GetSpans() {
		seen[s.Name] = true
		switch s.Name {
		case tracing.SpanRequest, tracing.SpanCredential:
			if s.Status.Code.String() != "Error" || s.Status.Description != code {
				t.Errorf("%s status %v %q, want Error %q", s.Name, s.Status.Code, s.Status.Description, code)
			}
		case tracing.SpanUpstream:
			t.Error("an upstream span for a request that was not forwarded")
		}
	}
	if !seen[tracing.SpanRequest] || !seen[tracing.SpanCredential] || !seen[tracing.SpanProvider] {
		t.Errorf("spans %v, want request, credential and provider", seen)
	}
}
