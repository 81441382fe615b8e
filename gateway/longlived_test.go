package gateway

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/policy"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// connectTLS opens a CONNECT tunnel to host:443 through the plain
// listener (with a Proxy-Authorization bearer when set) and does TLS in
// it with ALPN http/1.1, trusting roots.
func connectTLS(t *testing.T, tg *testGateway, host, bearer string, roots *x509.CertPool) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	auth := ""
	if bearer != "" {
		auth = "Proxy-Authorization: Bearer " + bearer + "\r\n"
	}
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n%s\r\n", host, host, auth)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %v %v", host, resp, err)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: host, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc, bufio.NewReader(tc)
}

// longClient is one open long-lived connection as its client sees it.
type longClient struct {
	c  *tls.Conn
	br *bufio.Reader
	// alive does a round trip over the connection and reports whether it
	// worked.
	alive func() bool
}

// openLongClient opens a long-lived connection of kind: a spliced tunnel
// to tunnelHost (HTTP requests inside) or a WebSocket to apiHost/ws (an
// echo protocol).
func openLongClient(t *testing.T, tg *testGateway, kind, bearer string) *longClient {
	t.Helper()
	if kind == kindTunnel {
		tc, br := connectTLS(t, tg, tunnelHost, bearer, tg.pki.pool)
		lc := &longClient{c: tc, br: br}
		lc.alive = func() bool {
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := fmt.Fprintf(tc, "GET /alive HTTP/1.1\r\nHost: %s\r\n\r\n", tunnelHost); err != nil {
				return false
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return false
			}
			_, err = io.Copy(io.Discard, resp.Body)
			return err == nil && resp.StatusCode == 200
		}
		return lc
	}
	tc, br := connectTLS(t, tg, apiHost, bearer, tg.caPool)
	fmt.Fprintf(tc, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", apiHost)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	lc := &longClient{c: tc, br: br}
	lc.alive = func() bool {
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprint(tc, "ping\n"); err != nil {
			return false
		}
		line, err := readEcho(br)
		return err == nil && line == "echo: ping\n"
	}
	return lc
}

// closedByGateway reports whether the gateway closed the connection
// (EOF or a reset within the wait), as opposed to a read timeout.
func (lc *longClient) closedByGateway(within time.Duration) bool {
	_ = lc.c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, lc.br)
	return err == nil || !isTimeout(err)
}

// metric returns the /metrics line that starts with prefix.
func metric(t *testing.T, tg *testGateway, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(adminGet(t, tg, "/metrics"), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestCheckUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name      string
		method    string
		minor     int
		header    http.Header
		websocket bool
		refused   string // a word the reason must contain; "" if accepted
	}{
		{"no upgrade", "GET", 1, http.Header{}, false, ""},
		{"connection upgrade without Upgrade", "GET", 1, http.Header{"Connection": {"upgrade"}}, false, ""},
		{"empty Upgrade", "GET", 1, http.Header{"Upgrade": {" , "}, "Connection": {"upgrade"}}, false, ""},
		{"websocket", "GET", 1, http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Key": {wsKey}}, true, ""},
		{"WebSocket, keep-alive", "GET", 1, http.Header{"Upgrade": {"WebSocket"}, "Connection": {"keep-alive, Upgrade"}, "Sec-Websocket-Key": {wsKey}}, true, ""},
		{"WEBSOCKET twice", "GET", 1, http.Header{"Upgrade": {"WEBSOCKET", "websocket"}, "Connection": {"upgrade"}, "Sec-Websocket-Key": {wsKey}}, true, ""},
		{"h2c", "GET", 1, http.Header{"Upgrade": {"h2c"}, "Connection": {"Upgrade, HTTP2-Settings"}, "Http2-Settings": {"AAMAAABkAAQAAP__"}}, false, `"h2c"`},
		{"H2C", "GET", 1, http.Header{"Upgrade": {"H2C"}, "Connection": {"upgrade"}}, false, `"H2C"`},
		{"websocket, h2c", "GET", 1, http.Header{"Upgrade": {"websocket, h2c"}, "Connection": {"upgrade"}}, false, `"h2c"`},
		{"h2c then websocket fields", "GET", 1, http.Header{"Upgrade": {"websocket", "h2c"}, "Connection": {"upgrade"}}, false, `"h2c"`},
		{"versioned websocket", "GET", 1, http.Header{"Upgrade": {"websocket/13"}, "Connection": {"upgrade"}}, false, `"websocket/13"`},
		{"TLS/1.0", "GET", 1, http.Header{"Upgrade": {"TLS/1.0"}, "Connection": {"upgrade"}}, false, `"TLS/1.0"`},
		{"websocket without Sec-WebSocket-Key", "GET", 1, http.Header{"Upgrade": {"websocket"}, "Connection": {"upgrade"}}, false, "Sec-WebSocket-Key"},
		{"websocket with a short key", "GET", 1, http.Header{"Upgrade": {"websocket"}, "Connection": {"upgrade"}, "Sec-Websocket-Key": {"dGVzdA=="}}, false, "Sec-WebSocket-Key"},
		{"websocket without Connection: upgrade", "GET", 1, http.Header{"Upgrade": {"websocket"}}, false, "Connection: upgrade"},
		{"websocket on POST", "POST", 1, http.Header{"Upgrade": {"websocket"}, "Connection": {"upgrade"}}, false, "GET"},
		{"websocket over HTTP/1.0", "GET", 0, http.Header{"Upgrade": {"websocket"}, "Connection": {"upgrade"}}, false, "HTTP/1.1"},
		{"CONNECT in the tunnel", "CONNECT", 1, http.Header{}, false, "CONNECT"},
		{"extended CONNECT", "CONNECT", 1, http.Header{":protocol": {"websocket"}}, false, "extended CONNECT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{Method: tc.method, ProtoMajor: 1, ProtoMinor: tc.minor, Header: tc.header}
			ws, f := checkUpgrade(r)
			if ws != tc.websocket {
				t.Errorf("websocket = %v, want %v", ws, tc.websocket)
			}
			switch {
			case tc.refused == "" && f != nil:
				t.Errorf("refused: %s", f.Reason)
			case tc.refused != "" && f == nil:
				t.Errorf("accepted, want a refusal naming %s", tc.refused)
			case f != nil && (f.Code != codeUpgradeNotAllowed || f.Status != http.StatusBadRequest || !strings.Contains(f.Reason, tc.refused)):
				t.Errorf("refusal %d %s %q, want 400 %s naming %s", f.Status, f.Code, f.Reason, codeUpgradeNotAllowed, tc.refused)
			}
		})
	}
}

// TestUpgradeSpellingsThroughGateway sends each spelling of an upgrade
// inside an intercepted tunnel to an origin that switches to whatever it
// is asked: only WebSocket is relayed; nothing else reaches the origin.
func TestUpgradeSpellingsThroughGateway(t *testing.T) {
	tg := startGateway(t)
	for _, tc := range []struct {
		name       string
		request    string // request line and fields, without the Host and the blank line
		wantStatus int
		wantCode   string
		reachesOrg bool
	}{
		{"h2c", "GET /upgrade-any HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__", 400, codeUpgradeNotAllowed, false},
		{"websocket, h2c", "GET /upgrade-any HTTP/1.1\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade", 400, codeUpgradeNotAllowed, false},
		{"h2c in a second field", "GET /upgrade-any HTTP/1.1\r\nUpgrade: websocket\r\nUpgrade: H2c\r\nConnection: Upgrade", 400, codeUpgradeNotAllowed, false},
		{"websocket without Connection", "GET /upgrade-any HTTP/1.1\r\nUpgrade: websocket", 400, codeUpgradeNotAllowed, false},
		{"websocket on POST", "POST /upgrade-any HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0", 400, codeUpgradeNotAllowed, false},
		{"CONNECT in the tunnel", "CONNECT api.origin.test:443 HTTP/1.1", 400, policy.CodeBadMethod, false},
		{"Connection: upgrade alone", "GET /upgrade-any HTTP/1.1\r\nConnection: upgrade", 200, "", true},
		{"upstream switches to h2c", "GET /ws-wrong HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", 502, codeUpstreamError, true},
		{"WebSocket, any case", "GET /ws HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", 101, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tg.origin.all())
			tc2, br := h1Tunnel(t, tg)
			host := "\r\nHost: " + apiHost
			if strings.HasPrefix(tc.request, "CONNECT") {
				host = "\r\nHost: " + apiHost + ":443"
			}
			fmt.Fprintf(tc2, "%s%s\r\n\r\n", tc.request, host)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || resp.Header.Get(ReasonHeader) != tc.wantCode {
				t.Fatalf("got %s %q, want %d %q", resp.Status, resp.Header.Get(ReasonHeader), tc.wantStatus, tc.wantCode)
			}
			if tc.wantStatus == 101 {
				fmt.Fprint(tc2, "ping\n")
				if line, err := readEcho(br); err != nil || line != "echo: ping\n" {
					t.Errorf("after the upgrade read %q, %v", line, err)
				}
				seen := tg.origin.all()[before]
				if seen.Header.Get("Upgrade") != "websocket" || seen.Header.Get("Authorization") != "Bearer "+tg.token {
					t.Errorf("origin saw Upgrade %q, credential set %v", seen.Header.Get("Upgrade"), seen.Header.Get("Authorization") != "")
				}
			} else {
				body, _ := io.ReadAll(resp.Body)
				if strings.Contains(string(body), "unchecked bytes") {
					t.Errorf("the client got the origin's switched bytes: %q", body)
				}
			}
			if got := len(tg.origin.all()) - before; (got > 0) != tc.reachesOrg {
				t.Errorf("origin saw %d requests; want reached=%v", got, tc.reachesOrg)
			}
		})
	}
	waitFor(t, 5*time.Second, "the upgrade refusals' audit lines", func() bool {
		return strings.Count(tg.audit.String(), `"code":"upgrade_not_allowed"`) == 5
	})
}

// TestH2CUpgradeFromGoClient: a Go client asking for h2c through the
// gateway, as an application would, is refused before the origin (which
// would accept) sees anything.
func TestH2CUpgradeFromGoClient(t *testing.T) {
	tg := startGateway(t)
	req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+"/upgrade-any", nil)
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
	req.Header.Set("HTTP2-Settings", "AAMAAABkAAQAAP__")
	resp, err := tg.client(t, false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get(ReasonHeader) != codeUpgradeNotAllowed || !strings.Contains(string(body), `\"h2c\"`) {
		t.Errorf("got %s %s %s, want 400 %s naming h2c", resp.Status, resp.Header.Get(ReasonHeader), body, codeUpgradeNotAllowed)
	}
	if n := len(tg.origin.all()); n != 0 {
		t.Errorf("origin saw %d requests", n)
	}
}

func TestLongConnDue(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		expires    time.Time
		idle, max  time.Duration
		last, now  time.Time
		wantReason string
		wantWait   time.Duration
	}{
		{"nothing set", time.Time{}, 0, 0, t0, t0.Add(time.Hour), "", -1},
		{"identity expires first", t0.Add(time.Minute), time.Hour, 2 * time.Hour, t0, t0, "", time.Minute},
		{"identity expired", t0.Add(time.Minute), time.Hour, 2 * time.Hour, t0, t0.Add(time.Minute), closedIdentityExpired, 0},
		{"idle next", time.Time{}, time.Minute, time.Hour, t0.Add(30 * time.Second), t0.Add(40 * time.Second), "", 50 * time.Second},
		{"idle reached", time.Time{}, time.Minute, time.Hour, t0, t0.Add(time.Minute), closedIdle, 0},
		{"max lifetime reached while busy", time.Time{}, time.Minute, time.Hour, t0.Add(time.Hour), t0.Add(time.Hour), closedMaxLifetime, 0},
		{"expiry wins over max lifetime", t0.Add(time.Hour), time.Minute, time.Hour, t0, t0.Add(time.Hour), closedIdentityExpired, 0},
		{"max lifetime next", time.Time{}, time.Hour, 90 * time.Minute, t0.Add(80 * time.Minute), t0.Add(85 * time.Minute), "", 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc := &longConn{opened: t0, expires: tc.expires, idle: tc.idle, maxLife: tc.max}
			lc.last.Store(int64(tc.last.Sub(t0)))
			reason, wait := lc.due(tc.now, tc.now.Sub(t0))
			if reason != tc.wantReason || wait != tc.wantWait {
				t.Errorf("due = %q, %s; want %q, %s", reason, wait, tc.wantReason, tc.wantWait)
			}
		})
	}
}

// TestLongConnDueClockSteps: the wall clock stepping (NTP correcting a
// drifted clock, an operator setting it, a VM resumed from a snapshot)
// while a long-lived connection is open moves neither its idle_timeout
// nor its max_lifetime, which are measured on the monotonic clock; only
// the identity's expiry, a wall-clock instant like the token's exp, is
// judged on the wall clock. Before the fix the idle limit was compared in
// wall-clock time (the last byte's time as Unix nanoseconds): a step
// forward of more than idle_timeout closed every open tunnel and
// WebSocket at once as idle, a step back kept idle ones open for the
// step's length beyond the limit.
func TestLongConnDueClockSteps(t *testing.T) {
	t0 := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)
	const idle, maxLife = 15 * time.Minute, 24 * time.Hour
	for _, tc := range []struct {
		name string
		// expires is the identity's expiry (zero: none); lastByte the
		// monotonic time since opened of the last byte; elapsed the
		// monotonic time since opened now; step how far the wall clock
		// was moved meanwhile.
		expires                 time.Time
		lastByte, elapsed, step time.Duration
		wantReason              string
		wantWait                time.Duration
	}{
		{"busy, wall clock steps forward an hour", time.Time{}, 10 * time.Minute, 11 * time.Minute, time.Hour, "", 14 * time.Minute},
		{"busy, wall clock steps forward a day", time.Time{}, 10 * time.Minute, 11 * time.Minute, 24 * time.Hour, "", 14 * time.Minute},
		{"idle, wall clock steps back an hour", time.Time{}, 0, 16 * time.Minute, -time.Hour, closedIdle, 0},
		{"idle, wall clock steps back a day", time.Time{}, 0, 20 * time.Minute, -24 * time.Hour, closedIdle, 0},
		{"young, wall clock steps forward past max_lifetime", time.Time{}, time.Hour, time.Hour, 25 * time.Hour, "", idle},
		{"old, wall clock steps back past max_lifetime", time.Time{}, maxLife, maxLife, -25 * time.Hour, closedMaxLifetime, 0},
		{"identity expiry follows the wall clock forward", t0.Add(2 * time.Hour), time.Minute, time.Minute, 2 * time.Hour, closedIdentityExpired, 0},
		{"identity expiry follows the wall clock back", t0.Add(2 * time.Hour), time.Minute, 2 * time.Minute, -time.Hour, "", 14 * time.Minute},
		{"identity expiry next on the wall clock", t0.Add(30 * time.Minute), 20 * time.Minute, 20 * time.Minute, 5 * time.Minute, "", 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc := &longConn{opened: t0, expires: tc.expires, idle: idle, maxLife: maxLife}
			lc.last.Store(int64(tc.lastByte))
			now := t0.Add(tc.elapsed + tc.step)
			reason, wait := lc.due(now, tc.elapsed)
			if reason != tc.wantReason || wait != tc.wantWait {
				t.Errorf("due = %q, %s; want %q, %s", reason, wait, tc.wantReason, tc.wantWait)
			}
		})
	}
}

// TestLongLivedKillSwitch: a kill switch on the rule, the workload or the
// credential that allowed a spliced tunnel or a WebSocket closes it; one
// on something else leaves it open.
func TestLongLivedKillSwitch(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", token)
	tg := startSwitchGateway(t, "admin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n")
	for _, tc := range []struct {
		kind       string
		switchKind string
		name       string
		closed     bool
	}{
		{kindTunnel, "rule", "tunnel", true},
		{kindTunnel, "workload", "local", true},
		{kindTunnel, "credential", "token", false}, // a tunnel carries no credential
		{kindTunnel, "rule", "api", false},
		{kindWebSocket, "rule", "api", true},
		{kindWebSocket, "workload", "local", true},
		{kindWebSocket, "credential", "token", true},
		{kindWebSocket, "rule", "tunnel", false},
		{kindWebSocket, "credential", "missing", false},
	} {
		t.Run(tc.kind+"/"+tc.switchKind+":"+tc.name, func(t *testing.T) {
			lc := openLongClient(t, tg, tc.kind, "")
			if !lc.alive() {
				t.Fatal("the connection does not work before the switch")
			}
			before := strings.Count(tg.audit.String(), `"closed":"kill_switch"`)
			sw := fmt.Sprintf(`{"kind":%q,"name":%q,"reason":"test"}`, tc.switchKind, tc.name)
			if st, _, body := adminCall(t, tg, "/admin/v1/disable", token, sw); st != 200 {
				t.Fatalf("disable: %d %v", st, body)
			}
			t.Cleanup(func() {
				if st, _, body := adminCall(t, tg, "/admin/v1/enable", token, sw); st != 200 {
					t.Errorf("enable: %d %v", st, body)
				}
			})
			if tc.closed {
				if !lc.closedByGateway(5 * time.Second) {
					t.Fatal("the connection was not closed")
				}
				waitFor(t, 5*time.Second, "the close's audit line", func() bool {
					return strings.Count(tg.audit.String(), `"closed":"kill_switch"`) > before
				})
			} else if !lc.alive() {
				t.Fatal("the connection was closed by a switch that does not cover it")
			}
		})
	}
	for _, kind := range longKinds {
		want := fmt.Sprintf(`credgate_long_lived_closed_total{kind=%q,reason="kill_switch"} 3`, kind)
		if kind == kindTunnel {
			want = fmt.Sprintf(`credgate_long_lived_closed_total{kind=%q,reason="kill_switch"} 2`, kind)
		}
		waitFor(t, 5*time.Second, want, func() bool { return metric(t, tg, want[:strings.LastIndexByte(want, ' ')]) == want })
	}
}

// TestLongLivedLimits: limits.long_lived closes a silent connection after
// idle_timeout and a busy one at max_lifetime, for each kind.
func TestLongLivedLimits(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\nlimits:\n  long_lived: {idle_timeout: 400ms, max_lifetime: 1500ms}\n", tg.origin.addr, tg.origin.addr))
	for _, kind := range longKinds {
		for _, reason := range []string{closedIdle, closedMaxLifetime} {
			t.Run(kind+"/"+reason, func(t *testing.T) {
				t.Parallel()
				lc := openLongClient(t, tg, kind, "")
				opened := time.Now()
				if reason == closedMaxLifetime {
					// Busy: a round trip every 100ms until the gateway
					// closes it.
					for lc.alive() {
						if time.Since(opened) > 10*time.Second {
							t.Fatal("a busy connection outlived max_lifetime")
						}
						time.Sleep(100 * time.Millisecond) // the client's pace, not synchronisation
					}
					if d := time.Since(opened); d < 1300*time.Millisecond {
						t.Errorf("closed after %s, before max_lifetime", d)
					}
				} else if !lc.closedByGateway(10 * time.Second) {
					t.Fatal("a silent connection outlived idle_timeout")
				}
				waitFor(t, 5*time.Second, "the close's audit line", func() bool {
					return regexp.MustCompile(`"decision":"(tunnel|inject)".*"closed":"` + reason + `"`).MatchString(tg.audit.String())
				})
			})
		}
	}
	t.Cleanup(func() {
		for _, kind := range longKinds {
			for _, reason := range []string{closedIdle, closedMaxLifetime} {
				prefix := fmt.Sprintf(`credgate_long_lived_closed_total{kind=%q,reason=%q}`, kind, reason)
				waitFor(t, 5*time.Second, prefix+" 1", func() bool { return metric(t, tg, prefix) == prefix+" 1" })
			}
			open := fmt.Sprintf(`credgate_long_lived_connections{kind=%q}`, kind)
			waitFor(t, 5*time.Second, open+" 0", func() bool { return metric(t, tg, open) == open+" 0" })
		}
	})
}

const expiryPolicy = `
workloads:
  jobs:
    namespace: jobs
    require: [jwt]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  tunnel:
    hosts: [tunnel.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: api
    from: jobs
    to: api
    inject: {credential: token, as: bearer}
  - name: tunnel
    from: jobs
    to: tunnel
    action: tunnel
default: deny
`

// TestLongLivedIdentityExpiry: a tunnel and a WebSocket opened with a
// JWT close when the token expires, though they are busy.
func TestLongLivedIdentityExpiry(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	signer, pub := newSigner(t)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	writeFile(t, tg.dir, "jwks.json", jwks)
	writeFile(t, tg.dir, "policy.yaml", []byte(expiryPolicy))
	tg.run(t, fmt.Sprintf(`resolve: {"api.origin.test:443": %q, "tunnel.origin.test:443": %q}
identity:
  jwt:
    clock_skew: 1s
    issuers:
      - issuer: https://k8s.test
        profile: kubernetes
        audiences: [credgate]
        jwks_file: jwks.json
`, tg.origin.addr, tg.origin.addr))
	// exp is in whole seconds: 2 to 3 seconds from now.
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second)
	tok, err := jwt.Signed(signer).Claims(map[string]any{
		"iss": "https://k8s.test", "aud": []string{"credgate"}, "sub": "system:serviceaccount:jobs:runner",
		"exp": exp.Unix(), "iat": time.Now().Unix(),
		"kubernetes.io": map[string]any{"namespace": "jobs", "serviceaccount": map[string]any{"name": "runner", "uid": "u"}},
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range longKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			lc := openLongClient(t, tg, kind, tok)
			var rounds atomic.Int64
			for lc.alive() {
				rounds.Add(1)
				if time.Now().After(exp.Add(5 * time.Second)) {
					t.Fatal("the connection outlived its identity")
				}
				time.Sleep(100 * time.Millisecond) // the client's pace, not synchronisation
			}
			if now := time.Now(); now.Before(exp) || rounds.Load() == 0 {
				t.Errorf("closed at %s after %d round trips; the identity expires at %s", now.Format(time.RFC3339Nano), rounds.Load(), exp)
			}
		})
	}
	t.Cleanup(func() {
		for _, kind := range longKinds {
			prefix := fmt.Sprintf(`credgate_long_lived_closed_total{kind=%q,reason="identity_expired"}`, kind)
			waitFor(t, 5*time.Second, prefix+" 1", func() bool { return metric(t, tg, prefix) == prefix+" 1" })
		}
		waitFor(t, 5*time.Second, "two identity_expired audit lines", func() bool {
			return strings.Count(tg.audit.String(), `"closed":"identity_expired"`) == 2
		})
	})
}

const bodyPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  plain:
    hosts: [plain.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: signed
    from: local
    to: api
    paths: [/signed/*]
    inject: {credential: token, as: sigv4, service: s3, region: us-east-1, unsigned_payload: false,
             access_key_field: token, secret_key_field: token}
  - name: plain
    from: local
    to: plain
    plaintext: true
    inject: {credential: token, as: bearer}
  - name: api
    from: local
    to: api
    inject: {credential: token, as: bearer}
default: deny
`

// TestBodyIdleTimeout: a client that sends the headers and part of a body,
// then stalls, is cut off after limits.body_idle_timeout on every kind of
// client connection, and one that trickles it below limits.body_min_rate
// too; the upstream request is cancelled (or, for a small body of
// declared length from an HTTP/1.1 client, which the upstream client
// reads whole first, never sent) and the audit line says body_timeout. A
// slow body with shorter pauses goes through.
func TestBodyIdleTimeout(t *testing.T) {
	pki := newTestPKI(t, apiHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	var plainErrs atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			plainErrs.Add(1)
			return
		}
		fmt.Fprintf(w, "len=%d", n)
	}))
	t.Cleanup(plain.Close)
	writeFile(t, tg.dir, "policy.yaml", []byte(bodyPolicy))
	tg.run(t, fmt.Sprintf("resolve: {\"api.origin.test:443\": %q, \"plain.origin.test:80\": %q}\nlimits: {body_idle_timeout: 300ms, body_min_rate: 1000}\n", tg.origin.addr, plain.Listener.Addr()))
	upstreamErrs := func() int64 {
		tg.origin.mu.Lock()
		defer tg.origin.mu.Unlock()
		return int64(tg.origin.bodyErrs) + plainErrs.Load()
	}

	// send posts a body written in parts with pause between them (or
	// only the first part, then nothing), over the client kind, and
	// returns the status.
	send := func(t *testing.T, kind string, parts []string, pause time.Duration, stallAfterFirst bool) int {
		t.Helper()
		if kind == "h1 loop" {
			tc, br := h1Tunnel(t, tg)
			fmt.Fprintf(tc, "POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", apiHost, len(strings.Join(parts, "")))
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for i, p := range parts {
					if i > 0 {
						if stallAfterFirst {
							return
						}
						select {
						case <-stop:
							return
						case <-time.After(pause): // the client's pace
						}
					}
					if _, err := fmt.Fprint(tc, p); err != nil {
						return
					}
				}
			}()
			resp, _ := readResp(t, br, http.MethodPost)
			return resp.StatusCode
		}
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		go func() {
			for i, p := range parts {
				if i > 0 {
					if stallAfterFirst {
						return // stalls until the test ends
					}
					time.Sleep(pause) // the client's pace, not synchronisation
				}
				if _, err := io.WriteString(pw, p); err != nil {
					return
				}
			}
			pw.Close()
		}()
		url := "https://" + apiHost + "/echo"
		if kind == "plain h1" {
			url = "http://plain.origin.test/echo"
		}
		req, _ := http.NewRequest(http.MethodPost, url, pr)
		resp, err := tg.client(t, kind == "h2").Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if kind == "h2" && resp.ProtoMajor != 2 {
			t.Errorf("the client spoke %s, want HTTP/2", resp.Proto)
		}
		return resp.StatusCode
	}

	// An injector that reads the body to sign it meets the stall first:
	// nothing reaches the upstream.
	t.Run("sigv4 reading the body/stalled", func(t *testing.T) {
		before := len(tg.origin.all())
		tc, br := h1Tunnel(t, tg)
		fmt.Fprintf(tc, "PUT /signed/object HTTP/1.1\r\nHost: %s\r\nContent-Length: 30\r\n\r\n0123456789", apiHost)
		resp, _ := readResp(t, br, http.MethodPut)
		if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(ReasonHeader) != codeBodyTimeout {
			t.Errorf("got %s %q, want 408 %s", resp.Status, resp.Header.Get(ReasonHeader), codeBodyTimeout)
		}
		if n := len(tg.origin.all()) - before; n != 0 {
			t.Errorf("the origin saw %d requests", n)
		}
	})

	steady := []string{"0123456789", "abcdefghij", "ABCDEFGHIJ"}
	trickle := strings.Split(strings.Repeat("x", 40), "")
	for _, kind := range []string{"h1 loop", "h2", "plain h1"} {
		for _, tc := range []struct {
			name    string
			parts   []string
			pause   time.Duration
			stall   bool
			cut     bool
			atLeast time.Duration
		}{
			{"stalled", steady, 0, true, true, 250 * time.Millisecond},
			{"trickled below body_min_rate", trickle, 100 * time.Millisecond, false, true, 250 * time.Millisecond},
			{"slow but steady", steady, 100 * time.Millisecond, false, false, 0},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				before, seen := upstreamErrs(), len(tg.origin.all())
				audits := strings.Count(tg.audit.String(), `"code":"body_timeout"`)
				start := time.Now()
				st := send(t, kind, tc.parts, tc.pause, tc.stall)
				if !tc.cut {
					if st != http.StatusOK {
						t.Errorf("status %d, want 200", st)
					}
					return
				}
				if st != http.StatusRequestTimeout {
					t.Errorf("status %d, want 408", st)
				}
				if d := time.Since(start); d < tc.atLeast || d > 3*time.Second {
					t.Errorf("cut off after %s", d)
				}
				if kind == "h1 loop" {
					// A small body of declared length: the upstream
					// client reads it whole before it takes a
					// connection, so nothing reached the upstream.
					if n := len(tg.origin.all()) - seen; n != 0 {
						t.Errorf("the origin saw %d requests", n)
					}
				} else {
					waitFor(t, 5*time.Second, "the upstream to see its request cancelled", func() bool { return upstreamErrs() > before })
				}
				waitFor(t, 5*time.Second, "a body_timeout audit line", func() bool {
					return strings.Count(tg.audit.String(), `"code":"body_timeout"`) > audits
				})
			})
		}
	}
}

func TestLimitsConfig(t *testing.T) {
	const head = "policy: p.yaml\nca: {cert: c, key: k}\n"
	for _, tc := range []struct {
		name, text string
		want       string // regexp over the error; "" for none
	}{
		{"defaults", "", ""},
		{"idle longer than max lifetime", "limits:\n  long_lived:\n    idle_timeout: 2h\n    max_lifetime: 1h\n", `^c\.yaml:5:5: limits\.long_lived\.idle_timeout \(2h0m0s\) is longer than max_lifetime \(1h0m0s\)`},
		{"idle longer than the default max lifetime", "limits:\n  long_lived: {idle_timeout: 48h}\n", `^c\.yaml:4:16: limits\.long_lived\.idle_timeout \(48h0m0s\) is longer than max_lifetime \(24h0m0s\)`},
		{"tiny max lifetime", "limits:\n  long_lived: {max_lifetime: 1ms}\n", `^c\.yaml:4:16: limits\.long_lived\.max_lifetime: 1ms is too short`},
		{"tiny body timeout", "limits:\n  body_idle_timeout: 10ms\n", `^c\.yaml:4:3: limits\.body_idle_timeout: 10ms is too short`},
		{"negative rate", "limits:\n  body_min_rate: -5\n", `^c\.yaml:4:3: limits\.body_min_rate must not be negative`},
		{"tiny response idle timeout", "upstream:\n  response_idle_timeout: 50ms\n", `^c\.yaml:4:3: upstream\.response_idle_timeout: 50ms is too short to be meant \(at least 100ms`},
		{"negative response idle timeout", "upstream: {response_idle_timeout: -1s}\n", `^c\.yaml:3:\d+: upstream\.response_idle_timeout: want a duration .*not negative`},
		{"unknown key", "limits:\n  long_lived: {max_age: 1h}\n", `^c\.yaml:4:16: unknown field "max_age"`},
		{"not a duration", "limits:\n  long_lived: {idle_timeout: forever}\n", `^c\.yaml:4:\d+: limits\.long_lived\.idle_timeout: want a duration`},
		{"response header bytes", "upstream: {max_response_header_bytes: 1048576}\n", ""},
		{"tiny response header bytes", "upstream:\n  max_response_header_bytes: 100\n", `^c\.yaml:4:3: upstream\.max_response_header_bytes: 100 is outside 1024 to 16777216 \(16 MiB\); leave it out for 65536`},
		{"huge response header bytes", "upstream: {max_response_header_bytes: 17000000}\n", `^c\.yaml:3:\d+: upstream\.max_response_header_bytes: 17000000 is outside`},
		{"negative response header bytes", "upstream: {max_response_header_bytes: -1}\n", `^c\.yaml:3:\d+: upstream\.max_response_header_bytes: -1 is outside`},
		{"cache max_ttl", "cache: {max_ttl: 2h, default_ttl: 2h}\n", ""},
		{"cache default_ttl over max_ttl", "cache:\n  max_ttl: 1h\n  default_ttl: 2h\n", `^c\.yaml:5:3: cache\.default_ttl \(2h0m0s\) is longer than cache\.max_ttl \(1h0m0s\)`},
		{"cache default_ttl over the default max_ttl", "cache: {default_ttl: 48h}\n", `^c\.yaml:3:\d+: cache\.default_ttl \(48h0m0s\) is longer than cache\.max_ttl \(24h0m0s\)`},
		{"cache tiny max_ttl", "cache: {max_ttl: 10ms}\n", `^c\.yaml:3:\d+: cache\.max_ttl: 10ms is too short to be meant`},
		{"cache negative max_ttl", "cache: {max_ttl: -1h}\n", `^c\.yaml:3:\d+: cache\.max_ttl: want a duration .*not negative`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("c.yaml", []byte(head+tc.text))
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want == "":
				l := cfg.Limits
				if l.BodyIdleTimeout.D() != DefaultBodyIdleTimeout || l.BodyMinRate != 0 ||
					l.LongLived.IdleTimeout.D() != DefaultLongLivedIdleTimeout || l.LongLived.MaxLifetime.D() != DefaultLongLivedMaxLifetime {
					t.Errorf("defaults: %+v", l)
				}
				if strings.Contains(tc.text, "max_ttl: 2h") && cfg.Cache.MaxTTL.D() != 2*time.Hour {
					t.Errorf("cache.max_ttl = %s, want 2h", cfg.Cache.MaxTTL.D())
				}
				wantHeader := int64(DefaultMaxResponseHeaderBytes)
				if strings.Contains(tc.text, "max_response_header_bytes") {
					wantHeader = 1 << 20
				}
				if n := cfg.Upstream.MaxResponseHeaderBytes; n != wantHeader {
					t.Errorf("upstream.max_response_header_bytes = %d, want %d", n, wantHeader)
				}
				if d := cfg.Upstream.ResponseIdleTimeout.D(); d != DefaultResponseIdleTimeout {
					t.Errorf("upstream.response_idle_timeout defaults to %s, want %s", d, DefaultResponseIdleTimeout)
				}
			case err == nil:
				t.Fatalf("no error, want %s", tc.want)
			case !regexp.MustCompile(tc.want).MatchString(err.Error()):
				t.Errorf("error %q does not match %s", err, tc.want)
			}
		})
	}
}

// TestLongLivedShutdown: at the end of shutdown_timeout the gateway closes
// the tunnels and WebSockets still open, and says so.
func TestLongLivedShutdown(t *testing.T) {
	tg := startSwitchGateway(t, "")
	for _, kind := range longKinds {
		if lc := openLongClient(t, tg, kind, ""); !lc.alive() {
			t.Fatalf("%s does not work", kind)
		}
	}
	if err := tg.stop(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"decision":"tunnel".*"closed":"shutdown"`, `"path":"/ws".*"status":101.*"closed":"shutdown"`} {
		// A relay's line may follow Run's return by a moment (the
		// audit output writes through once closed).
		waitFor(t, 5*time.Second, want, func() bool { return regexp.MustCompile(want).MatchString(tg.audit.String()) })
	}
}

// TestWebSocketPlainListener: a ws:// WebSocket sent to the plain
// listener as an absolute-URI request (net/http's server hijacks the
// connection) is a long-lived connection like one in a tunnel: relayed,
// then closed by a kill switch on its credential.
func TestWebSocketPlainListener(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", token)
	pki := newTestPKI(t, apiHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	var seenAuth atomic.Value
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenAuth.Store(r.Header.Get("Authorization"))
		wsEcho(w, r)
	}))
	t.Cleanup(plain.Close)
	writeFile(t, tg.dir, "policy.yaml", []byte(bodyPolicy))
	tg.run(t, fmt.Sprintf("resolve: {\"api.origin.test:443\": %q, \"plain.origin.test:80\": %q}\nadmin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n", tg.origin.addr, plain.Listener.Addr()))

	conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET http://plain.origin.test/ws HTTP/1.1\r\nHost: plain.origin.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(conn, "ping\n")
	if line, err := readEcho(br); err != nil || line != "echo: ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
	if seenAuth.Load() != "Bearer "+tg.token {
		t.Error("the upgrade request did not carry the injected credential")
	}
	if st, _, body := adminCall(t, tg, "/admin/v1/disable", token, `{"kind":"credential","name":"token"}`); st != 200 {
		t.Fatalf("disable: %d %v", st, body)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil && isTimeout(err) {
		t.Fatal("the WebSocket of a disabled credential is still open")
	}
	waitFor(t, 5*time.Second, "the WebSocket's audit line", func() bool {
		return regexp.MustCompile(`"scheme":"http".*"path":"/ws".*"credential":"token".*"status":101.*"closed":"kill_switch"`).MatchString(tg.audit.String())
	})
}

// closeRecorder is an io.Closer that records its first close.
type closeRecorder struct {
	once   sync.Once
	closed chan struct{}
}

func newCloseRecorder() *closeRecorder { return &closeRecorder{closed: make(chan struct{})} }

func (c *closeRecorder) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// TestLongConnReverify: at the identity's expiry the evidence is verified
// again: a later expiry keeps the connection open until then (a new
// TokenReview answer); a failure, or the same expiry (a token inside its
// clock-skew leeway), closes it as identity_expired.
func TestLongConnReverify(t *testing.T) {
	for _, tc := range []struct {
		name string
		// answers are reverify's results, in turn (offsets from start;
		// ok false ends the list).
		answers   []time.Duration
		wantAfter time.Duration
		wantCalls int32
	}{
		{"fails", nil, 100 * time.Millisecond, 1},
		{"same expiry", []time.Duration{100 * time.Millisecond}, 100 * time.Millisecond, 1},
		{"extended twice, then fails", []time.Duration{250 * time.Millisecond, 400 * time.Millisecond}, 400 * time.Millisecond, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			var calls atomic.Int32
			lc := &longConn{kind: kindWebSocket, expires: start.Add(100 * time.Millisecond), maxLife: time.Hour}
			lc.reverify = func() (time.Time, bool) {
				n := int(calls.Add(1))
				if n > len(tc.answers) {
					return time.Time{}, false
				}
				return start.Add(tc.answers[n-1]), true
			}
			c := newCloseRecorder()
			lc.start(c)
			select {
			case <-c.closed:
			case <-time.After(10 * time.Second):
				t.Fatal("not closed")
			}
			if d := time.Since(start); d < tc.wantAfter {
				t.Errorf("closed after %s, want at least %s", d, tc.wantAfter)
			}
			if got := lc.finish(); got != closedIdentityExpired {
				t.Errorf("reason %q", got)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("reverify called %d times, want %d", got, tc.wantCalls)
			}
		})
	}
}
