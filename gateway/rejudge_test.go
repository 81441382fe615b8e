package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/policy"
)

// rejudgeParams are the parts of rejudgePolicy a change edits.
type rejudgeParams struct {
	// apiHosts and tunnelHosts are the destinations' hosts; apiFrom and
	// tunnelFrom the rules' workloads; methods and paths the api rule's.
	apiHosts, tunnelHosts, apiFrom, tunnelFrom, methods, paths string
	// cred is the credential the api rule injects, tokenEnv the variable
	// credential token reads.
	cred, tokenEnv string
	// deny puts a deny rule for local to both destinations first;
	// noRules leaves out the api and tunnel rules.
	deny, noRules bool
	// elsewhere are the hosts of a destination only the rule of another
	// workload names.
	elsewhere string
	// observe puts the whole policy in observe mode; public drops
	// allow_private from api and tunnel (the origin is on 127.0.0.1).
	observe, public bool
	// workloads, when set, is the workloads section's body in place of
	// local's and other's CIDRs (it must define other).
	workloads string
}

var rejudgeBase = rejudgeParams{
	apiHosts: "[api.origin.test, spare-api.origin.test]", tunnelHosts: "[tunnel.origin.test, spare-tunnel.origin.test]",
	apiFrom: "[local, other]", tunnelFrom: "[local, other]", methods: "[GET, POST]", paths: "[/ws, /r/*, /v1/*]",
	cred: "token", tokenEnv: "CREDGATE_GATEWAY_TEST_TOKEN", elsewhere: "[elsewhere.origin.test]",
}

// policy is the policy file of p: workload local (the tests' 127.0.0.1)
// may reach api (inject, /ws for WebSockets and /r/* for the rest) and
// tunnel (spliced).
func (p rejudgeParams) policy() string {
	var rules strings.Builder
	if p.deny {
		rules.WriteString("  - {name: incident, from: local, to: [api, tunnel], action: deny}\n")
	}
	if !p.noRules {
		fmt.Fprintf(&rules, "  - {name: api, from: %s, to: api, methods: %s, paths: %s, inject: {credential: %s, as: bearer}}\n", p.apiFrom, p.methods, p.paths, p.cred)
		fmt.Fprintf(&rules, "  - {name: tunnel, from: %s, to: tunnel, action: tunnel}\n", p.tunnelFrom)
	}
	rules.WriteString("  - {name: elsewhere, from: other, to: elsewhere, action: tunnel}\n")
	mode := ""
	if p.observe {
		mode = "mode: observe\n"
	}
	workloads := p.workloads
	if workloads == "" {
		workloads = "  local: {cidrs: [127.0.0.1/32]}\n  other: {cidrs: [10.9.9.9/32]}\n"
	}
	return mode + "workloads:\n" + workloads + fmt.Sprintf(`destinations:
  api: {hosts: %s, allow_private: %v}
  tunnel: {hosts: %s, allow_private: %v}
  elsewhere: {hosts: %s, allow_private: true}
credentials:
  token: {provider: static, env: %s}
  token2: {provider: static, env: CREDGATE_GATEWAY_TEST_TOKEN2}
rules:
%sdefault: deny
`, p.apiHosts, !p.public, p.tunnelHosts, !p.public, p.elsewhere, p.tokenEnv, rules.String())
}

// streamThrough sends GET /r/stream with c, reads the first chunk and
// returns a func that waits up to within for the rest: "cut" when the
// answer broke off, "went on" when the second chunk came, "" while it
// runs.
func streamThrough(t *testing.T, c *http.Client) func(within time.Duration) string {
	t.Helper()
	// No client timeout: only the gateway may end the stream.
	nc := *c
	nc.Timeout = 0
	c = &nc
	resp, err := c.Get("https://" + apiHost + "/r/stream")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return awaitSecondChunk(t, resp.Body)
}

// keptAlive is a connection through an intercepted tunnel to apiHost
// that stays open between requests; get sends the next request on it
// and returns the status and reason code.
type keptAlive struct {
	get func(path string) (int, string)
}

// keepAlive opens one over HTTP/1.1 (raw, on one tunnel) or HTTP/2 (a
// client whose every request must reuse the first connection), whose
// CONNECT carries bearer as Proxy-Authorization when it is set.
func keepAlive(t *testing.T, tg *testGateway, h2 bool, bearer string) *keptAlive {
	t.Helper()
	if !h2 {
		tc, br := connectTLS(t, tg, apiHost, bearer, tg.caPool)
		return &keptAlive{get: func(path string) (int, string) {
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, apiHost)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("GET %s on the kept-alive connection: %v", path, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode, resp.Header.Get(ReasonHeader)
		}}
	}
	c := tg.client(t, true)
	if bearer != "" {
		c = bearerClient(t, tg, true, bearer)
	}
	first := true
	return &keptAlive{get: func(path string) (int, string) {
		reused := false
		req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+path, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || !first && !reused {
			t.Fatalf("GET %s: %s, reused %v: want the first HTTP/2 connection", path, resp.Proto, reused)
		}
		first = false
		return resp.StatusCode, resp.Header.Get(ReasonHeader)
	}}
}

// TestReloadRejudgesWhatIsOpen checks the class "a policy reload
// re-judges what is already open": a spliced tunnel, a WebSocket, a
// streamed answer and a streamed body in flight (HTTP/1.1 and HTTP/2),
// and the next request on a kept-alive intercepted connection (HTTP/1.1
// and HTTP/2), each admitted by the api or tunnel rule, then one change
// to the policy per row. What the new policy refuses, or would admit
// under another rule or credential, ends at once: the tunnel and the
// WebSocket close (policy_changed, counted and audited), the stream is
// cut, the upload answered 502 policy_changed_in_flight; the next request
// on a kept-alive connection is decided afresh (403 with the refusal's
// code, or sent with the new credential). A change that leaves their
// rule and credential alone disturbs nothing. Before, everything open
// ran on under the policy it started with.
func TestReloadRejudgesWhatIsOpen(t *testing.T) {
	with := func(edit func(*rejudgeParams)) rejudgeParams {
		p := rejudgeBase
		edit(&p)
		return p
	}
	const token2 = "token2"
	for _, tc := range []struct {
		name   string
		p      rejudgeParams
		tunnel bool // whether the tunnel ends (the api rule's traffic ends unless unrelated)
		// keep is what the next request on a kept-alive connection
		// gets: a refusal's code, or the credential (token, token2).
		keep string
	}{
		{"rule removed", with(func(p *rejudgeParams) { p.noRules = true }), true, "no_rule"},
		{"host removed", with(func(p *rejudgeParams) {
			p.apiHosts, p.tunnelHosts = "[spare-api.origin.test]", "[spare-tunnel.origin.test]"
		}), true, "no_rule"},
		{"path narrowed", with(func(p *rejudgeParams) { p.paths = "[/v1/*]" }), false, "path_not_allowed"},
		{"method removed", with(func(p *rejudgeParams) { p.methods = "[PUT]" }), false, "method_not_allowed"},
		{"workload removed", with(func(p *rejudgeParams) { p.apiFrom, p.tunnelFrom = "[other]", "[other]" }), true, "no_rule"},
		{"deny added", with(func(p *rejudgeParams) { p.deny = true }), true, "denied_by_rule"},
		{"allow_private dropped", with(func(p *rejudgeParams) { p.public = true }), true, "private_address"},
		{"credential renamed", with(func(p *rejudgeParams) { p.cred = "token2" }), false, token2},
		{"credential edited", with(func(p *rejudgeParams) { p.tokenEnv = "CREDGATE_GATEWAY_TEST_TOKEN2" }), false, token2},
		{"unrelated change", with(func(p *rejudgeParams) { p.elsewhere = "[elsewhere.origin.test, more.origin.test]" }), false, "token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret2 := "gw-test-second-" + fmt.Sprint(time.Now().UnixNano())
			t.Setenv("CREDGATE_GATEWAY_TEST_TOKEN2", secret2)
			tg, release := startRejudgeGateway(t, rejudgeBase, nil)
			open := openAll(t, tg, "")
			reloadTo(t, tg, tc.p)
			wantScanned(t, tg)
			close(release)
			want := afterReload{tunnel: tc.tunnel, rest: tc.keep != "token", keep: tc.keep}
			switch tc.keep {
			case "token":
				want.cred = tg.token
			case token2:
				want.cred = secret2
			}
			open.check(t, tg, want)
			if got := strings.Count(tg.logs.String(), secret2); got > 0 {
				t.Errorf("the second credential appears %d times in the log", got)
			}
		})
	}
}

// openThings is what the reload tests hold open across a reload: a
// spliced tunnel and a WebSocket, and over HTTP/1.1 and HTTP/2 a
// streamed answer and a streamed body in flight and a kept-alive
// intercepted connection.
type openThings struct {
	long    map[string]*longClient
	streams map[string]func(time.Duration) string
	uploads map[string]*inFlightRequest
	kept    map[string]*keptAlive
}

// openAll opens them on tg (started by startRejudgeGateway), every
// CONNECT carrying bearer as Proxy-Authorization when it is set.
func openAll(t *testing.T, tg *testGateway, bearer string) *openThings {
	t.Helper()
	o := &openThings{
		long: map[string]*longClient{
			kindTunnel:    openLongClient(t, tg, kindTunnel, bearer),
			kindWebSocket: openLongClient(t, tg, kindWebSocket, bearer),
		},
		streams: map[string]func(time.Duration) string{}, uploads: map[string]*inFlightRequest{}, kept: map[string]*keptAlive{},
	}
	for _, h2 := range []bool{false, true} {
		proto := map[bool]string{false: "h1", true: "h2"}[h2]
		client := func() *http.Client {
			if bearer != "" {
				return bearerClient(t, tg, h2, bearer)
			}
			return tg.client(t, h2)
		}
		o.streams[proto] = streamThrough(t, client())
		path := "/r/upload-" + proto
		o.uploads[proto] = startInFlight(t, tg, client(), "upload", uploadRoute(tg, path), path)
		o.kept[proto] = keepAlive(t, tg, h2, bearer)
		if st, code := o.kept[proto].get("/r/keep-1"); st != http.StatusOK {
			t.Fatalf("%s: the first request on the kept-alive connection: %d %s", proto, st, code)
		}
	}
	// The client has the kept-alive request's answer before the gateway's
	// handler has left it (the audit line is written after the answer):
	// a scan that came in between counted a fifth request in flight.
	waitFor(t, 5*time.Second, "the kept-alive requests to leave the requests in flight", func() bool {
		return tg.gw.flights.len() == 4
	})
	return o
}

// wantScanned checks that the reload's scan decided every one of
// openThings again (the tunnel, the WebSocket, two streams and two
// uploads; a kept-alive connection has nothing in flight between
// requests).
func wantScanned(t *testing.T, tg *testGateway) {
	t.Helper()
	if l := tg.logs.String(); !strings.Contains(l, `"connections":2,`) || !strings.Contains(l, `"requests":4,`) {
		t.Errorf("the scan's log line does not count 2 connections and 4 requests:\n%s", l[strings.Index(l, rejudgeLogMsg):])
	}
}

// afterReload is what a reload should do to openThings.
type afterReload struct {
	// tunnel: the tunnel closes; rest: the WebSocket closes and the
	// requests in flight are cut.
	tunnel, rest bool
	// cred is the credential the next request on a kept-alive
	// connection is sent with (200); "": it is refused 403 with code
	// keep.
	cred, keep string
}

// check checks what the reload did (the stream route released): what
// ends is closed or cut (policy_changed, counted and audited), the rest
// runs on; the next request on each kept-alive connection is decided
// afresh.
func (o *openThings) check(t *testing.T, tg *testGateway, want afterReload) {
	t.Helper()
	wantLong, wantCut := 0, 0
	for proto := range o.streams {
		t.Run("stream/"+proto, func(t *testing.T) {
			got := o.streams[proto](5 * time.Second)
			if want := map[bool]string{false: "went on", true: "cut"}[want.rest]; got != want {
				t.Errorf("the streamed answer: %q, want %q", got, want)
			}
			if want.rest {
				wantCut++
			}
		})
		t.Run("upload/"+proto, func(t *testing.T) {
			if !want.rest {
				if code, _ := o.uploads[proto].cut(0); code != "" {
					t.Errorf("the streamed body ended: %q, want it still in flight", code)
				}
				return
			}
			wantCut++
			if code, _ := o.uploads[proto].cut(5 * time.Second); code != codePolicyChangedInFlight {
				t.Errorf("the streamed body: %q, want 502 %s", code, codePolicyChangedInFlight)
			}
		})
		t.Run("keepalive/"+proto, func(t *testing.T) {
			path := "/r/keep-2-" + proto
			st, code := o.kept[proto].get(path)
			if want.cred == "" {
				if st != http.StatusForbidden || code != want.keep {
					t.Errorf("the next request: %d %s, want 403 %s", st, code, want.keep)
				}
				return
			}
			var auth string
			for _, s := range tg.origin.all() {
				if s.Path == path {
					auth = s.Header.Get("Authorization")
				}
			}
			if st != http.StatusOK || auth != "Bearer "+want.cred {
				t.Errorf("the next request: %d %s, want 200 with credential %s (got it: %v)", st, code, want.keep, auth == "Bearer "+want.cred)
			}
		})
	}
	for kind, lc := range o.long {
		ends := kind == kindTunnel && want.tunnel || kind == kindWebSocket && want.rest
		t.Run(kind, func(t *testing.T) {
			if ends {
				wantLong++
				if !lc.closedByGateway(5 * time.Second) {
					t.Errorf("the %s is still open after the reload", kind)
				}
				prefix := fmt.Sprintf(`credgate_long_lived_closed_total{kind=%q,reason="policy_changed"}`, kind)
				waitFor(t, 5*time.Second, prefix+" 1", func() bool { return metric(t, tg, prefix) == prefix+" 1" })
				return
			}
			if !lc.alive() {
				t.Errorf("the %s closed though the reload still admits it as it was", kind)
			}
		})
	}
	waitFor(t, 5*time.Second, "the audit lines", func() bool {
		a := tg.audit.String()
		return strings.Count(a, `"closed":"policy_changed"`) == wantLong && strings.Count(a, `"code":"policy_changed_in_flight"`) == wantCut
	})
	if wantCut > 0 {
		want := fmt.Sprintf(`credgate_refusals_total{code="policy_changed_in_flight"} %d`, wantCut)
		if m := metric(t, tg, `credgate_refusals_total{code="policy_changed_in_flight"}`); m != want {
			t.Errorf("refusals metric: %q, want %q", m, want)
		}
	}
}

// startRejudgeGateway runs a gateway with p's policy and the route
// /r/stream: "first", then "second" once release is closed. prepare,
// when set, is called before the gateway starts (its files written in
// tg.dir) and returns config added to the gateway's.
func startRejudgeGateway(t *testing.T, p rejudgeParams, prepare func(tg *testGateway) string) (tg *testGateway, release chan struct{}) {
	t.Helper()
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg = newTestGateway(t, pki, startOrigin(t, pki))
	extra := ""
	if prepare != nil {
		extra = prepare(tg)
	}
	writeFile(t, tg.dir, "policy.yaml", []byte(p.policy()))
	tg.run(t, fmt.Sprintf(`resolve: {"api.origin.test:443": %q, "tunnel.origin.test:443": %q}
`, tg.origin.addr, tg.origin.addr)+extra)
	release = make(chan struct{})
	tg.origin.route("/r/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "second\n")
	})
	return tg, release
}

// reloadTo writes p's policy, reloads it and waits for the scan of what
// is open.
func reloadTo(t *testing.T, tg *testGateway, p rejudgeParams) {
	t.Helper()
	before := strings.Count(tg.logs.String(), rejudgeLogMsg)
	writeFile(t, tg.dir, "policy.yaml", []byte(p.policy()))
	if err := tg.gw.ReloadPolicy(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the reload's scan", func() bool { return strings.Count(tg.logs.String(), rejudgeLogMsg) > before })
}

// TestReloadRejudgesObserveMode: a request observe mode let through
// (would_deny: no credential) keeps running while the new policy still
// lets it through as would_deny, whatever refuses it now; it is cut when
// the new policy refuses it (observe mode off) or would admit it under a
// rule (with a credential it does not carry). A request a rule admitted
// is cut when the new policy only lets it through as would_deny.
func TestReloadRejudgesObserveMode(t *testing.T) {
	params := func(observe bool, edit func(*rejudgeParams)) rejudgeParams {
		p := rejudgeBase
		p.observe = observe
		edit(&p)
		return p
	}
	narrow := func(p *rejudgeParams) { p.paths = "[/v1/*]" }
	for _, tc := range []struct {
		name       string
		start, end rejudgeParams
		// decision is the stream's audited decision at the start.
		decision string
		cut      bool
	}{
		{"would_deny, unrelated change", params(true, narrow), params(true, func(p *rejudgeParams) {
			narrow(p)
			p.elsewhere = "[elsewhere.origin.test, more.origin.test]"
		}), "would_deny", false},
		{"would_deny, refused otherwise", params(true, narrow), params(true, func(p *rejudgeParams) {
			narrow(p)
			p.methods = "[PUT]"
		}), "would_deny", false},
		{"would_deny, observe mode off", params(true, narrow), params(false, narrow), "would_deny", true},
		{"would_deny, a rule admits it", params(true, narrow), params(true, func(*rejudgeParams) {}), "would_deny", true},
		{"inject, now would_deny", params(true, func(*rejudgeParams) {}), params(true, narrow), "inject", true},
		{"inject, unrelated change in observe mode", params(true, func(*rejudgeParams) {}), params(true, func(p *rejudgeParams) {
			p.elsewhere = "[elsewhere.origin.test, more.origin.test]"
		}), "inject", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, release := startRejudgeGateway(t, tc.start, nil)
			stream := streamThrough(t, tg.client(t, false))
			// The audit line is written when the request ends: the
			// origin says whether it got the credential.
			var auth string
			for _, r := range tg.origin.all() {
				if r.Path == "/r/stream" {
					auth = r.Header.Get("Authorization")
				}
			}
			if got := map[bool]string{true: "inject", false: "would_deny"}[auth == "Bearer "+tg.token]; got != tc.decision {
				t.Fatalf("the stream was admitted as %s, want %s", got, tc.decision)
			}
			reloadTo(t, tg, tc.end)
			close(release)
			want := map[bool]string{true: "cut", false: "went on"}[tc.cut]
			if got := stream(5 * time.Second); got != want {
				t.Errorf("the streamed answer: %q, want %q", got, want)
			}
			if tc.cut {
				waitFor(t, 5*time.Second, "the audit line", func() bool {
					return strings.Contains(tg.audit.String(), fmt.Sprintf(`"decision":%q`, tc.decision)) &&
						strings.Contains(tg.audit.String(), `"code":"policy_changed_in_flight"`)
				})
			}
		})
	}
}

// TestReloadRejudgesAtRegistration: a tunnel, WebSocket or request
// decided under one policy and registered after a reload put another in
// force (the scan the reload started may have missed it) is decided again
// when it registers.
func TestReloadRejudgesAtRegistration(t *testing.T) {
	tg, _ := startRejudgeGateway(t, rejudgeBase, nil)
	old, err := policy.Parse(t.Context(), "old.yaml", []byte(rejudgeBase.policy()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Close() })
	wl := identity.Workload{Name: "local", Source: netip.MustParseAddr("127.0.0.1")}
	for _, tc := range []struct {
		name string
		q    policy.Query
	}{
		{"tunnel", policy.Query{Connect: true, Host: tunnelHost, Port: 443}},
		{"request", policy.Query{Scheme: "https", Host: apiHost, Port: 443, Method: http.MethodGet, Path: "/r/stream"}},
	} {
		for _, change := range []string{"none", "rule removed"} {
			t.Run(tc.name+"/"+change, func(t *testing.T) {
				if change == "rule removed" {
					reloadTo(t, tg, rejudgeParams{noRules: true, apiHosts: rejudgeBase.apiHosts, tunnelHosts: rejudgeBase.tunnelHosts,
						tokenEnv: rejudgeBase.tokenEnv, elsewhere: rejudgeBase.elsewhere})
				} else {
					reloadTo(t, tg, rejudgeBase)
				}
				q := tc.q
				q.Workload = wl
				d := old.Decide(q)
				if d.Action == policy.Deny {
					t.Fatalf("the old policy refuses %+v: %s", tc.q, d.Reason)
				}
				jd := judged(old, tc.q, wl, d)
				lc := tg.gw.newLong(kindTunnel, identity.Evidence{}, wl, d, jd)
				tg.gw.openLong(lc)
				got := lc.endReason()
				tg.gw.closeLong(lc)
				f := &inFlight{}
				tg.gw.startFlight(t.Context(), f, nil, nil, identity.Evidence{}, wl, d, jd)
				cut := f.refusal()
				tg.gw.endFlight(f)
				if change == "none" {
					if got != "" || cut != nil {
						t.Errorf("closed %q, cut %v: want both left running", got, cut)
					}
					return
				}
				if got != closedPolicyChanged || cut == nil || cut.Code != codePolicyChangedInFlight {
					t.Errorf("closed %q, cut %+v: want %s and %s", got, cut, closedPolicyChanged, codePolicyChangedInFlight)
				}
			})
		}
	}
}
