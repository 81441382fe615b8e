package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"
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

// instrumentation is the tracer's instrumentation scope.
const instrumentation = "github.com/credgate/credgate/gateway"

// Tracer makes the spans of requests and exports them. Safe for
// concurrent use. Build it with New; Shutdown flushes it.
type Tracer struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
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
	return NewWithExporter(cfg, loggedExporter{SpanExporter: exp, log: log}), nil
}

// loggedExporter logs a failed export itself (the spans are dropped, as
// the SDK would) instead of handing the error to OpenTelemetry's global
// handler, which prints plain text on stderr.
type loggedExporter struct {
	sdktrace.SpanExporter
	log *slog.Logger
}

func (e loggedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		e.log.Warn("span export failed; the spans are dropped", slog.Int("spans", len(spans)), slog.Any("error", err))
	}
	return nil
}

// NewWithExporter is New with the span exporter given (benchmarks and
// tests); cfg's endpoint settings are not used.
func NewWithExporter(cfg Config, exp sdktrace.SpanExporter) *Tracer {
	cfg.ApplyDefaults()
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", cfg.ServiceName)))
	if err != nil {
		res = resource.NewSchemaless(attribute.String("service.name", cfg.ServiceName))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*cfg.SamplingRatio))),
	)
	return &Tracer{tp: tp, tracer: tp.Tracer(instrumentation), prop: propagation.TraceContext{}}
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
// span, parent of the stage spans. Not for concurrent use except through
// the contexts it hands out.
type Request struct {
	t    *Tracer
	ctx  context.Context
	span trace.Span
	up   trace.Span
}

// Start begins the trace of a request: the client's W3C traceparent and
// tracestate in h, if valid, are the parent. The path is without query.
func (t *Tracer) Start(ctx context.Context, h http.Header, method, scheme, host string, port int, path string) *Request {
	ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(h))
	ctx, span := t.tracer.Start(ctx, SpanRequest, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("http.request.method", method),
			attribute.String("url.scheme", scheme),
			attribute.String("server.address", host),
			attribute.Int("server.port", port),
			attribute.String("url.path", path),
		)
	}
	return &Request{t: t, ctx: ctx, span: span}
}

// Context is the request's context with its server span: the parent of
// the stage spans.
func (r *Request) Context() context.Context { return r.ctx }

// Outcome records what the gateway made of the request, as its audit
// line says it: the workload, the rule, the decision, the refusal or
// abort code ("" for none) and the status answered.
func (r *Request) Outcome(workload, rule, decision, code string, status int) {
	if !r.span.IsRecording() {
		return
	}
	r.span.SetAttributes(
		attribute.String("credgate.workload", workload),
		attribute.String("credgate.rule", rule),
		attribute.String("credgate.decision", decision),
		attribute.Int("http.response.status_code", status),
	)
	if code != "" {
		r.span.SetAttributes(attribute.String("credgate.code", code))
		r.span.SetStatus(codes.Error, code)
	}
}

// End ends the request's span (and an upstream span left open by a
// panic).
func (r *Request) End() {
	if r.up != nil {
		r.up.End()
		r.up = nil
	}
	r.span.End()
}

// Upstream begins the client span of the request sent upstream, a child
// of the request's span, and writes its traceparent (and tracestate) into
// h, the outbound header, replacing the client's: the upstream sees the
// gateway's hop as the parent. ctx is the outbound request's context,
// derived from Context(); the returned one carries the span.
func (r *Request) Upstream(ctx context.Context, h http.Header, method, host string, port int) context.Context {
	ctx, r.up = r.t.tracer.Start(ctx, SpanUpstream, trace.WithSpanKind(trace.SpanKindClient))
	if r.up.IsRecording() {
		r.up.SetAttributes(
			attribute.String("http.request.method", method),
			attribute.String("server.address", host),
			attribute.Int("server.port", port),
		)
	}
	delete(h, "Traceparent")
	delete(h, "Tracestate")
	r.t.prop.Inject(ctx, propagation.HeaderCarrier(h))
	return ctx
}

// UpstreamDone ends the upstream span with the upstream's status (0: no
// response) and the code of a failure ("" for none).
func (r *Request) UpstreamDone(status int, code string) {
	if r.up == nil {
		return
	}
	if r.up.IsRecording() {
		if status != 0 {
			r.up.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		if code != "" {
			r.up.SetAttributes(attribute.String("credgate.code", code))
			r.up.SetStatus(codes.Error, code)
		}
	}
	r.up.End()
	r.up = nil
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
	s.s.SetAttributes(attribute.String("credgate.code", code))
	s.s.End()
}

// Decided ends a decision span with its outcome and rule.
func (s Span) Decided(decision, rule string) {
	if s.s == nil {
		return
	}
	s.s.SetAttributes(attribute.String("credgate.decision", decision), attribute.String("credgate.rule", rule))
	s.s.End()
}

// Credential sets the credential span's names: the policy's credential
// and its provider.
func (s Span) Credential(credential, provider string) {
	if s.s == nil {
		return
	}
	s.s.SetAttributes(attribute.String("credgate.credential", credential), attribute.String("credgate.provider", provider))
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
			sp.SetAttributes(attribute.String("credgate.credential", credential), attribute.String("credgate.provider", provider))
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
