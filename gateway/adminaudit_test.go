package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/credgate/credgate/internal/poll"
)

// adminAuditLines returns the audit lines of admin requests, decoded.
func adminAuditLines(t *testing.T, tg *testGateway) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(tg.audit.String(), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q", l)
		}
		if m["host"] == "admin" {
			out = append(out, m)
		}
	}
	return out
}

// adminRequestCounts reads credgate_admin_api_requests_total by {route,
// code} from the gateway's registry (not through /metrics, which is
// itself an admin route and counted).
func adminRequestCounts(t *testing.T, tg *testGateway) map[[2]string]float64 {
	t.Helper()
	mfs, err := tg.gw.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[[2]string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "credgate_admin_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[[2]string{labelOf(m, "route"), labelOf(m, "code")}] = m.GetCounter().GetValue()
		}
	}
	return out
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// diffCounts lists the series that changed between two readings.
func diffCounts(before, after map[[2]string]float64) map[[2]string]float64 {
	d := map[[2]string]float64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// TestAdminRequestsAuditedAndCounted is the class test of the admin
// listener's accounting: for every route the admin mux registers (read
// from the registration, not a list kept here), and for each way of
// calling it (authorised, without a token, with a wrong token, with a
// wrong method, and an unknown path beside it), the request is counted
// in credgate_admin_api_requests_total under its route pattern and code,
// and writes exactly one audit line naming the method, path, status,
// code and who called (never the token); probe routes (/healthz, /readyz,
// /metrics) are counted and not audited, but for a request refused for
// naming the loopback listener by a DNS name (admin_host_refused).
func TestAdminRequestsAuditedAndCounted(t *testing.T) {
	const admin = "admin-audit-class-token-0123456789"
	const wrong = "admin-audit-wrong-token-ffffffffff"
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokFile, []byte(admin), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\nrun_tokens:\n  workloads: [agent]\n", tokFile))
	routes := tg.gw.adminMux(newAdminMux()).routes
	if len(routes) < 10 {
		t.Fatalf("the admin mux registers %d routes; the test expects all of them (>= 10)", len(routes))
	}

	type call struct {
		name, method, path, token string
		host                      string // the Host header; "" for the listener's address
		route                     string // the metric's route label
		audited                   bool
		wantStatus                int    // 0: any status below 400
		wantCode                  string // the audit line's code ("" for none)
		operator                  string // the audit line's operator
	}
	var calls []call
	for _, rt := range routes {
		other := http.MethodPost
		if rt.Method() == http.MethodPost {
			other = http.MethodGet
		}
		op := ""
		if rt.Auth {
			op = "admin_token"
		}
		calls = append(calls, call{name: "authorised", method: rt.Method(), path: rt.Path(), token: admin, route: rt.Pattern, audited: !rt.Probe, operator: op})
		for _, tok := range []struct{ name, value string }{{"no token", ""}, {"wrong token", wrong}} {
			c := call{name: tok.name, method: rt.Method(), path: rt.Path(), token: tok.value, route: rt.Pattern, audited: !rt.Probe}
			if rt.Auth {
				c.wantStatus, c.wantCode = http.StatusUnauthorized, codeUnauthorized
			}
			calls = append(calls, c)
		}
		calls = append(calls,
			call{name: "wrong method", method: other, path: rt.Path(), token: admin, route: "unmatched", audited: true,
				wantStatus: http.StatusMethodNotAllowed, wantCode: codeAdminMethod},
			call{name: "unknown path", method: rt.Method(), path: rt.Path() + "-unknown", token: admin, route: "unmatched", audited: true,
				wantStatus: http.StatusNotFound, wantCode: codeAdminNotFound},
			// A page's domain re-resolved to the loopback listener (DNS
			// rebinding): refused, and audited even on a probe's route.
			call{name: "DNS name as Host", method: rt.Method(), path: rt.Path(), token: admin, host: "rebind.example:9090", route: rt.Pattern, audited: true,
				wantStatus: http.StatusForbidden, wantCode: codeAdminHost})
	}
	// A last audited request after the others: its line comes after any
	// line a probe wrongly wrote.
	calls = append(calls, call{name: "marker", method: http.MethodGet, path: "/admin/v1/marker", route: "unmatched", audited: true,
		wantStatus: http.StatusNotFound, wantCode: codeAdminNotFound})

	failed := map[int]bool{}
	var i int
	fail := func(c call, format string, args ...any) {
		t.Helper()
		failed[i] = true
		t.Errorf("%s %s (%s): %s", c.method, c.path, c.name, fmt.Sprintf(format, args...))
	}
	lines := len(adminAuditLines(t, tg))
	var c call
	for i, c = range calls {
		counts := adminRequestCounts(t, tg)
		var body io.Reader
		if c.method == http.MethodPost {
			body = strings.NewReader("{}")
		}
		req, err := http.NewRequest(c.method, "http://"+tg.gw.AdminAddr().String()+c.path, body)
		if err != nil {
			t.Fatal(err)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if c.host != "" {
			req.Host = c.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case c.wantStatus != 0 && resp.StatusCode != c.wantStatus:
			fail(c, "status %d, want %d", resp.StatusCode, c.wantStatus)
		case c.wantStatus == 0 && resp.StatusCode == http.StatusUnauthorized:
			fail(c, "status %d, want the call authorised", resp.StatusCode)
		}
		code := resp.Header.Get(ReasonHeader)
		if c.wantCode != "" && code != c.wantCode {
			fail(c, "%s %q, want %q", ReasonHeader, code, c.wantCode)
		}

		// Counted once, under its route pattern and code.
		metricCode := code
		if metricCode == "" {
			metricCode = "ok"
		}
		key := [2]string{c.route, metricCode}
		total := func(m map[[2]string]float64) (n float64) {
			for _, v := range m {
				n += v
			}
			return n
		}
		var after map[[2]string]float64
		if !poll.Within(2*time.Second, func() bool {
			after = adminRequestCounts(t, tg)
			return total(after) >= total(counts)+1
		}) {
			fail(c, "not counted: credgate_admin_api_requests_total%v did not grow", key)
		} else if total(after) != total(counts)+1 || after[key] != counts[key]+1 {
			fail(c, "counted as %v, want one more of %v", diffCounts(counts, after), key)
		}

		// Audited once (probes not at all).
		if c.audited {
			lines++
		}
		if !poll.Within(2*time.Second, func() bool { return len(adminAuditLines(t, tg)) >= lines }) {
			fail(c, "no audit line (%d admin lines, want %d)", len(adminAuditLines(t, tg)), lines)
			lines = len(adminAuditLines(t, tg))
			continue
		}
		all := adminAuditLines(t, tg)
		if len(all) != lines {
			fail(c, "%d admin audit lines, want %d", len(all), lines)
			lines = len(all)
			continue
		}
		if !c.audited {
			continue
		}
		l := all[len(all)-1]
		if l["method"] != c.method || l["path"] != c.path || l["status"] != float64(resp.StatusCode) || l["code"] != code {
			fail(c, "audit line %v, want method %s path %s status %d code %q", l, c.method, c.path, resp.StatusCode, code)
		}
		if op, _ := l["operator"].(string); op != c.operator {
			fail(c, "audit operator %q, want %q", op, c.operator)
		}
	}
	if strings.Contains(tg.audit.String(), admin) || strings.Contains(tg.audit.String(), wrong) ||
		strings.Contains(tg.logs.String(), admin) || strings.Contains(tg.logs.String(), wrong) {
		t.Error("an admin token (the right one or the wrong one) appears in the audit or the log")
	}
	t.Logf("%d of %d calls failed", len(failed), len(calls))
}

// TestAdminPanicAnswered: a panic in any admin route's handler (made by
// the admin mux's test hook, wrap) is answered 500 internal_error in the
// admin API's JSON, or cuts the connection when the answer had begun; it
// is audited and counted under its route; and the panic's value, which
// holds a secret, reaches neither the client, the log nor the audit.
func TestAdminPanicAnswered(t *testing.T) {
	const admin = "admin-panic-class-token-0123456789"
	const secret = "panic-value-secret-5f1e2d3c"
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokFile, []byte(admin), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\nrun_tokens:\n  workloads: [agent]\n", tokFile))
	m := newAdminMux()
	m.wrap = func(_ string, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.Header.Get("X-Test-Panic") {
			case "before":
				w.Header().Set("X-Leak", secret)
				panic(fmt.Errorf("handler failed with %s", secret))
			case "after":
				w.Header().Set("Content-Length", "100")
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, "partial")
				_ = http.NewResponseController(w).Flush()
				panic(secret)
			}
			h.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(tg.gw.serveAdmin(tg.gw.adminMux(m)))
	t.Cleanup(srv.Close)

	lines := len(adminAuditLines(t, tg))
	for _, rt := range m.routes {
		for _, when := range []string{"before", "after"} {
			before := adminRequestCounts(t, tg)[[2]string{rt.Pattern, codeAdminInternal}]
			req, _ := http.NewRequest(rt.Method(), srv.URL+rt.Path(), nil)
			req.Header.Set("Authorization", "Bearer "+admin)
			req.Header.Set("X-Test-Panic", when)
			// A fresh connection each: the client retries a request
			// whose reused connection closed, and would count twice.
			req.Close = true
			resp, err := srv.Client().Do(req)
			if when == "before" {
				if err != nil {
					t.Fatalf("%s (panic before answering): %v", rt.Pattern, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get(ReasonHeader) != codeAdminInternal ||
					!strings.Contains(string(b), `"code":"internal_error"`) {
					t.Errorf("%s: %d %q %s, want 500 internal_error", rt.Pattern, resp.StatusCode, resp.Header.Get(ReasonHeader), b)
				}
				if strings.Contains(string(b), secret) || resp.Header.Get("X-Leak") != "" {
					t.Errorf("%s: the panic's secret reached the client", rt.Pattern)
				}
			} else if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Errorf("%s (panic after answering): the truncated answer read as whole", rt.Pattern)
				}
			}
			lines++
			waitFor(t, 10*time.Second, "the panic's audit line", func() bool { return len(adminAuditLines(t, tg)) >= lines })
			all := adminAuditLines(t, tg)
			if l := all[len(all)-1]; len(all) != lines || l["path"] != rt.Path() || l["status"] != float64(500) || l["code"] != codeAdminInternal {
				t.Errorf("%s (%s): %d lines (want %d), last %v", rt.Pattern, when, len(all), lines, l)
			}
			if got := adminRequestCounts(t, tg)[[2]string{rt.Pattern, codeAdminInternal}]; got != before+1 {
				t.Errorf("%s (%s): counted %v times under internal_error, want %v", rt.Pattern, when, got, before+1)
			}
		}
	}
	if !strings.Contains(tg.logs.String(), "admin API: panic serving a request") {
		t.Error("no log line for the panics")
	}
	for where, s := range map[string]string{"audit": tg.audit.String(), "log": tg.logs.String()} {
		if strings.Contains(s, secret) {
			t.Errorf("the panic's secret appears in the %s", where)
		}
	}
}

// TestAdminHostRebinding is the class of Host names a request to the
// admin listener may carry (DNS rebinding: a web page re-resolving its
// own domain to 127.0.0.1 makes the browser send the page's domain as
// Host, and reads the answers as its own origin's). Over a loopback
// connection on plain HTTP, a DNS name other than localhost is refused
// 403 admin_host_refused on every route, probes included, and the
// answer holds nothing of what the route serves; an IP address or
// localhost in any spelling is served. Over admin.tls, and on a
// connection that arrived on another address (unit level: the tests
// listen on loopback only), nothing is refused for its Host. Before,
// every spelling was served: /metrics (rule and workload names) to any
// page.
func TestAdminHostRebinding(t *testing.T) {
	hosts := []struct {
		host    string
		allowed bool
	}{
		{"127.0.0.1:PORT", true},
		{"127.0.0.1", true},
		{"localhost:PORT", true},
		{"LocalHost:PORT", true},
		{"localhost.:PORT", true},
		{"[::1]:PORT", true},
		{"10.1.2.3:PORT", true}, // an IP address is no page's domain
		{"[fe80::1%25eth0]:PORT", true},
		{"rebind.example", false},
		{"rebind.example:PORT", false},
		{"REBIND.EXAMPLE.:PORT", false},
		{"127.0.0.1.nip.io:PORT", false},
		{"localhost.rebind.example:PORT", false},
		{"app.localhost:PORT", false},
		{"0x7f000001:PORT", false}, // browsers send 127.0.0.1; only a name reads so
		{"2130706433:PORT", false},
		{"xn--80ak6aa92e.com:PORT", false},
	}
	const token = "admin-host-class-token-0123456789"
	dir := t.TempDir()
	writeFile(t, dir, "admin.token", []byte(token))
	ca := adminPKI(t, dir, "admin CA")
	plain := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\n", filepath.Join(dir, "admin.token")))
	secure := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\n  tls:\n    cert: %q\n    key: %q\n",
		filepath.Join(dir, "admin.token"), filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem")))
	for _, l := range []struct {
		name   string
		tg     *testGateway
		scheme string
		client *http.Client
	}{{"plain HTTP", plain, "http", http.DefaultClient}, {"admin.tls", secure, "https", httpsClient(t, ca.Pool())}} {
		addr := l.tg.gw.AdminAddr().String()
		_, port, _ := net.SplitHostPort(addr)
		for _, h := range hosts {
			for _, path := range []string{"/healthz", "/metrics", "/admin/v1/switches"} {
				req, err := http.NewRequest(http.MethodGet, l.scheme+"://"+addr+path, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = strings.ReplaceAll(h.host, "PORT", port)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := l.client.Do(req)
				if err != nil {
					t.Fatalf("%s %s Host %s: %v", l.name, path, req.Host, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				refused := resp.StatusCode == http.StatusForbidden && resp.Header.Get(ReasonHeader) == codeAdminHost
				if want := !h.allowed && l.scheme == "http"; refused != want {
					t.Errorf("%s GET %s Host %s: %d %q, want refused=%v", l.name, path, req.Host, resp.StatusCode, resp.Header.Get(ReasonHeader), want)
				}
				if refused && (strings.Contains(string(b), "credgate_") || strings.Contains(string(b), "disabled")) {
					t.Errorf("%s GET %s Host %s: the refusal carries the route's answer: %s", l.name, path, req.Host, b)
				}
			}
		}
	}
	// The same request arriving on a non-loopback address, or over TLS:
	// not refused whatever its Host.
	for _, c := range []struct {
		name  string
		local net.Addr
		tls   bool
		want  bool // refused
	}{
		{"loopback", &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 9090}, false, true},
		{"loopback IPv6", &net.TCPAddr{IP: net.IPv6loopback, Port: 9090}, false, true},
		{"loopback 127.0.0.2", &net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 9090}, false, true},
		{"IPv4-mapped loopback", &net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 9090}, false, true},
		{"pod address", &net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 9090}, false, false},
		{"loopback over TLS", &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 9090}, true, false},
		{"no local address", nil, false, false},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://rebind.example:9090/metrics", nil)
		if c.local != nil {
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, c.local))
		}
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if got := adminHostRefusal(r) != ""; got != c.want {
			t.Errorf("%s: refused=%v, want %v", c.name, got, c.want)
		}
	}
}
