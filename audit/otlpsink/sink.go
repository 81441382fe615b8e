// Package otlpsink exports audit lines as OpenTelemetry log records over
// OTLP (gRPC or HTTP), beside the audit log's stdout or file output: the
// `audit.otlp:` settings of the gateway config
// (docs/audit-and-metrics.md#otlp-sink).
//
// Each line becomes one record whose body is the line as written (the
// chain's seq, replica and prev included, so a backend can verify it),
// with event name credgate.audit and severity INFO. The sink is written
// by the audit Writer's flusher, never on a request's path, and exports
// each chunk of lines synchronously, retrying until the receiver takes
// them: a receiver that does not keep up stalls the Writer like a slow
// file, so audit.on_stall (block, drop with a count, fail_closed) applies
// to it unchanged.
package otlpsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc/credentials"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/internal/backoff"
	"github.com/credgate/credgate/internal/episode"
	"github.com/credgate/credgate/internal/otlp"
)

// EventName names the audit records.
const EventName = "credgate.audit"

// DefaultServiceName is the service.name of the records' resource.
const DefaultServiceName = "credgate"

// Config is the `audit.otlp:` section of the gateway config; unset (no
// endpoint) is no OTLP sink.
type Config struct {
	// OTLP is where the records go (endpoint, protocol, headers,
	// insecure, ca).
	OTLP otlp.Endpoint `yaml:",inline"`
	// ServiceName is the service.name resource attribute (default
	// "credgate").
	ServiceName string `yaml:"service_name"`
}

// Enabled reports whether the section is set.
func (c *Config) Enabled() bool {
	return c.OTLP.Endpoint != "" || c.OTLP.Protocol != "" || len(c.OTLP.Headers) > 0 || c.OTLP.CA != "" || c.OTLP.Insecure || c.ServiceName != ""
}

// Check validates c (when enabled); Problem keys are below audit.otlp.
func (c *Config) Check() []otlp.Problem {
	if !c.Enabled() {
		return nil
	}
	return c.OTLP.Check("audit.otlp")
}

// Sink is an io.Writer of whole audit lines that exports them as log
// records. Build it with New; Close stops it.
type Sink struct {
	exp    sdklog.Exporter
	lp     *sdklog.LoggerProvider
	logger otellog.Logger
	col    *collector
	log    *slog.Logger

	// ctx ends at Abandon or Close: a retrying export gives up then.
	ctx    context.Context
	cancel context.CancelFunc
	lost   atomic.Uint64
	// health is the receiver's failure episodes: logged when one
	// starts and ends, not at every retry.
	health episode.Tracker
	// headers are redacted from export errors (otlp.ErrorText).
	headers map[string]string
	// rejects and rejected: exports the receiver answered with a
	// partial success (records rejected, not to be sent again).
	rejects  episode.Tracker
	rejected atomic.Uint64
}

// partialSuccessPrefix starts the text of the error the OTLP log
// exporters return for a partial-success answer (their internal
// PartialSuccess type, which no other package can name);
// TestPartialSuccessNotRetried pins it against the real exporter.
const partialSuccessPrefix = "OTLP partial success: "

// partialSuccess reports whether err holds nothing but partial-success
// answers (the receiver took the export and rejected some of its
// records), and their text.
func partialSuccess(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var texts []string
		for _, e := range j.Unwrap() {
			t, ok := partialSuccess(e)
			if !ok {
				return "", false
			}
			texts = append(texts, t)
		}
		return strings.Join(texts, "; "), len(texts) > 0
	}
	if !strings.HasPrefix(err.Error(), partialSuccessPrefix) {
		return "", false
	}
	return err.Error(), true
}

// Rejected returns how many exports the receiver answered with a partial
// success: it rejected some of their records, which are not sent again.
func (s *Sink) Rejected() uint64 { return s.rejected.Load() }

// New builds the sink cfg describes. It does not connect: an unreachable
// receiver shows as a stalled audit sink. Errors name the setting to fix.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Sink, error) {
	hdrs, err := cfg.OTLP.HeaderValues("audit.otlp")
	if err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.OTLP.TLSConfig("audit.otlp")
	if err != nil {
		return nil, err
	}
	var exp sdklog.Exporter
	if cfg.OTLP.GRPC() {
		opts := []otlploggrpc.Option{otlploggrpc.WithEndpoint(cfg.OTLP.Endpoint), otlploggrpc.WithHeaders(hdrs),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false})}
		if tlsCfg == nil {
			opts = append(opts, otlploggrpc.WithInsecure())
		} else {
			opts = append(opts, otlploggrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
		}
		exp, err = otlploggrpc.New(ctx, opts...)
	} else {
		opts := []otlploghttp.Option{otlploghttp.WithEndpoint(cfg.OTLP.Endpoint), otlploghttp.WithHeaders(hdrs),
			otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false})}
		if tlsCfg == nil {
			opts = append(opts, otlploghttp.WithInsecure())
		} else {
			opts = append(opts, otlploghttp.WithTLSClientConfig(tlsCfg))
		}
		exp, err = otlploghttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("audit.otlp: building the OTLP exporter to %s: %w (check audit.otlp.endpoint and protocol)", cfg.OTLP.Endpoint, err)
	}
	s := NewWithExporter(cfg, exp, log)
	s.headers = hdrs
	return s, nil
}

// NewWithExporter is New with the exporter given (tests).
func NewWithExporter(cfg Config, exp sdklog.Exporter, log *slog.Logger) *Sink {
	name := cfg.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		res = resource.NewSchemaless(attribute.String("service.name", name))
	}
	col := &collector{}
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(col))
	s := &Sink{exp: exp, lp: lp, logger: lp.Logger("github.com/credgate/credgate/audit"), col: col, log: log}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Write exports the whole lines in p, one record each, and returns when
// the receiver took them; a failed export is retried (50ms doubling to
// 1s) until it succeeds. A partial success (the receiver took the export
// but rejected some records) is not retried, as OTLP requires: the
// rejected lines are in the primary output only, logged once per run of
// such answers and counted (Rejected). After Abandon (or Close) it gives up: the lines
// are counted as lost (Lost), logged, and reported written, so that a
// receiver that is down cannot hold the gateway's shutdown; they are in
// the primary output. The Writer calls it from one goroutine at a time.
func (s *Sink) Write(p []byte) (int, error) {
	if s.ctx.Err() != nil {
		s.abandoned(p)
		return len(p), nil
	}
	now := time.Now()
	for rest := p; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(line) == 0 {
			continue
		}
		var r otellog.Record
		r.SetTimestamp(now)
		r.SetObservedTimestamp(now)
		r.SetSeverity(otellog.SeverityInfo)
		r.SetSeverityText("INFO")
		r.SetEventName(EventName)
		r.SetBody(attribute.StringValue(string(line)))
		s.logger.Emit(s.ctx, r)
	}
	recs := s.col.take()
	if len(recs) == 0 {
		return len(p), nil
	}
	for n := 0; ; n++ {
		err := s.exp.Export(s.ctx, recs)
		if rejected, ok := partialSuccess(err); ok {
			// The receiver took the request and rejected some records
			// for good (a record over its size limit, say): OTLP says
			// not to send it again, and sending it again would repeat
			// the records it kept and stall the audit sink for as long
			// as it rejects. The lines are in the primary output.
			s.rejected.Add(1)
			if s.rejects.Fail(time.Now(), rejected) {
				s.log.Error("audit OTLP receiver rejected audit lines it was sent; they are in audit.output only (logged once until it takes a whole export again)",
					slog.String("error", otlp.ErrorText(errors.New(rejected), s.headers)))
			}
			err = nil
		} else if err == nil {
			if st, ended := s.rejects.OK(); ended {
				s.log.Warn("audit OTLP receiver takes whole exports again", slog.Uint64("exports_with_rejections", st.EpisodeFailures))
			}
		}
		if err == nil {
			if st, ended := s.health.OK(); ended {
				s.log.Warn("audit OTLP export recovered: the receiver takes lines again",
					slog.Uint64("failures", st.EpisodeFailures), slog.Duration("failing_for", time.Since(st.Since).Round(time.Millisecond)))
			}
			return len(p), nil
		}
		// The error names the receiver and the failure, never a line
		// nor a header value.
		text := otlp.ErrorText(err, s.headers)
		if s.health.Fail(time.Now(), text) {
			s.log.Error("audit OTLP export failed; retrying until the receiver takes the lines (logged once until it recovers; credgate_audit_otlp_export_errors_total counts each failure, /readyz shows the state)",
				slog.String("error", text))
		}
		if backoff.Wait(s.ctx, 50*time.Millisecond, time.Second, n) != nil {
			s.abandoned(p)
			return len(p), nil
		}
	}
}

// abandoned counts and logs the lines of p given up on.
func (s *Sink) abandoned(p []byte) {
	n := uint64(bytes.Count(p, []byte{'\n'}))
	s.lost.Add(n)
	s.log.Error("audit OTLP export abandoned at shutdown; the lines are in audit.output only", slog.Uint64("lines", n))
}

// Status returns the state of the export: whether it is failing, since
// when, how many exports failed.
func (s *Sink) Status() audit.OutputStatus { return s.health.Status() }

// Lost returns how many lines were given up on (Abandon).
func (s *Sink) Lost() uint64 { return s.lost.Load() }

// Abandon makes the exports in progress and to come give up (the
// gateway calls it when shutdown has waited long enough for a receiver).
func (s *Sink) Abandon() { s.cancel() }

// Close stops retrying and shuts the exporter down.
func (s *Sink) Close() error {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.lp.Shutdown(ctx)
	if err := s.exp.Shutdown(ctx); err != nil {
		return fmt.Errorf("audit.otlp: shutting the exporter down: %w", err)
	}
	return nil
}

// collector is the log processor that keeps the records of one Write
// (with the provider's resource and scope) for one synchronous export.
type collector struct {
	mu   sync.Mutex
	recs []sdklog.Record
}

func (c *collector) OnEmit(_ context.Context, r *sdklog.Record) error {
	c.mu.Lock()
	c.recs = append(c.recs, r.Clone())
	c.mu.Unlock()
	return nil
}

func (c *collector) take() []sdklog.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	recs := c.recs
	c.recs = nil
	return recs
}

func (*collector) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (*collector) Shutdown(context.Context) error                         { return nil }
func (*collector) ForceFlush(context.Context) error                       { return nil }

// Tee returns a sink that writes each chunk of lines to primary (stdout
// or the audit file) and then exports it to s. The audit Writer retries
// the part of a chunk the primary did not take; tee remembers what s has
// exported already, so that no line reaches either twice.
func Tee(primary io.Writer, s *Sink) io.Writer { return &tee{primary: primary, otlp: s} }

type tee struct {
	primary io.Writer
	otlp    *Sink
	// ahead is how many leading bytes of the next Write were exported
	// already: the rest of a chunk the primary took only in part.
	ahead int
}

func (t *tee) Write(p []byte) (int, error) {
	skip := min(t.ahead, len(p))
	_, _ = t.otlp.Write(p[skip:]) // returns when exported or abandoned
	n, err := t.primary.Write(p)
	t.ahead = len(p) - n
	return n, err
}
