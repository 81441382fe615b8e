package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/freeport"
)

// collector is a running OpenTelemetry Collector (otelcol-credgate, built
// by scripts/otelcol.sh): OTLP gRPC and HTTP receivers on 127.0.0.1 and
// the file exporter writing every trace and log batch it receives to out,
// as OTLP JSON lines.
type collector struct {
	grpcAddr, httpAddr string
	out                string
	stderr             *syncBuffer
}

// collectorBinary returns the Collector's path, or skips the test saying
// how to build it.
func collectorBinary(t *testing.T) string {
	return builtTool(t, "otelcol-credgate", "otelcol.sh")
}

// startCollector starts a Collector for the test and waits until both
// receivers accept connections. Cleanup stops it.
func startCollector(t *testing.T) *collector {
	t.Helper()
	bin := collectorBinary(t)
	dir := t.TempDir()
	c := &collector{
		grpcAddr: fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)),
		out:      filepath.Join(dir, "otlp.jsonl"),
		stderr:   &syncBuffer{},
	}
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc: {endpoint: %q}
      http: {endpoint: %q}
exporters:
  file: {path: %q, flush_interval: 100ms}
service:
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
    logs: {receivers: [otlp], exporters: [file]}
`, c.grpcAddr, c.httpAddr, c.out)
	cfgPath := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", "file:"+cfgPath)
	cmd.Stdout, cmd.Stderr = c.stderr, c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the Collector: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("collector output:\n%s", tail(c.stderr.String(), 30))
		}
	})
	waitFor(t, 30*time.Second, "the Collector's OTLP receivers", func() error {
		select {
		case <-exited:
			t.Fatalf("the Collector exited:\n%s", c.stderr.String())
		default:
		}
		for _, a := range []string{c.grpcAddr, c.httpAddr} {
			conn, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				return err
			}
			conn.Close()
		}
		return nil
	})
	return c
}

// file returns what the Collector wrote so far.
func (c *collector) file(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(c.out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// otlpSpan is a span as the file exporter writes it (OTLP JSON).
type otlpSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Kind         int    `json:"kind"`
	Attributes   []struct {
		Key   string         `json:"key"`
		Value map[string]any `json:"value"`
	} `json:"attributes"`
}

func (s otlpSpan) attr(k string) any {
	for _, a := range s.Attributes {
		if a.Key == k {
			for _, v := range a.Value {
				return v
			}
		}
	}
	return nil
}

// spans parses the trace lines of the Collector's file.
func (c *collector) spans(t *testing.T) []otlpSpan {
	t.Helper()
	var out []otlpSpan
	sc := bufio.NewScanner(strings.NewReader(c.file(t)))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var line struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []otlpSpan `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("the Collector's file has a line that is not OTLP JSON: %v", err)
		}
		for _, rs := range line.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

// OTLP span kinds.
const (
	otlpKindServer = 2
	otlpKindClient = 3
)

// TestTracingCollector: the gateway exports the spans of a request to a
// real OpenTelemetry Collector, over OTLP gRPC and over OTLP HTTP. The
// client's traceparent is continued (its trace id, its span as parent of
// the gateway's request span), each stage is a child span, and the
// upstream receives a traceparent whose parent is the gateway's upstream
// client span. The Collector's file holds neither the injected credential
// nor the query string's key.
func TestTracingCollector(t *testing.T) {
	const (
		traceID     = "0af7651916cd43dd8448eb211c80319c"
		clientSpan  = "b7ad6b7169203331"
		querySecret = "qs-e2e-secret-7f3a9c"
	)
	for _, proto := range []string{"grpc", "http"} {
		t.Run(proto, func(t *testing.T) {
			col := startCollector(t)
			endpoint := col.grpcAddr
			if proto == "http" {
				endpoint = col.httpAddr
			}
			e := startEnv(t, envOptions{ExtraConfig: fmt.Sprintf(`tracing:
  enabled: true
  endpoint: %q
  protocol: %s
  insecure: true
  sampling_ratio: 1
  service_name: credgate-e2e
`, endpoint, proto)})
			e.secrets = append(e.secrets, querySecret)
			resp := goClient{}.Do(t, e, clientRequest{
				URL:    "https://" + apiHost + "/v1/traced?api_key=" + querySecret,
				Header: http.Header{"Traceparent": {"00-" + traceID + "-" + clientSpan + "-01"}},
			})
			if resp.Status != http.StatusOK {
				t.Fatalf("request: %d %s %s", resp.Status, resp.Err, resp.Body)
			}
			got := e.origin.one(t, "/v1/traced").Header.Get("Traceparent")
			// SIGTERM: the gateway exports the spans still queued.
			e.signal(syscall.SIGTERM)
			if exited, err := e.wait(15 * time.Second); !exited || err != nil {
				t.Fatalf("gateway did not exit cleanly on SIGTERM: exited %v, %v", exited, err)
			}
			var spans []otlpSpan
			waitFor(t, 15*time.Second, "the request's spans in the Collector's file", func() error {
				spans = col.spans(t)
				for _, s := range spans {
					if s.Name == "credgate.request" {
						return nil
					}
				}
				return fmt.Errorf("%d spans, no credgate.request yet", len(spans))
			})
			byName := map[string]otlpSpan{}
			for _, s := range spans {
				if s.TraceID != traceID {
					t.Errorf("span %s in trace %s, want the client's %s", s.Name, s.TraceID, traceID)
				}
				byName[s.Name] = s
			}
			root := byName["credgate.request"]
			if root.ParentSpanID != clientSpan || root.Kind != otlpKindServer {
				t.Errorf("request span: parent %q kind %d, want the client's span %s and server", root.ParentSpanID, root.Kind, clientSpan)
			}
			if v := root.attr("credgate.rule"); v != "api-inject" {
				t.Errorf("request span credgate.rule = %v, want api-inject", v)
			}
			if v := root.attr("url.path"); v != "/v1/traced" {
				t.Errorf("request span url.path = %v, want /v1/traced (no query)", v)
			}
			for _, n := range []string{"credgate.identity", "credgate.decision", "credgate.credential", "credgate.upstream"} {
				s, ok := byName[n]
				if !ok || s.ParentSpanID != root.SpanID {
					t.Errorf("span %s: present %v, parent %q; want a child of the request span %s", n, ok, s.ParentSpanID, root.SpanID)
				}
			}
			if p := byName["credgate.provider.fetch"]; p.ParentSpanID != byName["credgate.credential"].SpanID || p.Kind != otlpKindClient {
				t.Errorf("provider span: parent %q kind %d; want a client child of the credential span (a cache miss)", p.ParentSpanID, p.Kind)
			}
			if v := byName["credgate.credential"].attr("credgate.cache_hit"); v != false {
				t.Errorf("credential span cache_hit = %v, want false (first request)", v)
			}
			up := byName["credgate.upstream"]
			if up.Kind != otlpKindClient {
				t.Errorf("upstream span kind %d, want client", up.Kind)
			}
			if want := "00-" + traceID + "-" + up.SpanID + "-01"; got != want {
				t.Errorf("upstream received traceparent %q, want %q (the gateway's upstream span as parent)", got, want)
			}
			file := col.file(t)
			for _, s := range []string{e.token, querySecret} {
				if n := strings.Count(file, s); n != 0 {
					t.Errorf("the Collector's file holds an injected or query secret %d times", n)
				}
			}
			if !bytes.Contains([]byte(file), []byte("credgate-e2e")) {
				t.Errorf("the Collector's file does not name service credgate-e2e")
			}
		})
	}
}

// logRecords returns the bodies of the log records of event name in the
// Collector's file.
func (c *collector) logRecords(t *testing.T, event string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(c.file(t)))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var line struct {
			ResourceLogs []struct {
				ScopeLogs []struct {
					LogRecords []struct {
						EventName string `json:"eventName"`
						Body      struct {
							StringValue string `json:"stringValue"`
						} `json:"body"`
					} `json:"logRecords"`
				} `json:"scopeLogs"`
			} `json:"resourceLogs"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("the Collector's file has a line that is not OTLP JSON: %v", err)
		}
		for _, rl := range line.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, r := range sl.LogRecords {
					if r.EventName == event {
						out = append(out, r.Body.StringValue)
					}
				}
			}
		}
	}
	return out
}

// TestAuditOTLPCollector: with audit.otlp set, every audit line reaches
// a real OpenTelemetry Collector as one log record (event credgate.audit,
// body the line as written to stdout, chain included), over OTLP gRPC and
// HTTP; the Collector's file holds no injected secret.
func TestAuditOTLPCollector(t *testing.T) {
	for _, proto := range []string{"grpc", "http"} {
		t.Run(proto, func(t *testing.T) {
			col := startCollector(t)
			endpoint := col.grpcAddr
			if proto == "http" {
				endpoint = col.httpAddr
			}
			e := startEnv(t, envOptions{AuditConfig: fmt.Sprintf("  otlp: {endpoint: %q, protocol: %s, insecure: true}\n", endpoint, proto)})
			for _, p := range []string{"/v1/one", "/admin/two"} {
				if resp := (goClient{}).Do(t, e, clientRequest{URL: "https://" + apiHost + p}); resp.Status == 0 {
					t.Fatalf("%s: %s", p, resp.Err)
				}
			}
			e.signal(syscall.SIGTERM)
			if exited, err := e.wait(15 * time.Second); !exited || err != nil {
				t.Fatalf("gateway did not exit cleanly on SIGTERM: exited %v, %v", exited, err)
			}
			var want []string
			for _, l := range strings.Split(strings.TrimSpace(e.stdout.String()), "\n") {
				if strings.HasPrefix(l, "{") {
					want = append(want, l)
				}
			}
			var got []string
			waitFor(t, 15*time.Second, "the audit lines as log records in the Collector's file", func() error {
				got = col.logRecords(t, "credgate.audit")
				if len(got) < len(want) {
					return fmt.Errorf("%d of %d lines exported", len(got), len(want))
				}
				return nil
			})
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("exported records differ from the audit lines:\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if !strings.Contains(strings.Join(got, "\n"), `"rule":"api-admin-blocked"`) {
				t.Errorf("the deny line is not among the records")
			}
			if n := strings.Count(col.file(t), e.token); n != 0 {
				t.Errorf("the Collector's file holds the injected credential %d times", n)
			}
		})
	}
}

// TestAuditOTLPStallFailsClosed: an OTLP receiver that is down stalls
// the audit sink like a stuck file, so with audit.on_stall: fail_closed
// the gateway refuses requests (503 audit_stalled) instead of serving
// them unaudited.
func TestAuditOTLPStallFailsClosed(t *testing.T) {
	down := fmt.Sprintf("127.0.0.1:%d", freeport.Get(t)) // nothing listens there
	e := startEnv(t, envOptions{AuditConfig: fmt.Sprintf("  on_stall: fail_closed\n  stall_timeout: 200ms\n  otlp: {endpoint: %q, insecure: true}\n", down)})
	// The first request is served; its line cannot be exported.
	if resp := (goClient{}).Do(t, e, clientRequest{URL: "https://" + apiHost + "/v1/first"}); resp.Status != http.StatusOK {
		t.Fatalf("first request: %d %s", resp.Status, resp.Err)
	}
	waitFor(t, 15*time.Second, "a request refused because the audit sink is stalled", func() error {
		// A stalled gateway refuses the CONNECT itself.
		resp := goClient{}.Do(t, e, clientRequest{URL: "https://" + apiHost + "/v1/later"})
		if resp.ConnectStatus != http.StatusServiceUnavailable || resp.ConnectHeader.Get("X-Credgate-Reason") != "audit_stalled" {
			return fmt.Errorf("CONNECT status %d, status %d, %s", resp.ConnectStatus, resp.Status, resp.Err)
		}
		return nil
	})
	e.waitLog(t, "audit OTLP export failed; retrying")
}
