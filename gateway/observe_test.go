package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/policy/suggest"
)

// observeTestPolicy lets workload local reach api.origin.test's
// /v1/listed paths with a credential; MODE is its mode.
const observeTestPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    mode: MODE
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  tunnel:
    hosts: [tunnel.origin.test]
    allow_private: true
  blocked:
    hosts: [blocked.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
    placeholder: cg-observe-placeholder-1
rules:
  - name: listed
    from: local
    to: api
    paths: [/v1/listed*]
    inject: {credential: token, as: bearer}
  - name: blocked-sys
    from: local
    to: blocked
    paths: [/v1/sys*]
    action: deny
default: deny
`

// TestObserveMode: a workload in observe mode reaches a path the policy
// does not list, without a credential, and the request is audited as
// would_deny; in enforce mode the same request is refused. In both modes
// the allowed request gets its credential, a connection no rule names is
// not sent to a private address (nor is one only a deny rule names), a
// would_deny request carrying the credential's placeholder is refused
// (placeholder_misuse) with nothing substituted, and a kill switch still
// refuses. Over HTTP/1.1 and HTTP/2, each request on the connection (or
// beside the stream) whose request before it was injected.
func TestObserveMode(t *testing.T) {
	const adminToken = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", adminToken)
	type want struct {
		status     int
		reason     string // X-Credgate-Reason
		credential bool   // the origin saw the injected credential
		reached    bool   // the origin saw the request
		line       string // a regexp the request's audit line matches
	}
	tests := []struct {
		mode     string
		listed   want
		unlisted want
		noRule   want
		// denyMiss is a path a deny rule to a destination with
		// allow_private does not cover: the deny rule lets nobody
		// reach that destination, so its CONNECT is refused (enforce)
		// or would_deny (observe), and observe mode keeps the
		// connection off its private address.
		denyMiss want
		// phMiss is an unlisted path with the credential's placeholder
		// in a header: never substituted outside its rule.
		phMiss   want
		switched want
	}{
		{
			mode:     "observe",
			listed:   want{status: 200, credential: true, reached: true, line: `"path":"/v1/listed/1","rule":"listed","decision":"inject","code":""`},
			unlisted: want{status: 200, reached: true, line: `"path":"/v1/unlisted","rule":"","decision":"would_deny","code":"path_not_allowed",.*"status":200`},
			noRule:   want{status: 403, reason: codePrivateAddress, line: `"method":"CONNECT",.*"host":"tunnel.origin.test",.*"decision":"deny","code":"private_address"`},
			denyMiss: want{status: 403, reason: codePrivateAddress, line: `"method":"CONNECT",.*"host":"blocked.origin.test",.*"decision":"deny","code":"private_address"`},
			phMiss:   want{status: 403, reason: codePlaceholderMisuse, line: `"path":"/v1/unlisted-ph",.*"code":"placeholder_misuse"`},
			switched: want{status: 403, reason: codeDisabled, line: `"path":"/v1/unlisted-off",.*"decision":"deny","code":"disabled",.*"switch":"workload:local"`},
		},
		{
			mode:     "enforce",
			listed:   want{status: 200, credential: true, reached: true, line: `"path":"/v1/listed/1","rule":"listed","decision":"inject","code":""`},
			unlisted: want{status: 403, reason: "path_not_allowed", line: `"path":"/v1/unlisted","rule":"","decision":"deny","code":"path_not_allowed",.*"status":403`},
			noRule:   want{status: 403, reason: "no_rule", line: `"method":"CONNECT",.*"host":"tunnel.origin.test",.*"decision":"deny","code":"no_rule"`},
			denyMiss: want{status: 403, reason: "denied_by_rule", line: `"method":"CONNECT",.*"host":"blocked.origin.test",.*"decision":"deny","code":"denied_by_rule"`},
			phMiss:   want{status: 403, reason: codePlaceholderMisuse, line: `"path":"/v1/unlisted-ph",.*"code":"placeholder_misuse"`},
			// The policy refuses before the kill switch is consulted.
			switched: want{status: 403, reason: "path_not_allowed", line: `"path":"/v1/unlisted-off",.*"decision":"deny","code":"path_not_allowed"`},
		},
	}
	for _, tt := range tests {
		for _, h2 := range []bool{false, true} {
			name := tt.mode + "/http1"
			if h2 {
				name = tt.mode + "/h2"
			}
			t.Run(name, func(t *testing.T) {
				pki := newTestPKI(t, apiHost, tunnelHost, "blocked.origin.test", "credgate.test")
				tg := newTestGateway(t, pki, startOrigin(t, pki))
				writeFile(t, tg.dir, "policy.yaml", []byte(strings.Replace(observeTestPolicy, "MODE", tt.mode, 1)))
				tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\n  \"blocked.origin.test:443\": %q\nadmin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n", tg.origin.addr, tg.origin.addr, tg.origin.addr))
				c := tg.client(t, h2)
				check := func(url string, w want, hdr ...string) {
					t.Helper()
					before := len(tg.origin.all())
					req, err := http.NewRequest(http.MethodGet, url, nil)
					if err != nil {
						t.Fatal(err)
					}
					for i := 0; i+1 < len(hdr); i += 2 {
						req.Header.Set(hdr[i], hdr[i+1])
					}
					resp, err := c.Do(req)
					if err != nil {
						// A refused CONNECT surfaces as the transport's error.
						if w.status != 403 || !strings.Contains(err.Error(), "Forbidden") {
							t.Fatalf("GET %s: %v", url, err)
						}
					} else {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if h2 && resp.ProtoMajor != 2 {
							t.Errorf("GET %s: answered over %s, want HTTP/2", url, resp.Proto)
						}
						if resp.StatusCode != w.status || resp.Header.Get(ReasonHeader) != w.reason {
							t.Errorf("GET %s: %s %s, want %d %s", url, resp.Status, resp.Header.Get(ReasonHeader), w.status, w.reason)
						}
					}
					seen := tg.origin.all()[before:]
					if reached := len(seen) > 0; reached != w.reached {
						t.Errorf("GET %s: origin reached = %v, want %v", url, reached, w.reached)
					}
					for _, s := range seen {
						if got := s.Header.Get("Authorization") == "Bearer "+tg.token; got != w.credential {
							t.Errorf("GET %s: origin saw the credential = %v, want %v", url, got, w.credential)
						}
						if !w.credential && strings.Contains(fmt.Sprint(s.Header), tg.token) {
							t.Errorf("GET %s: the credential's value reached the origin in %v", url, s.Header)
						}
					}
					re := regexp.MustCompile(w.line)
					waitFor(t, 5*time.Second, "audit line "+w.line, func() bool { return re.MatchString(tg.audit.String()) })
				}
				check("https://"+apiHost+"/v1/listed/1", tt.listed)
				check("https://"+apiHost+"/v1/unlisted", tt.unlisted)
				check("https://"+tunnelHost+"/v1/anything", tt.noRule)
				check("https://blocked.origin.test/v1/other", tt.denyMiss)
				check("https://"+apiHost+"/v1/listed/2", tt.listed)
				check("https://"+apiHost+"/v1/unlisted-ph", tt.phMiss, "X-Api-Key", "cg-observe-placeholder-1")
				check("https://"+apiHost+"/v1/listed/3", tt.listed)
				check("https://"+apiHost+"/v1/unlisted", tt.unlisted)

				st, _, _ := adminCall(t, tg, "/admin/v1/disable", adminToken, `{"kind":"workload","name":"local","by":"test"}`)
				if st != http.StatusOK {
					t.Fatalf("disable workload: %d", st)
				}
				check("https://"+apiHost+"/v1/unlisted-off", tt.switched)

				metrics := adminGet(t, tg, "/metrics")
				wantMetric := `credgate_requests_total{decision="would_deny",rule="",status="200"} 2`
				if got := strings.Contains(metrics, wantMetric); got != (tt.mode == "observe") {
					t.Errorf("/metrics has %s = %v, want %v", wantMetric, got, tt.mode == "observe")
				}
			})
		}
	}
}

// TestSuggestFromRecordedRun: traffic recorded in observe mode, turned
// into a policy by policy suggest, is fully allowed (with its credential)
// by a gateway running that policy, and a request to a path or with a
// method never seen is refused.
func TestSuggestFromRecordedRun(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	origin := startOrigin(t, pki)
	resolve := fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", origin.addr)
	recorded := strings.Replace(observeTestPolicy, "MODE", "observe", 1)
	rec := newTestGateway(t, pki, origin)
	writeFile(t, rec.dir, "policy.yaml", []byte(recorded))
	rec.run(t, resolve)
	type call struct{ method, path string }
	seen := []call{{"GET", "/v1/listed/1"}, {"GET", "/v1/items/123"}, {"GET", "/v1/items/456"}, {"POST", "/v1/items"}}
	c := rec.client(t, false)
	do := func(c *http.Client, cl call) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(cl.method, "https://"+apiHost+cl.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, cl := range seen {
		if resp := do(c, cl); resp.StatusCode != 200 {
			t.Fatalf("recording %s %s: %s", cl.method, cl.path, resp.Status)
		}
	}
	waitFor(t, 5*time.Second, "the recorded audit lines", func() bool {
		return strings.Count(rec.audit.String(), `"decision":"would_deny"`) == 3
	})
	auditFile := writeFile(t, rec.dir, "audit.log", []byte(rec.audit.String()))
	var recs []audit.Record
	if err := audit.ReadRecords([]string{auditFile}, nil, func(r audit.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	var suggested bytes.Buffer
	if err := suggest.Write(&suggested, recs, suggest.Options{BaseFile: "policy.yaml", Base: []byte(recorded)}); err != nil {
		t.Fatal(err)
	}

	enf := newTestGateway(t, pki, origin)
	writeFile(t, enf.dir, "policy.yaml", suggested.Bytes())
	enf.run(t, resolve)
	ec := enf.client(t, false)
	for _, cl := range append(seen, call{"GET", "/v1/items/789"}) {
		before := len(origin.all())
		if resp := do(ec, cl); resp.StatusCode != 200 {
			t.Errorf("%s %s under the suggested policy: %s %s\n%s", cl.method, cl.path, resp.Status, resp.Header.Get(ReasonHeader), suggested.String())
			continue
		}
		got := origin.all()[before:]
		if len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer "+enf.token {
			t.Errorf("%s %s under the suggested policy: origin saw %d request(s) without the credential", cl.method, cl.path, len(got))
		}
	}
	for _, cl := range []call{{"GET", "/v1/unseen"}, {"DELETE", "/v1/items/123"}, {"POST", "/v1/listed/1"}} {
		if resp := do(ec, cl); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s under the suggested policy: %s, want 403", cl.method, cl.path, resp.Status)
		}
	}
}
