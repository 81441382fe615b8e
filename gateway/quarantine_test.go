package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
)

// quarantineTestPolicy: workload local is 127.0.0.1; callers from other
// loopback addresses are anonymous, and rule anon lets them use the
// placeholder under /anon/.
const quarantineTestPolicy = `
workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
credentials:
  ph:
    provider: static
    env: CREDGATE_GATEWAY_TEST_PH
    placeholder: CREDGATE_PH_api_key
  elsewhere:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
    placeholder: CREDGATE_PH_elsewhere
placeholders: {quarantine: true}
rules:
  - {name: anon, from: anonymous, to: api, paths: [/anon/*], inject: {credential: ph, as: placeholder, substitute_in: [path, query]}}
  - {name: api, from: local, to: api, inject: {credential: ph, as: placeholder, substitute_in: [path, query]}}
default: deny
`

// clientFrom is a client of tg's proxy whose connections come from the
// loopback address src.
func clientFrom(t *testing.T, tg *testGateway, src string) *http.Client {
	t.Helper()
	pu, _ := url.Parse("http://" + tg.gw.ProxyAddr().String())
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: tg.caPool}, DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// TestAnonymousTripwireQuarantinesTheSource: with placeholders.quarantine,
// a tripwire set off by an anonymous caller quarantines that caller's
// source address (a kill switch of kind source), not every anonymous
// caller; an identified workload's tripwire still quarantines the
// workload. The log, the audit line and credgate_quarantines_total name
// what was quarantined. Before, the anonymous caller's tripwire disabled
// workload "anonymous": every caller no workload matched was refused.
func TestAnonymousTripwireQuarantinesTheSource(t *testing.T) {
	t.Setenv("CREDGATE_GATEWAY_TEST_PH", phValue)
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(quarantineTestPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))

	tripper := clientFrom(t, tg, "127.0.0.2")
	bystander := clientFrom(t, tg, "127.0.0.3")
	local := clientFrom(t, tg, "127.0.0.1")
	// code is the refusal code of GET path through c ("" for a 200),
	// or "error: ..." when the proxy refused the tunnel.
	code := func(c *http.Client, path string) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "https://"+apiHost+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			return "error: " + err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return ""
		}
		return resp.Header.Get(ReasonHeader)
	}
	// auditHas waits for an audit line holding s (lines are written
	// after the response).
	auditHas := func(s string) bool {
		return poll.Within(5*time.Second, func() bool { return strings.Contains(tg.audit.String(), s) })
	}
	failed := 0
	check := func(what, got, want string) {
		t.Helper()
		if got != want && !(want == "refused" && got != "") {
			failed++
			t.Errorf("%s: got %q, want %q", what, got, want)
		}
	}
	// Every caller works first.
	check("anonymous caller before", code(tripper, "/anon/CREDGATE_PH_api_key"), "")
	check("another anonymous caller before", code(bystander, "/anon/CREDGATE_PH_api_key"), "")
	check("identified caller before", code(local, "/v1/CREDGATE_PH_api_key"), "")

	// The anonymous caller sends another credential's placeholder.
	check("the tripwire", code(tripper, "/anon/x?k=CREDGATE_PH_elsewhere"), codePlaceholderMisuse)
	check("the anonymous caller that set it off", code(tripper, "/anon/CREDGATE_PH_api_key"), "refused")
	check("another anonymous caller", code(bystander, "/anon/CREDGATE_PH_api_key"), "")
	check("a new connection of another anonymous caller", code(clientFrom(t, tg, "127.0.0.4"), "/anon/CREDGATE_PH_api_key"), "")
	check("the identified workload", code(local, "/v1/CREDGATE_PH_api_key"), "")
	check("quarantines of a source", metric(t, tg, `credgate_quarantines_total{kind="source"}`), `credgate_quarantines_total{kind="source"} 1`)
	check("the audit line names the source", fmt.Sprint(auditHas(`"quarantined":"source:127.0.0.2"`)), "true")
	check("the log names the source", fmt.Sprint(strings.Contains(tg.logs.String(), "source:127.0.0.2")), "true")

	// An identified workload's tripwire quarantines the workload.
	check("the workload's tripwire", code(local, "/v1/x?k=CREDGATE_PH_elsewhere"), codePlaceholderMisuse)
	check("the quarantined workload", code(local, "/v1/CREDGATE_PH_api_key"), "refused")
	check("quarantines of a workload", metric(t, tg, `credgate_quarantines_total{kind="workload"}`), `credgate_quarantines_total{kind="workload"} 1`)
	check("the audit line names the workload", fmt.Sprint(auditHas(`"quarantined":"workload:local"`)), "true")
	check("anonymous callers after the workload's quarantine", code(bystander, "/anon/CREDGATE_PH_api_key"), "")
	t.Logf("%d of 16 checks failed", failed)
}
