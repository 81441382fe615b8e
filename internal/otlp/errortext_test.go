package otlp_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/audit/otlpsink"
	"github.com/credgate/credgate/internal/otlp"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/tracing"
)

// otlpKey is the receiver's key the exporters send as a header; its '"'
// and space make a receiver's quoting and cutting visible.
const otlpKey = `otlp_key_Ab+Cd/Ef"Gh ij_0123456789`

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedLog) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// keyPieces returns the parts of otlpKey 8 bytes or longer between the
// characters a receiver may escape or cut at.
func keyPieces() []string {
	var out []string
	for _, p := range strings.FieldsFunc(otlpKey, func(r rune) bool { return r == '"' || r == ' ' }) {
		if len(p) >= 8 {
			out = append(out, p)
		}
	}
	return out
}

// TestExportErrorsNeverLogTheKey: a receiver (or a proxy in front of it)
// refusing an export and echoing the request's headers in its answer —
// as they were sent, JSON-escaped, or cut at the space — puts no piece of
// the key the gateway sends in the log line of the failed export, for
// spans (tracing) and audit records (audit.otlp), over OTLP/HTTP, whose
// exporters quote the response body in their error. Before, the line
// held the key.
func TestExportErrorsNeverLogTheKey(t *testing.T) {
	answers := map[string]func(h http.Header) string{
		"as-sent":      func(h http.Header) string { return "unauthenticated: " + fmt.Sprint(h) },
		"json":         func(h http.Header) string { return fmt.Sprintf(`{"error":"bad key %q"}`, h.Get("X-Otlp-Key")) },
		"cut-at-space": func(h http.Header) string { return "bad key " + strings.Fields(h.Get("X-Otlp-Key"))[0] },
	}
	for name, answer := range answers {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, answer(r.Header), http.StatusBadRequest)
		}))
		t.Cleanup(srv.Close)
		ep := otlp.Endpoint{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Protocol: otlp.ProtocolHTTP, Insecure: true,
			Headers: map[string]otlp.HeaderValue{"x-otlp-key": {Value: otlpKey}}}
		sinks := map[string]func(t *testing.T, log *slog.Logger) string{
			"tracing": func(t *testing.T, log *slog.Logger) string {
				tr, err := tracing.New(t.Context(), tracing.Config{Enabled: true, OTLP: ep}, log)
				if err != nil {
					t.Fatal(err)
				}
				_, r := tr.Start(t.Context(), http.Header{}, "GET", "https", "api.example.com", 443, "/v1")
				r.End()
				_ = tr.Shutdown(t.Context()) // exports, fails, logs
				return "span export failed"
			},
			"audit.otlp": func(t *testing.T, log *slog.Logger) string {
				s, err := otlpsink.New(t.Context(), otlpsink.Config{OTLP: ep}, log)
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan struct{})
				go func() { defer close(done); _, _ = s.Write([]byte("{\"seq\":1}\n")) }()
				t.Cleanup(func() { s.Abandon(); <-done; _ = s.Close() })
				return "audit OTLP export failed"
			},
		}
		for sname, run := range sinks {
			t.Run(sname+"/"+name, func(t *testing.T) {
				var out lockedLog
				want := run(t, slog.New(slog.NewJSONHandler(&out, nil)))
				poll.True(t, 10*time.Second, "the failed export's log line", func() bool { return strings.Contains(out.String(), want) })
				got := out.String()
				for _, p := range keyPieces() {
					if strings.Contains(got, p) {
						t.Errorf("the log holds %q of the key:\n%s", p, got)
					}
				}
			})
		}
	}
}
