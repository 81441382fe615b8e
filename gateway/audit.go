package gateway

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/identity"
)

// event is one audit line. It names the credential, never its value, and
// records the path without its query string (a query may carry a secret
// the query injector put there, or one the client sent).
type event struct {
	Time     time.Time
	Workload string
	Factors  []string
	// Presented lists the kinds of evidence the client presented, for a
	// request refused before (or at) identity, when Factors is empty:
	// "source", "client_certificate", "proxy_authorization:SCHEME".
	// Written only when set; never a value.
	Presented  []string
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
	// Switch names the kill switch ("rule:NAME") that refused the
	// request, or that an admin request changed; written only when set.
	Switch string
	// Closed says how a long-lived connection (a spliced tunnel, a
	// WebSocket) ended: ended, kill_switch, identity_expired, idle,
	// max_lifetime or shutdown; written only when set.
	Closed string
}

// DefaultAuditFlushInterval bounds how long an audit line waits in the
// buffer before it is written out.
const DefaultAuditFlushInterval = 100 * time.Millisecond

// auditor writes events as JSON lines (docs/audit-and-metrics.md). It sits
// on every request, so it encodes with a fixed field list into a pooled
// buffer instead of going through log/slog's generic handler (about five
// times cheaper), and batches lines in a buffer that is flushed when it
// fills, every DefaultAuditFlushInterval, and on Close, instead of one
// write system call per request. Lines never interleave.
type auditor struct {
	mu     sync.Mutex
	w      *bufio.Writer
	closed bool
	stop   chan struct{}
	done   chan struct{}
	pool   sync.Pool
}

func newAuditor(w io.Writer, flushEvery time.Duration) *auditor {
	a := &auditor{
		w:    bufio.NewWriterSize(w, 64<<10),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		pool: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }},
	}
	go a.flushLoop(flushEvery)
	return a
}

func (a *auditor) flushLoop(every time.Duration) {
	defer close(a.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.mu.Lock()
			if a.w.Buffered() > 0 {
				// A failed write (full disk, closed pipe) is retried at
				// the next flush; requests are not failed for it.
				_ = a.w.Flush()
			}
			a.mu.Unlock()
		}
	}
}

// Close flushes what is buffered and stops the flusher. Events written
// afterwards go straight to the writer.
func (a *auditor) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	close(a.stop)
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.w.Flush()
}

// write emits ev as one line.
func (a *auditor) write(ev *event) {
	bp := a.pool.Get().(*[]byte)
	b := appendEvent((*bp)[:0], ev)
	a.mu.Lock()
	_, _ = a.w.Write(b)
	if a.closed {
		_ = a.w.Flush()
	}
	a.mu.Unlock()
	if cap(b) <= 4<<10 {
		*bp = b
		a.pool.Put(bp)
	}
}

// appendEvent encodes ev as a JSON object and a newline.
func appendEvent(b []byte, ev *event) []byte {
	b = append(b, `{"time":"`...)
	b = ev.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","workload":`...)
	b = appendString(b, ev.Workload)
	b = append(b, `,"factors":[`...)
	for i, f := range ev.Factors {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f)
	}
	b = append(b, ']')
	if len(ev.Presented) > 0 {
		b = append(b, `,"presented":[`...)
		for i, f := range ev.Presented {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f)
		}
		b = append(b, ']')
	}
	b = append(b, `,"source":`...)
	b = appendString(b, ev.Source)
	b = append(b, `,"method":`...)
	b = appendString(b, ev.Method)
	b = append(b, `,"scheme":`...)
	b = appendString(b, ev.Scheme)
	b = append(b, `,"host":`...)
	b = appendString(b, ev.Host)
	b = append(b, `,"port":`...)
	b = strconv.AppendInt(b, int64(ev.Port), 10)
	b = append(b, `,"path":`...)
	b = appendString(b, ev.Path)
	b = append(b, `,"rule":`...)
	b = appendString(b, ev.Rule)
	b = append(b, `,"decision":`...)
	b = appendString(b, ev.Decision)
	b = append(b, `,"code":`...)
	b = appendString(b, ev.Code)
	b = append(b, `,"credential":`...)
	b = appendString(b, ev.Credential)
	b = append(b, `,"cache_hit":`...)
	b = strconv.AppendBool(b, ev.CacheHit)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(ev.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, ev.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, ev.BytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, ms(ev.Duration), 'f', -1, 64)
	b = append(b, `,"upstream_ms":`...)
	b = strconv.AppendFloat(b, ms(ev.Upstream), 'f', -1, 64)
	if ev.Switch != "" {
		b = append(b, `,"switch":`...)
		b = appendString(b, ev.Switch)
	}
	if ev.Closed != "" {
		b = append(b, `,"closed":`...)
		b = appendString(b, ev.Closed)
	}
	return append(b, "}\n"...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028/U+2029
// escaped so that a line is one line for every JSON reader.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// presented names the kinds of evidence a client presented, without any
// value, for the audit line of a request refused before its identity was
// established.
func presented(ev identity.Evidence) []string {
	var out []string
	if ev.Source.IsValid() {
		out = append(out, "source")
	}
	if len(ev.PeerCertificates) > 0 || len(ev.VerifiedChains) > 0 {
		out = append(out, "client_certificate")
	}
	if pa := ev.ProxyAuthorization; pa != "" {
		scheme, _, _ := strings.Cut(pa, " ")
		if len(scheme) > 16 || !httpguts.ValidHeaderFieldName(scheme) {
			scheme = "other"
		}
		out = append(out, "proxy_authorization:"+strings.ToLower(scheme))
	}
	return out
}
