package tracing

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"github.com/credgate/credgate/internal/otlp"
)

// Span names, one per stage of the request path.
const (
	SpanRequest    = "credgate.request"
	SpanIdentity   = "credgate.identity"
	SpanDecision   = "credgate.decision"
	SpanCredential = "credgate.credential"
	SpanProvider   = "credgate.provider.fetch"
	SpanUpstream   = "credgate.upstream"
)

// MaxAttributeBytes bounds every string attribute value a span gets:
// a longer one (a client's path, method or host) is cut to at most this
// many bytes, at a character boundary. The spans of sampled requests wait
// in the SDK's queue (2048 spans) until exported, so without a bound a
// client that sets the sampled flag and sends paths of
// limits.max_header_bytes would hold that queue times its header limit
// in memory (about 128 MiB with the defaults) while the receiver is slow
// or down. The audit line keeps the whole path.
const MaxAttributeBytes = 1024

// str is attribute.String with the value bounded by MaxAttributeBytes.
// A value cut is copied: a substring would keep the whole request line
// it was cut from alive for as long as the span waits in the queue (the
// SDK's own length limit keeps such substrings, and counts characters,
// not bytes).
func str(k, v string) attribute.KeyValue {
	if len(v) > MaxAttributeBytes {
		n := MaxAttributeBytes
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		v = strings.Clone(v[:n])
	}
	return attribute.String(k, v)
}

// instrumentation is the tracer's instrumentation scope.
const instrumentation = "github.com/credgate/credgate/gateway"

// Tracer makes the spans of requests and exports them. Safe for
// concurrent use. Build it with New; Shutdown flushes it.
type Tracer struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	// bound samples a new trace when a uniform random 63-bit number is
	// below it: sampling_ratio × 2⁶³, the rule of the SDK's
	// TraceIDRatioBased sampler.
	bound uint64
	// ratioForClients: a client's sampled flag is sampled at bound too
	// (client_sampling: ratio).
	ratioForClients bool
}

// New builds the tracer that cfg describes (cfg.Enabled must be set),
// exporting over OTLP gRPC or HTTP. It does not connect: an unreachable
// Collector costs dropped spans, never a request; a failed export is
// logged to log (as a JSON line like every other, not through
// OpenTelemetry's global error handler). Errors name the setting to fix.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Tracer, error) {
	cfg.ApplyDefaults()
	hdrs, err := cfg.OTLP.HeaderValues("tracing")
	if err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.OTLP.TLSConfig("tracing")
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	if !cfg.OTLP.GRPC() {
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(cfg.OTLP.Endpoint), otlptracehttp.WithHeaders(hdrs)}
		if tlsCfg == nil {
			opts = append(opts, otlptracehttp.WithInsecure())
		} else {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(tlsCfg))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	} else {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLP.Endpoint), otlptracegrpc.WithHeaders(hdrs)}
		if tlsCfg == nil {
			opts = append(opts, otlptracegrpc.WithInsecure())
		} else {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: building the OTLP %s exporter to %s: %w (check tracing.endpoint and tracing.protocol)", cfg.OTLP.Protocol, cfg.OTLP.Endpoint, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return NewWithExporter(cfg, loggedExporter{SpanExporter: exp, log: log, headers: hdrs}), nil
}

// loggedExporter logs a failed export itself (the spans are dropped, as
// the SDK would) instead of handing the error to OpenTelemetry's global
// handler, which prints plain text on stderr.
type loggedExporter struct {
	sdktrace.SpanExporter
	log *slog.Logger
	// headers are redacted from the error (otlp.ErrorText).
	headers map[string]string
}

func (e loggedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		e.log.Warn("span export failed; the spans are dropped", slog.Int("spans", len(spans)), slog.String("error", otlp.ErrorText(err, e.headers)))
	}
	return nil
}

// NewWithExporter is New with the span exporter given (benchmarks and
// tests); cfg's endpoint settings are not used.
func NewWithExporter(cfg Config, exp sdktrace.SpanExporter) *Tracer {
	cfg.ApplyDefaults()
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(str("service.name", cfg.ServiceName)))
	if err != nil {
		res = resource.NewSchemaless(str("service.name", cfg.ServiceName))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		// Start decides sampling, once per request, and calls the SDK
		// only for a sampled request: every span it starts is recorded.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
	)
	return &Tracer{tp: tp, tracer: tp.Tracer(instrumentation), prop: propagation.TraceContext{}, bound: uint64(*cfg.SamplingRatio * (1 << 63)),
		ratioForClients: cfg.ClientSampling == ClientSamplingRatio}
}

// Shutdown exports the spans still queued and stops the exporter; ctx
// bounds the wait.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flushing spans on shutdown: %w", err)
	}
	return nil
}

// Request is the trace of one request through the gateway: its server
// span, parent of the stage spans, or nothing but the upstream's
// traceparent when the request is not sampled. The zero Request is
// tracing off. Not for concurrent use except through the contexts it
// hands out.
type Request struct {
	t *Tracer
	// rec holds the spans of a sampled request; nil when not sampled. A
	// pointer keeps Request, which the gateway holds in every request's
	// state, three words (tracing off, it is the zero value there).
	rec *recorded
	// fresh: not sampled and without a valid client traceparent, so the
	// upstream gets a new unsampled one (W3C: a vendor receiving none
	// starts a trace; the flag says no one records it).
	fresh bool
}

// recorded is the spans of a sampled request.
type recorded struct {
	span trace.Span // the server span
	up   trace.Span // the upstream span while it is open
}

// Start begins the trace of a request and returns the context for its
// stages. Sampling is decided here, once per request: a valid W3C
// traceparent from the client in h decides by its sampled flag (its span
// is then the parent of the gateway's, its tracestate kept), or, under
// client_sampling: ratio, only its flag 0 does and a flag 1 is sampled at
// the ratio; without one, the request is sampled at the configured ratio. A request not sampled
// costs no span, no context and no attribute: it returns ctx itself and a
// Request that only writes the upstream's traceparent. The path is
// without query.
func (t *Tracer) Start(ctx context.Context, h http.Header, method, scheme, host string, port int, path string) (context.Context, Request) {
	parent := ctx
	if len(h["Traceparent"]) > 0 { // canonical: the server canonicalised the names
		parent = t.prop.Extract(ctx, propagation.HeaderCarrier(h))
	}
	if sc := trace.SpanContextFromContext(parent); sc.IsValid() {
		if !sc.IsSampled() || t.ratioForClients && rand.Uint64()>>1 >= t.bound {
			// The client's traceparent and tracestate reach the upstream
			// as sent: the hop records nothing, so the client's span
			// stays the parent.
			return ctx, Request{t: t}
		}
	} else if rand.Uint64()>>1 >= t.bound {
		return ctx, Request{t: t, fresh: true}
	}
	ctx, span := t.tracer.Start(parent, SpanRequest, trace.WithSpanKind(trace.SpanKindServer))
	span.SetAttributes(
		str("http.request.method", method),
		str("url.scheme", scheme),
		str("server.address", host),
		attribute.Int("server.port", port),
		str("url.path", path),
	)
	return ctx, Request{t: t, rec: &recorded{span: span}}
}

// Sampled reports whether the request's spans are recorded.
func (r *Request) Sampled() bool { return r.rec != nil }

// Outcome records what the gateway made of the request, as its audit
// line says it: the workload, the rule, the decision, the refusal or
// abort code ("" for none) and the status answered.
func (r *Request) Outcome(workload, rule, decision, code string, status int) {
	if r.rec == nil {
		return
	}
	sp := r.rec.span
	sp.SetAttributes(
		str("credgate.workload", workload),
		str("credgate.rule", rule),
		str("credgate.decision", decision),
		attribute.Int("http.response.status_code", status),
	)
	if code != "" {
		sp.SetAttributes(str("credgate.code", code))
		sp.SetStatus(codes.Error, code)
	}
}

// End ends the request's span (and an upstream span left open by a
// panic).
func (r *Request) End() {
	if r.rec == nil {
		return
	}
	if r.rec.up != nil {
		r.rec.up.End()
		r.rec.up = nil
	}
	r.rec.span.End()
}

// Upstream writes the W3C trace context of the request sent upstream into
// h, its outbound header. Sampled, it begins the client span of that
// request, a child of the request's span, and its traceparent (with the
// client's tracestate) replaces the client's: the upstream sees the
// gateway's hop as the parent; ctx is the outbound request's context,
// derived from Start's, and the returned one carries the span. Not
// sampled, h keeps a valid client traceparent (flag 0) and tracestate as
// sent; without one it gets a new unsampled traceparent and no
// tracestate; ctx is returned as it is.
func (r *Request) Upstream(ctx context.Context, h http.Header, method, host string, port int) context.Context {
	if r.rec == nil {
		if r.fresh {
			delete(h, "Tracestate")
			h["Traceparent"] = []string{newUnsampledTraceparent()}
		}
		return ctx
	}
	var up trace.Span
	ctx, up = r.t.tracer.Start(ctx, SpanUpstream, trace.WithSpanKind(trace.SpanKindClient))
	r.rec.up = up
	up.SetAttributes(
		str("http.request.method", method),
		str("server.address", host),
		attribute.Int("server.port", port),
	)
	delete(h, "Traceparent")
	delete(h, "Tracestate")
	r.t.prop.Inject(ctx, propagation.HeaderCarrier(h))
	return ctx
}

// newUnsampledTraceparent returns a W3C traceparent (version 00) starting
// a new trace that is not sampled: random trace and parent ids, flags 00.
// No span has the parent id: nothing records the request.
func newUnsampledTraceparent() string {
	var ids [24]byte // trace id, then parent id
	tHi, tLo, sid := rand.Uint64(), rand.Uint64(), rand.Uint64()
	if tHi|tLo == 0 {
		tLo = 1 // all zeros is invalid
	}
	if sid == 0 {
		sid = 1
	}
	binary.BigEndian.PutUint64(ids[0:], tHi)
	binary.BigEndian.PutUint64(ids[8:], tLo)
	binary.BigEndian.PutUint64(ids[16:], sid)
	var b [55]byte
	copy(b[:], "00-")
	hex.Encode(b[3:35], ids[:16])
	b[35] = '-'
	hex.Encode(b[36:52], ids[16:])
	copy(b[52:], "-00")
	return string(b[:])
}

// UpstreamDone ends the upstream span with the upstream's status (0: no
// response) and the code of a failure ("" for none).
func (r *Request) UpstreamDone(status int, code string) {
	if r.rec == nil || r.rec.up == nil {
		return
	}
	up := r.rec.up
	if status != 0 {
		up.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if code != "" {
		up.SetAttributes(str("credgate.code", code))
		up.SetStatus(codes.Error, code)
	}
	up.End()
	r.rec.up = nil
}

// Span is one stage's span. The zero Span does nothing: a stage of a
// request that is not recorded (tracing off, or not sampled) costs a nil
// check.
type Span struct {
	t *Tracer
	s trace.Span
}

// Stage begins the span of a stage, child of the request span in ctx;
// the zero Span when ctx holds no recorded request span (a CONNECT, or a
// request not sampled).
func (t *Tracer) Stage(ctx context.Context, name string) Span {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return Span{}
	}
	_, s := t.tracer.Start(ctx, name)
	return Span{t: t, s: s}
}

// End ends the span.
func (s Span) End() {
	if s.s != nil {
		s.s.End()
	}
}

// Fail ends the span as failed with a reason code (never an error text,
// which might name more than the code).
func (s Span) Fail(code string) {
	if s.s == nil {
		return
	}
	s.s.SetStatus(codes.Error, code)
	s.s.SetAttributes(str("credgate.code", code))
	s.s.End()
}

// Decided ends a decision span with its outcome and rule.
func (s Span) Decided(decision, rule string) {
	if s.s == nil {
		return
	}
	s.s.SetAttributes(str("credgate.decision", decision), str("credgate.rule", rule))
	s.s.End()
}

// Credential sets the credential span's names: the policy's credential
// and its provider.
func (s Span) Credential(credential, provider string) {
	if s.s == nil {
		return
	}
	s.s.SetAttributes(str("credgate.credential", credential), str("credgate.provider", provider))
}

// CacheResult ends a credential span: whether the cache answered (hit)
// and the refusal code when no credential came ("" for none).
func (s Span) CacheResult(hit bool, code string) {
	if s.s == nil {
		return
	}
	s.s.SetAttributes(attribute.Bool("credgate.cache_hit", hit))
	if code != "" {
		s.Fail(code)
		return
	}
	s.s.End()
}

// Fetch wraps a provider fetch so that, when the cache calls it, a
// client span child of s records the provider call: its duration and
// whether it failed (the error's text is not recorded). The zero Span
// returns fetch itself.
func Fetch[T any](s Span, credential, provider string, fetch func(context.Context) (T, error)) func(context.Context) (T, error) {
	if s.s == nil {
		return fetch
	}
	parent := s.s.SpanContext()
	return func(ctx context.Context) (T, error) {
		ctx, sp := s.t.tracer.Start(trace.ContextWithSpanContext(ctx, parent), SpanProvider, trace.WithSpanKind(trace.SpanKindClient))
		if sp.IsRecording() {
			sp.SetAttributes(str("credgate.credential", credential), str("credgate.provider", provider))
		}
		v, err := fetch(ctx)
		if err != nil {
			code := "provider_error"
			if errors.Is(err, context.DeadlineExceeded) {
				code = "provider_timeout"
			}
			sp.SetStatus(codes.Error, code)
		}
		sp.End()
		return v, err
	}
}
