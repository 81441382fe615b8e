package gateway

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// event is one audit line. It names the credential, never its value, and
// records the path without its query string (a query may carry a secret
// the query injector put there, or one the client sent).
type event struct {
	Time       time.Time
	Workload   string
	Factors    []string
	Source     string
	Method     string
	Scheme     string
	Host       string
	Port       int
	Path       string
	Rule       string
	Decision   string
	Code       string
	Credential string
	CacheHit   bool
	Status     int
	BytesIn    int64
	BytesOut   int64
	Duration   time.Duration
	Upstream   time.Duration
}

// auditor writes events as JSON lines through log/slog. slog's JSON
// handler writes each record with one Write under its own lock, so lines
// never interleave.
type auditor struct {
	h slog.Handler
}

func newAuditor(w io.Writer) *auditor {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
				return slog.Attr{}
			}
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.String(slog.TimeKey, a.Value.Time().UTC().Format("2006-01-02T15:04:05.000Z07:00"))
			}
			return a
		},
	})
	return &auditor{h: h}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// write emits ev.
func (a *auditor) write(ev *event) {
	factors := ev.Factors
	if factors == nil {
		factors = []string{}
	}
	rec := slog.NewRecord(ev.Time, slog.LevelInfo, "", 0)
	rec.AddAttrs(
		slog.String("workload", ev.Workload),
		slog.Any("factors", factors),
		slog.String("source", ev.Source),
		slog.String("method", ev.Method),
		slog.String("scheme", ev.Scheme),
		slog.String("host", ev.Host),
		slog.Int("port", ev.Port),
		slog.String("path", ev.Path),
		slog.String("rule", ev.Rule),
		slog.String("decision", ev.Decision),
		slog.String("code", ev.Code),
		slog.String("credential", ev.Credential),
		slog.Bool("cache_hit", ev.CacheHit),
		slog.Int("status", ev.Status),
		slog.Int64("bytes_in", ev.BytesIn),
		slog.Int64("bytes_out", ev.BytesOut),
		slog.Float64("duration_ms", ms(ev.Duration)),
		slog.Float64("upstream_ms", ms(ev.Upstream)),
	)
	// A failed write (full disk, closed pipe) cannot be reported anywhere
	// better than the process log, which the caller does not have here;
	// the request is not failed for it.
	_ = a.h.Handle(context.Background(), rec)
}
