package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/killswitch"
)

// startSwitchGateway runs the test gateway with the admin block extra.
func startSwitchGateway(t *testing.T, admin string) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\n%s", tg.origin.addr, tg.origin.addr, admin))
	return tg
}

// adminCall posts body to the admin API with token ("" for none) and
// returns the status, the X-Credgate-Reason and the decoded body.
func adminCall(t *testing.T, tg *testGateway, path, token, body string) (int, string, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+tg.gw.AdminAddr().String()+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: body is not JSON: %q", path, b)
	}
	return resp.StatusCode, resp.Header.Get(ReasonHeader), out
}

func adminGet(t *testing.T, tg *testGateway, path string) string {
	t.Helper()
	return adminGetToken(t, tg, path, "")
}

// adminGetToken is adminGet with the admin token ("" for none).
func adminGetToken(t *testing.T, tg *testGateway, path, token string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+tg.gw.AdminAddr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestKillSwitchAdminAPI(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "switches.json")
	tg := startSwitchGateway(t, fmt.Sprintf("admin:\n  token_file: %q\n  state_file: %q\n", tokFile, state))
	c := tg.client(t, false)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get("https://" + apiHost + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, _ := get("/v1/before"); resp.StatusCode != 200 {
		t.Fatalf("before: %s", resp.Status)
	}

	disable := `{"kind":"rule","name":"api","by":"alice","reason":"INC-42"}`
	const wrong = "wrong-token-ffffffffffffffff"
	for _, tc := range []struct{ token, why string }{{"", "no bearer token"}, {wrong, "does not match"}} {
		st, code, _ := adminCall(t, tg, "/admin/v1/disable", tc.token, disable)
		if st != http.StatusUnauthorized || code != codeUnauthorized {
			t.Errorf("token %q: %d %s, want 401 unauthorized", tc.token, st, code)
		}
		if !strings.Contains(tg.logs.String(), tc.why) {
			t.Errorf("no log line says %q", tc.why)
		}
	}
	if strings.Contains(tg.logs.String(), wrong) || strings.Contains(tg.audit.String(), wrong) {
		t.Error("a presented token appears in the log or the audit")
	}
	if resp, _ := get("/v1/after-refused"); resp.StatusCode != 200 {
		t.Fatalf("a refused admin call changed something: %s", resp.Status)
	}

	st, _, body := adminCall(t, tg, "/admin/v1/disable", token, disable)
	if st != 200 || body["changed"] != true || body["scope"] != "replica" {
		t.Fatalf("disable: %d %v", st, body)
	}
	if w, _ := body["warnings"].([]any); len(w) != 1 || !strings.Contains(w[0].(string), "this replica only") {
		t.Errorf("warnings = %v", body["warnings"])
	}
	resp, b := get("/v1/charges")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get(ReasonHeader) != codeDisabled ||
		!strings.Contains(b, `rule \"api\" is disabled by an operator`) || !strings.Contains(b, "INC-42") {
		t.Errorf("request to a disabled rule: %s %q", resp.Status, b)
	}
	if len(tg.origin.all()) != 2 {
		t.Errorf("the origin saw %d requests, want 2 (the refused one not)", len(tg.origin.all()))
	}
	waitFor(t, 5*time.Second, "the refusal's audit line", func() bool {
		return strings.Contains(tg.audit.String(), `"code":"disabled","credential":"","cache_hit":false,"status":403`) &&
			strings.Contains(tg.audit.String(), `"switch":"rule:api"`)
	})
	// An admin call is audited too.
	if !regexp.MustCompile(`"method":"POST","scheme":"http","host":"admin",.*"path":"/admin/v1/disable".*"decision":"admin".*"switch":"rule:api"`).MatchString(tg.audit.String()) {
		t.Errorf("no audit line for the disable:\n%s", tg.audit.String())
	}
	if !regexp.MustCompile(`"path":"/admin/v1/disable".*"decision":"deny","code":"unauthorized".*"status":401`).MatchString(tg.audit.String()) {
		t.Errorf("no audit line for the refused admin call")
	}

	ready := adminGetToken(t, tg, "/readyz", token)
	if !strings.Contains(ready, `"status":"ready"`) || !strings.Contains(ready, `"kill_switch":{"backend":"memory","disabled":[{"kind":"rule","name":"api","by":"alice","reason":"INC-42"`) {
		t.Errorf("/readyz: %s", ready)
	}
	metrics := adminGet(t, tg, "/metrics")
	for _, want := range []string{
		`credgate_switches_disabled{kind="rule"} 1`,
		`credgate_switch_refusals_total{kind="rule"} 1`,
		`credgate_refusals_total{code="disabled"} 1`,
		`credgate_admin_requests_total{action="disable",result="unauthorized"} 2`,
		`credgate_admin_requests_total{action="disable",result="ok"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, "credgate_switch_last_sync") {
		t.Error("credgate_switch_last_sync_timestamp_seconds without cache.redis")
	}

	// Unknown names are accepted with a warning; bad ones are not.
	st, _, body = adminCall(t, tg, "/admin/v1/disable", token, `{"kind":"workload","name":"ghost"}`)
	if w, _ := body["warnings"].([]any); st != 200 || len(w) == 0 || !strings.Contains(w[0].(string), "not in the policy in force") {
		t.Errorf("unknown workload: %d %v", st, body)
	}
	for _, bad := range []string{`{"kind":"host","name":"x"}`, `{"kind":"rule","name":"a b"}`, `{"kind":"rule"}`, `{"kind":"rule","name":"x","extra":1}`, `not json`} {
		if st, code, _ := adminCall(t, tg, "/admin/v1/disable", token, bad); st != 400 || code != codeAdminBadReq {
			t.Errorf("%s: %d %s, want 400 bad_request", bad, st, code)
		}
	}
	if resp, err := http.Get("http://" + tg.gw.AdminAddr().String() + "/admin/v1/disable"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /admin/v1/disable: %v %v", resp.Status, err)
	}
	list := adminGetToken(t, tg, "/admin/v1/switches", token)
	if !strings.Contains(list, `"name":"ghost"`) || !strings.Contains(list, `"name":"api"`) {
		t.Errorf("GET /admin/v1/switches: %s", list)
	}

	// The state file has both.
	sf, _ := os.ReadFile(state)
	if !strings.Contains(string(sf), `"name": "ghost"`) {
		t.Errorf("state file: %s", sf)
	}

	st, _, body = adminCall(t, tg, "/admin/v1/enable", token, `{"kind":"rule","name":"api","by":"bob"}`)
	if st != 200 || body["changed"] != true {
		t.Fatalf("enable: %d %v", st, body)
	}
	if resp, _ := get("/v1/after-enable"); resp.StatusCode != 200 {
		t.Errorf("after enable: %s", resp.Status)
	}
	st, _, body = adminCall(t, tg, "/admin/v1/enable", token, `{"kind":"rule","name":"api"}`)
	if st != 200 || body["changed"] != false {
		t.Errorf("second enable: %d %v", st, body)
	}
}

func TestKillSwitchClosesTunnels(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", token)
	tg := startSwitchGateway(t, "admin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n")

	// A spliced tunnel, open and working.
	conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", tunnelHost, tunnelHost)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: tunnelHost, RootCAs: tg.pki.pool})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}

	st, _, body := adminCall(t, tg, "/admin/v1/disable", token, `{"kind":"workload","name":"local","reason":"compromised"}`)
	if st != 200 {
		t.Fatalf("disable: %d %v", st, body)
	}
	// The tunnel is closed by the gateway.
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("the open tunnel of a disabled workload was not closed: %v", err)
	}
	if !strings.Contains(tg.logs.String(), "closed open tunnels and WebSockets") {
		t.Error("no log line about closed tunnels")
	}

	// New CONNECTs and requests of the workload are refused.
	pu, _ := url.Parse("http://" + tg.gw.ProxyAddr().String())
	var connectCode string
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: tg.pki.pool},
		OnProxyConnectResponse: func(_ context.Context, _ *url.URL, _ *http.Request, r *http.Response) error {
			connectCode = r.Header.Get(ReasonHeader)
			return nil
		}}
	defer tr.CloseIdleConnections()
	if _, err := (&http.Client{Transport: tr}).Get("https://" + tunnelHost + "/"); err == nil || connectCode != codeDisabled {
		t.Errorf("CONNECT of a disabled workload: %v, reason %q", err, connectCode)
	}
	waitFor(t, 5*time.Second, "the CONNECT refusal's audit line", func() bool {
		return regexp.MustCompile(`"method":"CONNECT".*"code":"disabled".*"status":403.*"switch":"workload:local"`).MatchString(tg.audit.String())
	})
}

func TestAdminConfig(t *testing.T) {
	if _, err := ParseConfig("c.yaml", []byte("policy: p.yaml\nca: {cert: c, key: k}\nadmin:\n  token_file: t\n  token_env: T\n")); err == nil ||
		!regexp.MustCompile(`^c\.yaml:3:1: admin: set token_file or token_env, not both`).MatchString(err.Error()) {
		t.Errorf("both token sources: %v", err)
	}
	cfg, err := ParseConfig("/etc/credgate/c.yaml", []byte("policy: p.yaml\nca: {cert: c, key: k}\nadmin:\n  token_file: t\n  state_file: s.json\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.TokenFile != "/etc/credgate/t" || cfg.Admin.StateFile != "/etc/credgate/s.json" || cfg.Admin.ResyncInterval.D() != DefaultSwitchResync {
		t.Errorf("admin = %+v", cfg.Admin)
	}
	t.Setenv("CREDGATE_SHORT_TOKEN", "short")
	if _, err := newAdminToken(Admin{TokenEnv: "CREDGATE_SHORT_TOKEN"}); err == nil || strings.Contains(err.Error(), "short\"") ||
		!strings.Contains(err.Error(), "$CREDGATE_SHORT_TOKEN holds 5 characters") {
		t.Errorf("short token: %v", err)
	}
	if _, err := newAdminToken(Admin{TokenFile: "/nonexistent/token"}); err == nil {
		t.Error("missing token file accepted")
	}
}

// BenchmarkKillSwitchOverhead is BenchmarkInjectKeepAlive with nothing
// disabled and then with 1000 unrelated switches in force (every request
// does the three lookups and misses): the two figures should not differ
// beyond noise.
func BenchmarkKillSwitchOverhead(b *testing.B) {
	tg := startGateway(b)
	c := tg.client(b, false)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	url := "https://" + apiHost + "/v1/bench"
	run := func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %s", resp.Status)
					return
				}
			}
		})
	}
	set := func(on bool) {
		for i := range 1000 {
			k, name := killswitch.Kinds[i%3], fmt.Sprintf("unrelated-%d", i)
			var err error
			if on {
				_, err = tg.gw.switches.Disable(context.Background(), killswitch.Entry{Kind: k, Name: name})
			} else {
				_, err = tg.gw.switches.Enable(context.Background(), k, name)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	// Alternated, so that drift on a shared machine shows as such.
	for range 2 {
		b.Run("none", run)
		set(true)
		b.Run("1000-unrelated", run)
		set(false)
	}
}
