package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

// TestKillSwitchCutsRequestsInFlight checks the class "no request that a
// kill switch covers keeps running after the switch": a streamed response
// (server-sent events, an LLM's streamed answer, a gRPC stream over
// HTTP/2) was decided once, when it began, and would otherwise go on for
// as long as the upstream streams it. A disable of its rule, workload or
// credential cuts it, over HTTP/1.1 and HTTP/2, and the audit line says
// why (disabled_in_flight and the switch); a switch that does not cover
// it leaves it alone. The same holds for a WebSocket upgrade request the
// upstream answers with an ordinary streamed response instead of 101:
// it was registered nowhere (neither in flight nor as a long-lived
// connection), so a client could keep any stream past a switch by asking
// for an upgrade.
func TestKillSwitchCutsRequestsInFlight(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", token)
	tg := startSwitchGateway(t, "admin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n")
	for _, v := range []struct{ h2, upgrade bool }{{false, false}, {true, false}, {false, true}} {
		h2 := v.h2
		for _, tc := range []struct {
			kind, name string
			cut        bool
		}{
			{"rule", "api", true},
			{"workload", "local", true},
			{"credential", "token", true},
			{"rule", "tunnel", false},
			{"credential", "missing", false},
		} {
			t.Run(fmt.Sprintf("h2=%v/upgrade=%v/%s:%s", h2, v.upgrade, tc.kind, tc.name), func(t *testing.T) {
				c := tg.client(t, h2)
				req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+"/stream", nil)
				if v.upgrade {
					req.Header.Set("Connection", "Upgrade")
					req.Header.Set("Upgrade", "websocket")
					req.Header.Set("Sec-WebSocket-Version", "13")
					req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				if first, err := br.ReadString('\n'); err != nil || first != "first\n" {
					t.Fatalf("first chunk %q, %v", first, err)
				}
				before := strings.Count(tg.audit.String(), `"code":"disabled_in_flight"`)
				sw := fmt.Sprintf(`{"kind":%q,"name":%q,"reason":"test"}`, tc.kind, tc.name)
				if st, _, body := adminCall(t, tg, "/admin/v1/disable", token, sw); st != 200 {
					t.Fatalf("disable: %d %v", st, body)
				}
				enabled := false
				enable := func() {
					if enabled {
						return
					}
					enabled = true
					if st, _, body := adminCall(t, tg, "/admin/v1/enable", token, sw); st != 200 {
						t.Errorf("enable: %d %v", st, body)
					}
				}
				t.Cleanup(enable)
				if !tc.cut {
					// The origin finishes the stream when asked to.
					ack, err := tg.client(t, false).Get("https://" + apiHost + "/stream-ack")
					if err != nil {
						t.Fatal(err)
					}
					ack.Body.Close()
				}
				start := time.Now()
				type result struct {
					s   string
					err error
				}
				done := make(chan result, 1)
				go func() {
					s, err := br.ReadString('\n')
					done <- result{s, err}
				}()
				var r result
				select {
				case r = <-done:
				case <-time.After(15 * time.Second):
					t.Fatal("the stream neither ended nor went on")
				}
				if !tc.cut {
					if r.err != nil || r.s != "second\n" {
						t.Fatalf("a switch that does not cover the stream cut it: %q, %v", r.s, r.err)
					}
					return
				}
				if r.err == nil {
					t.Fatalf("the stream went on after its %s was disabled: read %q after %s", tc.kind, r.s, time.Since(start).Round(time.Millisecond))
				}
				if r.err == io.EOF {
					t.Errorf("the stream was ended cleanly (io.EOF) after its %s was disabled: a cut stream must not look complete", tc.kind)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("the stream was cut %s after the switch, want about a second at most", d.Round(time.Millisecond))
				}
				defer func() {
					if t.Failed() { // what was audited instead
						for _, l := range strings.Split(tg.audit.String(), "\n") {
							if strings.Contains(l, `"path":"/stream"`) {
								t.Log(l)
							}
						}
					}
				}()
				waitFor(t, 5*time.Second, "the audit line of the cut request", func() bool {
					return strings.Count(tg.audit.String(), `"code":"disabled_in_flight"`) > before
				})
				var line string
				for _, l := range strings.Split(tg.audit.String(), "\n") {
					if strings.Contains(l, `"path":"/stream"`) && strings.Contains(l, `"code":"disabled_in_flight"`) {
						line = l
					}
				}
				if want := fmt.Sprintf(`"switch":"%s:%s"`, tc.kind, tc.name); !strings.Contains(line, want) {
					t.Errorf("the cut request's audit line does not name the switch (%s): %s", want, line)
				}

				// The origin's handler ended with the cancelled upstream
				// request: no ack is left for the next stream.
				enable()
			})
		}
	}
}

// TestKillSwitchCutsStreamedBodies: a request whose client is still
// streaming its body (a gRPC client stream) when a switch covers it is
// cancelled upstream and answered 502 disabled_in_flight (not 403
// disabled: it had reached the upstream), over HTTP/1.1 and HTTP/2.
func TestKillSwitchCutsStreamedBodies(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", token)
	tg := startSwitchGateway(t, "admin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n")
	got := make(chan struct{}, 1)
	tg.origin.route("/upload", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return
		}
		got <- struct{}{}
		_, _ = io.Copy(io.Discard, r.Body) // until the client ends or the gateway cancels
		fmt.Fprint(w, "uploaded")
	})
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			pr, pw := io.Pipe()
			defer pw.Close()
			req, _ := http.NewRequest(http.MethodPost, "https://"+apiHost+"/upload", pr)
			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := tg.client(t, h2).Do(req)
				done <- result{resp, err}
			}()
			if _, err := pw.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("the origin did not get the first bytes")
			}
			sw := `{"kind":"rule","name":"api","reason":"test"}`
			if st, _, body := adminCall(t, tg, "/admin/v1/disable", token, sw); st != 200 {
				t.Fatalf("disable: %d %v", st, body)
			}
			defer func() {
				if st, _, body := adminCall(t, tg, "/admin/v1/enable", token, sw); st != 200 {
					t.Errorf("enable: %d %v", st, body)
				}
			}()
			select {
			case r := <-done:
				if r.err != nil {
					t.Fatalf("the client got %v, want a 403", r.err)
				}
				r.resp.Body.Close()
				if r.resp.StatusCode != http.StatusBadGateway || r.resp.Header.Get(ReasonHeader) != codeDisabledInFlight {
					t.Fatalf("the client got %d %s, want 502 %s", r.resp.StatusCode, r.resp.Header.Get(ReasonHeader), codeDisabledInFlight)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("the streamed request went on after its rule was disabled; audit:\n%s\nlogs:\n%s", tg.audit.String(), tg.logs.String())
			}
		})
	}
}

// TestKillSwitchEndsCredentialWait: a request waiting for its credential
// (a provider that does not answer: a slow Vault, an OAuth2 server
// timing out) when a switch covering it is set — its rule, its
// credential, its workload — is answered at once 403 disabled, audited
// with the switch, and nothing reaches the origin. Before, it waited for
// the fetch (here 30 s, the fetch timeout) and was only then refused,
// the kill switch's promise (in force when credgate admin returns) kept
// for the upstream but not for the client; all three cases failed.
func TestKillSwitchEndsCredentialWait(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", token)
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	pol := strings.Replace(testPolicy, "credentials:\n", "credentials:\n  slow:\n    provider: gwtest-misfetch\n    do: hang\n", 1)
	pol = strings.Replace(pol, "rules:\n", "rules:\n  - name: slow\n    from: local\n    to: api\n    paths: [/slow/*]\n    inject: {credential: slow, as: bearer}\n", 1)
	writeFile(t, tg.dir, "policy.yaml", []byte(pol))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\ncache: {fetch_timeout: 30s}\nadmin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n", tg.origin.addr))
	t.Cleanup(func() {
		hungFetches.mu.Lock()
		close(hungFetches.ch)
		hungFetches.ch = make(chan struct{})
		hungFetches.mu.Unlock()
	})
	for _, sw := range []struct{ kind, name string }{{"rule", "slow"}, {"credential", "slow"}, {"workload", "local"}} {
		t.Run(sw.kind, func(t *testing.T) {
			path := "/slow/" + sw.kind
			type answer struct {
				status int
				code   string
				err    error
			}
			misses := counterValue(t, tg.gw.metrics.cacheResults[providers.CacheMiss])
			done := make(chan answer, 1)
			go func() {
				c := tg.client(t, false)
				c.Timeout = 60 * time.Second
				resp, err := c.Get("https://" + apiHost + path)
				if err != nil {
					done <- answer{err: err}
					return
				}
				resp.Body.Close()
				done <- answer{status: resp.StatusCode, code: resp.Header.Get(ReasonHeader)}
			}()
			// The request waits for its credential: the cache counts
			// its miss, then waits for the fetch.
			waitFor(t, 10*time.Second, "the request waiting for its credential", func() bool {
				return counterValue(t, tg.gw.metrics.cacheResults[providers.CacheMiss]) == misses+1
			})
			body := fmt.Sprintf(`{"kind":%q,"name":%q,"reason":"test"}`, sw.kind, sw.name)
			if st, _, b := adminCall(t, tg, "/admin/v1/disable", token, body); st != http.StatusOK {
				t.Fatalf("disable: %d %v", st, b)
			}
			defer func() {
				if st, _, b := adminCall(t, tg, "/admin/v1/enable", token, body); st != http.StatusOK {
					t.Errorf("enable: %d %v", st, b)
				}
			}()
			select {
			case a := <-done:
				if a.err != nil || a.status != http.StatusForbidden || a.code != codeDisabled {
					t.Errorf("answered %d %q (%v), want 403 %s", a.status, a.code, a.err, codeDisabled)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the request still waits for its credential 10 s after the switch covering it was set")
			}
			wantAudited(t, tg, path, http.StatusForbidden, codeDisabled)
			if !strings.Contains(tg.audit.String(), fmt.Sprintf(`"switch":"%s:%s"`, sw.kind, sw.name)) {
				t.Errorf("no audit line names the switch %s:%s", sw.kind, sw.name)
			}
			for _, s := range tg.origin.all() {
				if strings.HasPrefix(s.Path, "/slow/") {
					t.Errorf("the origin received %s %s", s.Method, s.URI)
				}
			}
		})
	}
}
