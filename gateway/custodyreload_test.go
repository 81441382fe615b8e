package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
)

// custodyReloadPolicy is the policy of TestCustodyAcrossReload with its
// parts as settings: each case changes one.
type custodyReloadPolicy struct {
	crmHosts, crmExtra         string // destination crm
	agentCIDRs, otherCIDRs     string // workloads
	loginExtra, loginCustody   string // the custody rule
	loginCred                  string
	apiExtra                   string // a rule to crm without custody
	extraDest, extraRule, tail string
}

func (c custodyReloadPolicy) text() string {
	return `
workloads:
  agent: {cidrs: [` + c.agentCIDRs + `]}
  other: {cidrs: [` + c.otherCIDRs + `]}
destinations:
  crm: {hosts: [` + c.crmHosts + `]` + c.crmExtra + `}
  billing: {hosts: [billing.test]}
` + c.extraDest + `
credentials:
  svc: {provider: static, env: CREDGATE_CUSTODY_RELOAD_A}
  svc2: {provider: static, env: CREDGATE_CUSTODY_RELOAD_B}
rules:
  - name: login
    from: [agent, other]
    to: crm
    methods: [POST]
    paths: [/login]
    inject: {credential: ` + c.loginCred + `, as: bearer}
    custody: ` + c.loginCustody + c.loginExtra + `
  - name: api
    from: [agent, other]
    to: crm
    inject: {credential: svc, as: bearer}` + c.apiExtra + `
  - name: bill
    from: [agent]
    to: billing
    inject: {credential: svc2, as: bearer}
` + c.extraRule + `
default: deny
` + c.tail
}

var custodyReloadBase = custodyReloadPolicy{
	crmHosts: "crm.test", agentCIDRs: "10.1.0.0/16", otherCIDRs: "10.2.0.0/16",
	loginCustody: "{cookies: [sid], ttl: 1h}", loginCred: "svc",
}

// TestCustodyAcrossReload: a custody value captured under one policy is
// put back after a reload only when the reload changed nothing of what
// defines where it may go — the destination's definition, the custody
// rules to it (and the credential they log in with), and the workload's
// definition. Before, custody values were keyed by destination and
// workload name alone, so a reload that pointed the destination at other
// hosts, changed the login rule or redefined who the workload is kept
// handing the session to whatever the names now meant.
func TestCustodyAcrossReload(t *testing.T) {
	edit := func(f func(*custodyReloadPolicy)) custodyReloadPolicy {
		c := custodyReloadBase
		f(&c)
		return c
	}
	cases := []struct {
		name    string
		reload  custodyReloadPolicy
		resolve bool
	}{
		{"unchanged", custodyReloadBase, true},
		{"another destination added", edit(func(c *custodyReloadPolicy) {
			c.extraDest = "  extra: {hosts: [extra.test]}\n"
		}), true},
		{"another rule added elsewhere", edit(func(c *custodyReloadPolicy) {
			c.extraRule = "  - {name: more, from: [agent], to: billing, action: tunnel}\n"
		}), true},
		{"a rule without custody to the destination changed", edit(func(c *custodyReloadPolicy) {
			c.apiExtra = "\n    methods: [GET]"
		}), true},
		{"another workload redefined", edit(func(c *custodyReloadPolicy) { c.otherCIDRs = "10.3.0.0/16" }), true},
		{"destination points at other hosts", edit(func(c *custodyReloadPolicy) { c.crmHosts = "evil.test" }), false},
		{"destination gains a host", edit(func(c *custodyReloadPolicy) { c.crmHosts = "crm.test, evil.test" }), false},
		{"destination gains a port", edit(func(c *custodyReloadPolicy) { c.crmExtra = ", ports: [443, 8443]" }), false},
		{"destination allows private addresses", edit(func(c *custodyReloadPolicy) { c.crmExtra = ", allow_private: true" }), false},
		{"custody block puts values in another header", edit(func(c *custodyReloadPolicy) {
			c.loginCustody = "{cookies: [sid], ttl: 1h, headers: [X-Debug]}"
		}), false},
		{"custody rule logs in with another credential", edit(func(c *custodyReloadPolicy) { c.loginCred = "svc2" }), false},
		{"custody rule changed", edit(func(c *custodyReloadPolicy) { c.loginExtra = "\n    plaintext: true" }), false},
		{"custody block keeps other cookies", edit(func(c *custodyReloadPolicy) {
			c.loginCustody = "{cookies: [other], ttl: 1h}"
		}), false},
		{"workload redefined", edit(func(c *custodyReloadPolicy) { c.agentCIDRs = "10.9.0.0/16" }), false},
	}
	parse := func(t *testing.T, c custodyReloadPolicy) *policy.Policy {
		t.Helper()
		p, err := policy.Parse(t.Context(), "p.yaml", []byte(c.text()))
		if err != nil {
			t.Fatalf("policy: %v", err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	// decide decides a request of agent to the first host of crm.
	decide := func(t *testing.T, c custodyReloadPolicy, method, path string) *exchange {
		t.Helper()
		host, _, _ := strings.Cut(c.crmHosts, ",")
		wl := identity.Workload{Name: "agent", Source: netip.MustParseAddr("10.1.0.5")}
		d := parse(t, c).Decide(policy.Query{Workload: wl, Scheme: "https", Host: host, Port: 443, Method: method, Path: path})
		if d.Action != policy.Inject || d.Destination != "crm" {
			t.Fatalf("%s %s: %s (%s)", method, path, d.Action, d.Reason)
		}
		return &exchange{r: httptest.NewRequest(method, "https://"+host+path, nil), wl: wl, d: d}
	}
	failed := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := custodyGateway(t)
			x := decide(t, custodyReloadBase, "POST", "/login")
			cc := g.newCustodyCapture(x)
			h := http.Header{"Set-Cookie": {"sid=the-session-value; Path=/"}}
			if n, err := cc.captureCookies(h); n != 1 || err != nil {
				t.Fatalf("capture: %d, %v", n, err)
			}
			ph := strings.TrimSuffix(strings.TrimPrefix(h.Get("Set-Cookie"), "sid="), "; Path=/")

			// The reload, then a request of the same workload to the
			// destination of the same name.
			y := decide(t, tc.reload, "GET", "/me")
			out := y.r.Clone(context.Background())
			out.Header.Set("Cookie", "sid="+ph)
			f := g.custodyRequest(y, out, &reqState{})
			resolved := f == nil && out.Header.Get("Cookie") == "sid=the-session-value"
			if resolved != tc.resolve {
				failed++
				t.Errorf("after the reload the placeholder resolved: %v, want %v (refusal %+v)", resolved, tc.resolve, f)
			}
			if !tc.resolve && (f == nil || f.Code != codeCustodyUnknown) {
				t.Errorf("refusal %+v, want %s", f, codeCustodyUnknown)
			}
		})
	}
	t.Logf("%d of %d reloads handled the kept value wrongly", failed, len(cases))
}

// TestCustodyKeysApart: the cache keys of custody values of two distinct
// (destination, workload) pairs differ, whatever separator characters
// the names hold (the scope is WORKLOAD/ID with an ID of fixed length at
// its end).
func TestCustodyKeysApart(t *testing.T) {
	id := strings.Repeat("a", custodyIDLen)
	type pair struct{ dest, wl string }
	seen := map[providers.CacheKey]pair{}
	for _, s := range []string{"/", ":", "@", "|", "}", "%", ".", "-", "_"} {
		for _, d := range []string{"d", "d" + s + "x", "d" + s, s + "x"} {
			for _, w := range []string{"w", "w" + s + "x", "w" + s, s + "x", "x" + s + id} {
				k := custodyKey("v", d, w, id)
				if prev, dup := seen[k]; dup && prev != (pair{d, w}) {
					t.Errorf("destination %q workload %q and destination %q workload %q share the key %+v", prev.dest, prev.wl, d, w, k)
				}
				seen[k] = pair{d, w}
			}
		}
	}
}
