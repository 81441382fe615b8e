package otlpsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/internal/otlp"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/syncbuf"
)

// recorder is an exporter that fails the first fails exports, then keeps
// the bodies it is given; block, when set, holds every export until it
// is closed or the export's context ends.
type recorder struct {
	mu     sync.Mutex
	fails  int
	calls  int
	bodies []string
	events []string
	block  chan struct{}
}

func (r *recorder) Export(ctx context.Context, recs []sdklog.Record) error {
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fails > 0 {
		r.fails--
		return errors.New("receiver unavailable")
	}
	for _, rec := range recs {
		r.bodies = append(r.bodies, rec.Body().AsString())
		r.events = append(r.events, rec.EventName())
		if rec.Resource() == nil {
			r.events = append(r.events, "no resource")
		}
	}
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

func (*recorder) Shutdown(context.Context) error   { return nil }
func (*recorder) ForceFlush(context.Context) error { return nil }

// TestSinkOneRecordPerLine: each line is one record whose body is the
// line, and a failed export is retried until the receiver takes it.
func TestSinkOneRecordPerLine(t *testing.T) {
	rec := &recorder{fails: 2}
	s := NewWithExporter(Config{}, rec, nil)
	defer s.Close()
	if n, err := s.Write([]byte("{\"a\":1}\n{\"b\":2}\n")); err != nil || n != 16 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := rec.got(); strings.Join(got, "|") != `{"a":1}|{"b":2}` {
		t.Errorf("bodies %q", got)
	}
	if rec.calls != 3 || strings.Join(rec.events, ",") != EventName+","+EventName {
		t.Errorf("%d export calls (want 2 failures and 1 success), events %v", rec.calls, rec.events)
	}
}

// partial takes only the first n bytes of its first write.
type partial struct {
	bytes.Buffer
	n int
}

func (p *partial) Write(b []byte) (int, error) {
	if p.n > 0 {
		n := min(p.n, len(b))
		p.n = 0
		p.Buffer.Write(b[:n])
		return n, errors.New("disk full")
	}
	return p.Buffer.Write(b)
}

// TestTeeWithWriter: through the audit Writer, the file and the OTLP sink
// each get every line exactly once, even when the file takes a chunk only
// in part and the Writer retries the rest.
func TestTeeWithWriter(t *testing.T) {
	rec := &recorder{}
	s := NewWithExporter(Config{}, rec, nil)
	file := &partial{n: 10}
	w := audit.NewWriter(Tee(file, s), audit.Options{Replica: "gw-otlp", FlushInterval: 5 * time.Millisecond})
	for i := range 3 {
		w.Write([]byte(`{"i":` + string(rune('0'+i)) + `}`))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	lines := strings.Split(strings.TrimSuffix(file.String(), "\n"), "\n")
	if got := rec.got(); len(lines) != 3 || strings.Join(got, "\n") != strings.Join(lines, "\n") {
		t.Errorf("file lines:\n%s\nexported:\n%s", strings.Join(lines, "\n"), strings.Join(got, "\n"))
	}
}

// TestStalledReceiverStallsWriter: a receiver that does not answer makes
// the audit Writer's sink write last, so the Writer reports Stalled (what
// fail_closed refuses requests on) and, once the receiver answers, the
// lines arrive.
func TestStalledReceiverStallsWriter(t *testing.T) {
	rec := &recorder{block: make(chan struct{})}
	s := NewWithExporter(Config{}, rec, nil)
	w := audit.NewWriter(Tee(io.Discard, s), audit.Options{Replica: "gw-stall", FlushInterval: 5 * time.Millisecond, StallTimeout: 50 * time.Millisecond, OnStall: audit.FailClosed})
	w.Write([]byte(`{"i":1}`))
	poll.True(t, 5*time.Second, "the Writer reports the stalled receiver", w.Stalled)
	close(rec.block)
	poll.True(t, 5*time.Second, "the line exported and the stall over", func() bool { return !w.Stalled() && len(rec.got()) == 1 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAbandonEndsRetries: a receiver that stays down cannot hold the
// Writer's Close: after Abandon the retrying export gives up, the lines
// are counted as lost, and the primary output still gets them.
func TestAbandonEndsRetries(t *testing.T) {
	rec := &recorder{fails: 1 << 30}
	s := NewWithExporter(Config{}, rec, nil)
	var file bytes.Buffer
	w := audit.NewWriter(Tee(&file, s), audit.Options{Replica: "gw-down", FlushInterval: 5 * time.Millisecond})
	w.Write([]byte(`{"i":1}`))
	poll.True(t, 5*time.Second, "export retries", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.calls >= 2 })
	s.Abandon()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Lost() != 1 || strings.Count(file.String(), "\n") != 1 {
		t.Errorf("lost %d lines, file %q; want 1 lost and the line in the file", s.Lost(), file.String())
	}
	_ = s.Close()
}

// TestExportFailureEpisode: a receiver that refuses 3 exports, then takes
// them, costs one log line when the failure starts and one when it ends
// (not one per retry); each failure is counted and the status says so.
func TestExportFailureEpisode(t *testing.T) {
	var buf syncbuf.Buffer
	rec := &recorder{fails: 3}
	s := NewWithExporter(Config{}, rec, slog.New(slog.NewJSONHandler(&buf, nil)))
	defer s.Close()
	if _, err := s.Write([]byte("{\"a\":1}\n")); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		t.Errorf("%d WARN/ERROR lines, want 2 (the failure and the recovery):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if st := s.Status(); st.Failing || st.Failures != 3 || st.EpisodeFailures != 3 || st.LastError == "" {
		t.Errorf("status %+v: want 3 failures in an episode that ended", st)
	}
}

// partialReceiver is an OTLP/gRPC logs receiver that takes every export
// and answers each with a partial success: one record rejected.
type partialReceiver struct {
	collogpb.UnimplementedLogsServiceServer
	mu      sync.Mutex
	exports int
	records int
}

func (p *partialReceiver) Export(_ context.Context, req *collogpb.ExportLogsServiceRequest) (*collogpb.ExportLogsServiceResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exports++
	for _, rl := range req.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			p.records += len(sl.LogRecords)
		}
	}
	return &collogpb.ExportLogsServiceResponse{PartialSuccess: &collogpb.ExportLogsPartialSuccess{
		RejectedLogRecords: 1, ErrorMessage: "log record too large"}}, nil
}

func (p *partialReceiver) counts() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exports, p.records
}

// TestPartialSuccessNotRetried: a receiver that takes an export but
// rejects some of its records (an OTLP partial success) is not sent it
// again — OTLP says not to, and each retry repeated the records it kept —
// and the audit sink goes on: each Write is one export, the rejection is
// logged once and counted (Rejected). Through the real gRPC exporter, so
// that the error text partialSuccess recognises is the exporter's. Before,
// the export was retried every second for as long as the receiver
// rejected (a line over its size limit, which a client's long path can
// make: forever), stalling the audit sink and repeating the kept records.
func TestPartialSuccessNotRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rcv := &partialReceiver{}
	collogpb.RegisterLogsServiceServer(srv, rcv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	logs := &syncbuf.Buffer{}
	s, err := New(t.Context(), Config{OTLP: otlp.Endpoint{Endpoint: ln.Addr().String(), Insecure: true}}, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	for i := range 2 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = s.Write([]byte(fmt.Sprintf("{\"n\":%d}\n{\"n\":%d}\n", 2*i, 2*i+1)))
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			s.Abandon() // let the Write return
			<-done
			exports, _ := rcv.counts()
			t.Fatalf("Write %d did not return within 10s: the receiver was sent the export %d times", i, exports)
		}
	}
	if exports, records := rcv.counts(); exports != 2 || records != 4 {
		t.Errorf("the receiver got %d exports of %d records in all, want 2 of 4 (no export sent again)", exports, records)
	}
	if n := s.Rejected(); n != 2 {
		t.Errorf("Rejected() = %d, want 2", n)
	}
	if st := s.Status(); st.Failures != 0 {
		t.Errorf("%d failures counted, want 0: the receiver took every export", st.Failures)
	}
	if n := strings.Count(logs.String(), "audit OTLP receiver rejected audit lines"); n != 1 || !strings.Contains(logs.String(), "log record too large") {
		t.Errorf("the rejection logged %d times, want once with the receiver's message:\n%s", n, logs.String())
	}
}
