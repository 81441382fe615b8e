package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/poll"
)

// TestReadyzDetailNeedsToken: /readyz answers everyone with its status
// (kubelet probes send no token), and only a caller with the admin token
// gets the detail that names the policy file, identities and the
// operators' switches.
func TestReadyzDetailNeedsToken(t *testing.T) {
	const token = "readyz-admin-token-0123456789"
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withToken := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\n", tokFile))
	if st, _, _ := adminCall(t, withToken, "/admin/v1/disable", token, `{"kind":"rule","name":"api","by":"alice","reason":"INC-42 secret-sounding-reason"}`); st != http.StatusOK {
		t.Fatalf("disable: %d", st)
	}
	noToken := startSwitchGateway(t, "")
	detail := []string{"policy.yaml", `"rules"`, "kill_switch", "alice", "INC-42"}
	tests := []struct {
		name       string
		gw         *testGateway
		auth       string
		wantDetail bool
	}{
		{"no Authorization", withToken, "", false},
		{"wrong token", withToken, "Bearer not-the-admin-token-at-all", false},
		{"token as Basic", withToken, "Basic " + token, false},
		{"empty bearer", withToken, "Bearer ", false},
		{"the admin token", withToken, "Bearer " + token, true},
		{"the admin token, lower-case scheme", withToken, "bearer " + token, true},
		{"no token configured", noToken, "Bearer " + token, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+tt.gw.gw.AdminAddr().String()+"/readyz", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body := string(b)
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, `{"status":"ready"`) {
				t.Errorf("/readyz: %d %s, want 200 with the status", resp.StatusCode, body)
			}
			for _, d := range detail {
				if tt.gw == noToken && (d == "alice" || d == "INC-42") {
					continue // nothing disabled there
				}
				if got := strings.Contains(body, d); got != tt.wantDetail {
					t.Errorf("/readyz shows %q: %v, want %v\n%s", d, got, tt.wantDetail, body)
				}
			}
		})
	}
	// GET /admin/v1/switches shows the same: it needs the token too.
	for _, tt := range []struct {
		gw   *testGateway
		tok  string
		want int
	}{{withToken, "", http.StatusUnauthorized}, {withToken, "not-the-admin-token-at-all", http.StatusUnauthorized}, {withToken, token, http.StatusOK}, {noToken, token, http.StatusForbidden}} {
		if st, _, _ := adminGetStatus(t, tt.gw, "/admin/v1/switches", tt.tok); st != tt.want {
			t.Errorf("GET /admin/v1/switches with token %q: %d, want %d", tt.tok, st, tt.want)
		}
	}
	if strings.Contains(withToken.logs.String(), token) {
		t.Error("the admin token is in the log")
	}
}

// TestAdminListenerCutsSlowClients is the class "a client holds an admin
// connection open": slow headers, a slow body and an idle keep-alive
// connection are all closed by the server within its limits, and an
// oversized header block is refused.
func TestAdminListenerCutsSlowClients(t *testing.T) {
	tg := startSwitchGateway(t, "admin:\n  read_header_timeout: 200ms\n  read_timeout: 400ms\n  write_timeout: 2s\n  idle_timeout: 300ms\n  max_header_bytes: 2048\n")
	addr := tg.gw.AdminAddr().String()
	tests := []struct {
		name string
		// send writes to the connection; the server must then close it.
		send string
		// wantStatus, when set, is the status line read before the close.
		wantStatus string
	}{
		{"headers never finished (slowloris)", "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n", ""},
		{"request line only", "GET /readyz HTTP/1.1\r\n", ""},
		{"nothing sent", "", ""},
		{"body never sent", "POST /admin/v1/disable HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{", "HTTP/1.1 403"},
		{"idle keep-alive after an answer", "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "HTTP/1.1 200"},
		{"header block too large", "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", "HTTP/1.1 431"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			if tt.send != "" {
				if _, err := io.WriteString(conn, tt.send); err != nil {
					t.Fatal(err)
				}
			}
			// The deadline is only the test's safety net: the server
			// must close well before it.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			if tt.wantStatus != "" {
				line, err := br.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, tt.wantStatus) {
					t.Fatalf("status line %q, %v; want %s", line, err, tt.wantStatus)
				}
			}
			_, err = io.Copy(io.Discard, br)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server kept the connection open for %s", time.Since(start))
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("closed after %s, want within the admin limits", d)
			}
		})
	}
}

// TestAdminLimitsConfig: the admin listener's limits default, and bad
// values are refused with FILE:LINE:COL.
func TestAdminLimitsConfig(t *testing.T) {
	const head = "policy: p.yaml\nca: {cert: c, key: k}\nadmin:\n"
	cfg, err := ParseConfig("c.yaml", []byte(head+"  token_file: t\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Admin
	if a.ReadHeaderTimeout.D() != DefaultAdminReadHeaderTimeout || a.ReadTimeout.D() != DefaultAdminReadTimeout ||
		a.WriteTimeout.D() != DefaultAdminWriteTimeout || a.IdleTimeout.D() != DefaultAdminIdleTimeout || a.MaxHeaderBytes != DefaultAdminMaxHeaderBytes || a.maxConnections() != DefaultAdminMaxConnections {
		t.Errorf("defaults: %+v", a)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"  read_header_timeout: -1s\n", `c.yaml:4:24: admin.read_header_timeout: want a duration such as 500ms, 10s or 5m (a number and a unit, not negative)`},
		{"  idle_timeout: soon\n", `c.yaml:4:17: admin.idle_timeout: want a duration such as 500ms, 10s or 5m (a number and a unit, not negative)`},
		{"  max_header_bytes: 100\n", "c.yaml:4:3: admin.max_header_bytes: use at least 1024"},
		{"  max_header_bytes: -1\n", "c.yaml:4:3: admin.max_header_bytes: use at least 1024"},
		{"  max_connections: 0\n", "c.yaml:4:3: admin.max_connections: use at least 1"},
		{"  max_connections: -5\n", "c.yaml:4:3: admin.max_connections: use at least 1"},
	} {
		if _, err := ParseConfig("c.yaml", []byte(head+tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %s", tt.yaml, err, tt.want)
		}
	}
}

// adminGetStatus GETs path on the admin listener with token ("" for none).
func adminGetStatus(t *testing.T, tg *testGateway, path, token string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+tg.gw.AdminAddr().String()+path, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestTokenReviewMetrics: the TokenReview counters appear under their
// documented names and labels.
func TestTokenReviewMetrics(t *testing.T) {
	m := newMetrics(func() float64 { return 0 })
	m.enableTokenReview(func() identity.TokenReviewStats {
		return identity.TokenReviewStats{Authenticated: 1, Rejected: 2, Errors: 3, PositiveHits: 4, NegativeHits: 5, Throttled: 6, Cached: 7, NegativeCached: 8}
	})
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`credgate_tokenreview_requests_total{result="authenticated"} 1`,
		`credgate_tokenreview_requests_total{result="rejected"} 2`,
		`credgate_tokenreview_requests_total{result="error"} 3`,
		`credgate_tokenreview_cache_hits_total{cache="positive"} 4`,
		`credgate_tokenreview_cache_hits_total{cache="negative"} 5`,
		`credgate_tokenreview_throttled_total 6`,
		`credgate_tokenreview_cache_entries{cache="positive"} 7`,
		`credgate_tokenreview_cache_entries{cache="negative"} 8`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestReadyzShowsFailingAuditOutput: an audit output that refuses writes
// (a full disk) shows in /readyz's detail as failing, with since when,
// how many failures and the error, and as ok again once it takes lines;
// the log says so once when it starts and once when it ends, however
// many lines and retries came between.
func TestReadyzShowsFailingAuditOutput(t *testing.T) {
	const token = "readyz-audit-token-0123456789"
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\n", tokFile))
	auditState := func() readyzAudit {
		t.Helper()
		_, body, err := adminGetStatus(t, tg, "/readyz", token)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Audit *readyzAudit `json:"audit"`
		}
		if err := json.Unmarshal([]byte(body), &d); err != nil || d.Audit == nil {
			t.Fatalf("/readyz detail without audit: %v %s", err, body)
		}
		return *d.Audit
	}
	if st := auditState(); st.Output.State != "ok" || st.Output.Failures != 0 {
		t.Errorf("before: audit %+v, want ok", st)
	}
	restore := sync.OnceFunc(tg.audit.FailWrites(errors.New("write /var/log/credgate/audit.log: no space left on device")))
	t.Cleanup(restore)
	client := tg.client(t, false)
	for i := range 5 {
		resp, err := client.Get(fmt.Sprintf("https://%s/v1/failing-output-%d", apiHost, i))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var st readyzAudit
	poll.True(t, 10*time.Second, "/readyz shows the audit output failing, twice retried", func() bool {
		st = auditState()
		return st.Output.State == "failing" && st.Output.Failures >= 3
	})
	if !strings.Contains(st.Output.Error, "no space left on device") || st.Output.Since == "" {
		t.Errorf("failing audit output %+v: want the error and since when", st.Output)
	}
	restore()
	poll.True(t, 10*time.Second, "/readyz shows the audit output ok again", func() bool {
		st = auditState()
		return st.Output.State == "ok"
	})
	logs := tg.logs.String()
	if n := strings.Count(logs, "audit output write failed"); n != 1 {
		t.Errorf("%d log lines say the audit output failed, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, "audit output recovered"); n != 1 {
		t.Errorf("%d log lines say the audit output recovered, want 1:\n%s", n, logs)
	}
}

// TestAdminBodyOneReading is the class of admin API bodies that
// encoding/json reads one way and a reader of the JSON (an operator, a
// proxy in front of the admin listener) may read another: a key given
// twice, also in another case or spelled with a rune that folds to the
// same one (the Kelvin sign K, the long s ſ), and anything after the
// object. Each is refused 400 bad_request by POST /admin/v1/disable and
// changes nothing; one object with each key once is taken. Before,
// {"kind":"rule","name":"payments","name":"billing"} disabled billing
// (the last value), and a second object after the first was ignored.
func TestAdminBodyOneReading(t *testing.T) {
	const token = "admin-body-class-token-0123456789"
	dir := t.TempDir()
	writeFile(t, dir, "admin.token", []byte(token))
	tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\n", filepath.Join(dir, "admin.token")))
	for _, c := range []struct {
		name, body string
		ok         bool
	}{
		{"one object", `{"kind":"rule","name":"body-a","reason":"x"}`, true},
		{"one object, spaces around", " \n{\"kind\":\"rule\",\"name\":\"body-b\"}\n ", true},
		{"key case differs, once", `{"KIND":"rule","Name":"body-c"}`, true},
		{"name twice", `{"kind":"rule","name":"body-d","name":"body-e"}`, false},
		{"name twice in another case", `{"kind":"rule","name":"body-d","NAME":"body-e"}`, false},
		{"kind twice", `{"kind":"workload","kind":"rule","name":"body-d"}`, false},
		{"Kelvin sign", `{"kind":"rule","\u212aind":"workload","name":"body-d"}`, false},
		{"long s", `{"kind":"rule","name":"body-d","reason":"a","rea\u017fon":"b"}`, false},
		{"a second object", `{"kind":"rule","name":"body-d"}{"kind":"rule","name":"body-e"}`, false},
		{"trailing bytes", `{"kind":"rule","name":"body-d"} x`, false},
		{"an array", `[{"kind":"rule","name":"body-d"}]`, false},
		{"unknown key", `{"kind":"rule","name":"body-d","expires":"1h"}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(tg.gw.switches.Snapshot().Entries())
			st, code, body := adminCall(t, tg, "/admin/v1/disable", token, c.body)
			after := len(tg.gw.switches.Snapshot().Entries())
			if c.ok {
				if st != http.StatusOK || after != before+1 {
					t.Errorf("%d %s %v (switches %d -> %d); want it taken", st, code, body, before, after)
				}
				return
			}
			if st != http.StatusBadRequest || code != codeAdminBadReq || after != before {
				t.Errorf("%d %s %v (switches %d -> %d); want 400 %s and nothing changed", st, code, body, before, after, codeAdminBadReq)
			}
		})
	}
	// What encoding/json matches to one field folds to one key.
	for _, pair := range [][2]string{{"kind", "KIND"}, {"kind", "\u212aind"}, {"reason", "rea\u017fon"}, {"by", "BY"}} {
		if foldKey(pair[0]) != foldKey(pair[1]) {
			t.Errorf("foldKey(%q) = %q, foldKey(%q) = %q: encoding/json matches both to one field", pair[0], foldKey(pair[0]), pair[1], foldKey(pair[1]))
		}
		var v switchRequest
		if err := json.Unmarshal([]byte(fmt.Sprintf(`{%q:"x"}`, pair[1])), &v); err != nil || v == (switchRequest{}) {
			t.Errorf("encoding/json does not match %q to a field (%v): the table's premise is wrong", pair[1], err)
		}
	}
}
