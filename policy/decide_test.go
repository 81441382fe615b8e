package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
)

const decidePolicy = `
workloads:
  billing:
    cidrs: [10.1.0.0/16]
  web:
    cidrs: [10.2.0.0/16]
destinations:
  stripe:
    hosts: [api.stripe.com]
  stripe-all:
    hosts: ["*.stripe.com"]
  datadog:
    hosts: ["*.datadoghq.com"]
  plain:
    hosts: [plain.test]
    ports: [80, 8080]
  github:
    hosts: [api.github.com]
  internal:
    hosts: [svc.internal.test, 10.0.0.5, "[::1]"]
    ports: [8443, 443]
    allow_private: true
  folded:
    hosts: [api.folded.test]
    path_case: insensitive
credentials:
  stripe-live:
    provider: policytest
    value: sk_live
  gh:
    provider: policytest
    value: ghp
rules:
  - name: block-refunds
    from: billing
    to: stripe
    paths: [/v1/refunds*]
    action: deny
  - name: block-balance
    from: billing
    to: stripe
    paths: [/v1/balance]
    action: deny
  - name: folded-admin
    from: billing
    to: folded
    paths: [/api/items/admin*]
    action: deny
  - name: folded-items
    from: billing
    to: folded
    paths: [/api/items/*]
    inject: {credential: gh, as: policytest-inj}
  - name: billing-charges
    from: billing
    to: stripe
    methods: [get, POST]
    paths: [/v1/charges*, /v1/customers/*/cards]
    inject: {credential: stripe-live, as: policytest-inj, header: Authorization}
  - name: stripe-tunnel
    from: "*"
    to: stripe-all
    action: tunnel
  - name: shadowed
    from: "*"
    to: stripe
    inject: {credential: stripe-live, as: policytest-inj}
  - name: telemetry
    from: ["*", anonymous]
    to: datadog
    action: tunnel
  - name: plain-web
    from: web
    to: plain
    inject: {credential: gh, as: policytest-inj}
    plaintext: true
  - name: plain-billing
    from: billing
    to: plain
    inject: {credential: gh, as: policytest-inj}
  - name: github-anon
    from: anonymous
    to: github
    action: deny
  - name: github
    from: "*"
    to: github
    methods: [GET]
    paths: [/repos/*]
    inject: {credential: gh, as: policytest-inj}
  - name: internal
    from: billing
    to: internal
    action: tunnel
default: deny
`

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse(context.Background(), "test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func wl(name string) identity.Workload {
	return identity.Workload{Name: name, Source: netip.MustParseAddr("10.9.9.9")}
}

// got is the comparable part of a Decision.
type got struct {
	Action       string
	Rule         string
	Destination  string
	Code         string
	AllowPrivate bool
	Credential   string
}

func summarise(d Decision) got {
	g := got{Action: d.Action.String(), Rule: d.Rule, Destination: d.Destination, Code: d.Code, AllowPrivate: d.AllowPrivate}
	if d.Inject != nil {
		g.Credential = d.Inject.Credential
	}
	return g
}

func connect(who, host string, port int) Query {
	return Query{Workload: wl(who), Connect: true, Host: host, Port: port}
}

func request(who, method, scheme, host string, port int, path string) Query {
	return Query{Workload: wl(who), Scheme: scheme, Host: host, Port: port, Method: method, Path: path}
}

func TestDecide(t *testing.T) {
	p := mustParse(t, decidePolicy)
	tests := []struct {
		name string
		q    Query
		want got
	}{
		// CONNECT
		{"connect intercept for deny-by-path first", connect("billing", "api.stripe.com", 443),
			got{Action: "intercept", Rule: "block-refunds", Destination: "stripe"}},
		{"connect tunnel via wildcard for other workload", connect("web", "api.stripe.com", 443),
			got{Action: "tunnel", Rule: "stripe-tunnel", Destination: "stripe-all"}},
		{"connect wrong port", connect("billing", "api.stripe.com", 8443),
			got{Action: "deny", Code: "no_rule"}},
		{"connect wildcard any depth", connect("web", "a.b.c.stripe.com", 443),
			got{Action: "tunnel", Rule: "stripe-tunnel", Destination: "stripe-all"}},
		{"connect wildcard not apex", connect("web", "stripe.com", 443),
			got{Action: "deny", Code: "no_rule"}},
		{"connect wildcard not other suffix", connect("web", "notstripe.com", 443),
			got{Action: "deny", Code: "no_rule"}},
		{"connect wildcard not hyphen-joined", connect("web", "evil-stripe.com", 443),
			got{Action: "deny", Code: "no_rule"}},
		{"connect wildcard not as a prefix of another domain", connect("web", "api.stripe.com.evil.net", 443),
			got{Action: "deny", Code: "no_rule"}},
		{"connect wildcard not with the suffix's last dot missing", connect("web", "a.stripecom", 443),
			got{Action: "deny", Code: "no_rule"}},
		{"connect wildcard case and trailing dot", connect("web", "A.B.STRIPE.COM.", 443),
			got{Action: "tunnel", Rule: "stripe-tunnel", Destination: "stripe-all"}},
		{"connect anonymous allowed", connect("", "intake.datadoghq.com", 443),
			got{Action: "tunnel", Rule: "telemetry", Destination: "datadog"}},
		{"connect star excludes anonymous", connect("", "api.stripe.com", 443),
			got{Action: "deny", Code: "no_rule"}},
		{"connect unconditional deny first", connect("", "api.github.com", 443),
			got{Action: "deny", Rule: "github-anon", Destination: "github", Code: "denied_by_rule"}},
		{"connect inject intercepts", connect("web", "api.github.com", 443),
			got{Action: "intercept", Rule: "github", Destination: "github"}},
		{"connect unknown host", connect("web", "example.com", 443),
			got{Action: "deny", Code: "no_rule"}},
		{"connect port 0 means 443", connect("web", "api.github.com", 0),
			got{Action: "intercept", Rule: "github", Destination: "github"}},
		{"connect IP literal with ports", connect("billing", "10.0.0.5", 8443),
			got{Action: "tunnel", Rule: "internal", Destination: "internal", AllowPrivate: true}},
		{"connect IPv6 literal bracketed", connect("billing", "[::1]", 443),
			got{Action: "tunnel", Rule: "internal", Destination: "internal", AllowPrivate: true}},
		{"connect IPv6 literal long form", connect("billing", "0:0::1", 443),
			got{Action: "tunnel", Rule: "internal", Destination: "internal", AllowPrivate: true}},
		{"connect host normalised", connect("billing", "SVC.Internal.TEST.", 8443),
			got{Action: "tunnel", Rule: "internal", Destination: "internal", AllowPrivate: true}},
		{"connect destination without port 80 for CONNECT", connect("web", "api.github.com", 80),
			got{Action: "deny", Code: "no_rule"}},

		// requests
		{"inject first match", request("billing", "POST", "https", "api.stripe.com", 443, "/v1/charges/ch_1"),
			got{Action: "inject", Rule: "billing-charges", Destination: "stripe", Credential: "stripe-live"}},
		{"method lower-case refused, not upper-cased", request("billing", "get", "https", "api.stripe.com", 443, "/v1/charges"),
			got{Action: "deny", Code: "bad_method"}},
		{"CONNECT inside a tunnel refused", request("billing", "CONNECT", "https", "api.stripe.com", 443, "/"),
			got{Action: "deny", Code: "bad_method"}},
		{"TRACE is forwarded by a tunnel rule, without a credential", request("billing", "TRACE", "https", "api.stripe.com", 443, "/v1/other"),
			got{Action: "forward", Rule: "stripe-tunnel", Destination: "stripe-all"}},
		{"TRACE skips an inject rule that does not name it", request("web", "TRACE", "http", "plain.test", 80, "/x"),
			got{Action: "deny", Code: "method_not_allowed"}},
		{"method mixed case refused", request("billing", "Post", "https", "api.stripe.com", 443, "/v1/charges"),
			got{Action: "deny", Code: "bad_method"}},
		{"method not a token refused", request("billing", "GET /x", "https", "api.stripe.com", 443, "/v1/charges"),
			got{Action: "deny", Code: "bad_method"}},
		{"deny matches upper case", request("billing", "POST", "https", "api.stripe.com", 443, "/V1/REFUNDS/re_1"),
			got{Action: "deny", Rule: "block-refunds", Destination: "stripe", Code: "denied_by_rule"}},
		{"deny matches mixed case", request("billing", "POST", "https", "api.stripe.com", 443, "/v1/Refunds"),
			got{Action: "deny", Rule: "block-refunds", Destination: "stripe", Code: "denied_by_rule"}},
		{"deny exact path matches with a trailing slash", request("billing", "GET", "https", "api.stripe.com", 443, "/v1/balance/"),
			got{Action: "deny", Rule: "block-balance", Destination: "stripe", Code: "denied_by_rule"}},
		{"deny exact path matches in upper case", request("billing", "GET", "https", "api.stripe.com", 443, "/V1/Balance"),
			got{Action: "deny", Rule: "block-balance", Destination: "stripe", Code: "denied_by_rule"}},
		{"allow is case-sensitive by default", request("billing", "GET", "https", "api.stripe.com", 443, "/V1/CHARGES"),
			got{Action: "forward", Rule: "stripe-tunnel", Destination: "stripe-all"}},
		{"path_case insensitive: allow folds case", request("billing", "GET", "https", "api.folded.test", 443, "/API/Items/1"),
			got{Action: "inject", Rule: "folded-items", Destination: "folded", Credential: "gh"}},
		{"path_case insensitive: deny folds case", request("billing", "GET", "https", "api.folded.test", 443, "/API/Items/ADMIN/1"),
			got{Action: "deny", Rule: "folded-admin", Destination: "folded", Code: "denied_by_rule"}},
		{"deny by path before inject", request("billing", "POST", "https", "api.stripe.com", 443, "/v1/refunds/re_1"),
			got{Action: "deny", Rule: "block-refunds", Destination: "stripe", Code: "denied_by_rule"}},
		{"glob in the middle", request("billing", "GET", "https", "api.stripe.com", 443, "/v1/customers/cus_1/cards"),
			got{Action: "inject", Rule: "billing-charges", Destination: "stripe", Credential: "stripe-live"}},
		{"glob star spans slashes", request("billing", "GET", "https", "api.stripe.com", 443, "/v1/customers/a/b/cards"),
			got{Action: "inject", Rule: "billing-charges", Destination: "stripe", Credential: "stripe-live"}},
		{"glob anchored at end falls through to tunnel", request("billing", "GET", "https", "api.stripe.com", 443, "/v1/customers/a/cardsx"),
			got{Action: "forward", Rule: "stripe-tunnel", Destination: "stripe-all"}},
		{"method miss falls through to next rule", request("billing", "DELETE", "https", "api.stripe.com", 443, "/v1/charges/ch_1"),
			got{Action: "forward", Rule: "stripe-tunnel", Destination: "stripe-all"}},
		{"method not allowed", request("web", "POST", "https", "api.github.com", 443, "/repos/x"),
			got{Action: "deny", Code: "method_not_allowed"}},
		{"path not allowed", request("web", "GET", "https", "api.github.com", 443, "/user"),
			got{Action: "deny", Code: "path_not_allowed"}},
		{"path and method miss is path", request("web", "POST", "https", "api.github.com", 443, "/user"),
			got{Action: "deny", Code: "path_not_allowed"}},
		{"anonymous request denied by rule", request("", "GET", "https", "api.github.com", 443, "/repos/x"),
			got{Action: "deny", Rule: "github-anon", Destination: "github", Code: "denied_by_rule"}},
		{"request no rule", request("web", "GET", "https", "example.com", 443, "/"),
			got{Action: "deny", Code: "no_rule"}},
		{"plaintext allowed", request("web", "GET", "http", "plain.test", 80, "/x"),
			got{Action: "inject", Rule: "plain-web", Destination: "plain", Credential: "gh"}},
		{"plaintext allowed other listed port", request("web", "GET", "http", "plain.test", 8080, "/x"),
			got{Action: "inject", Rule: "plain-web", Destination: "plain", Credential: "gh"}},
		{"plaintext not allowed", request("billing", "GET", "http", "plain.test", 80, "/x"),
			got{Action: "deny", Rule: "plain-billing", Destination: "plain", Code: "plaintext_not_allowed"}},
		{"https allowed without plaintext", request("billing", "GET", "https", "plain.test", 8080, "/x"),
			got{Action: "inject", Rule: "plain-billing", Destination: "plain", Credential: "gh"}},
		{"http default port 80", request("billing", "POST", "http", "api.stripe.com", 0, "/v1/charges"),
			got{Action: "deny", Rule: "billing-charges", Destination: "stripe", Code: "plaintext_not_allowed"}},
		{"http on 443 with default ports is no rule", request("web", "GET", "http", "api.github.com", 443, "/repos/x"),
			got{Action: "deny", Code: "no_rule"}},
		{"tunnel rule on http forwards", request("web", "GET", "http", "x.stripe.com", 80, "/"),
			got{Action: "forward", Rule: "stripe-tunnel", Destination: "stripe-all"}},
		{"tunnel rule inside intercepted tunnel forwards", request("web", "GET", "https", "api.stripe.com", 443, "/v1/charges"),
			got{Action: "forward", Rule: "stripe-tunnel", Destination: "stripe-all"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.q)
			if diff := cmp.Diff(tt.want, summarise(d)); diff != "" {
				t.Errorf("Decide(%+v) mismatch (-want +got):\n%s\nreason: %s", tt.q, diff, d.Reason)
			}
			if d.Reason == "" || strings.Contains(d.Reason, "\n") {
				t.Errorf("Reason = %q, want one sentence", d.Reason)
			}
			if (d.Action == Inject) != (d.Inject != nil) {
				t.Errorf("Inject plan = %v for action %v", d.Inject, d.Action)
			}
		})
	}
}

func TestDecideReasons(t *testing.T) {
	p := mustParse(t, decidePolicy)
	tests := []struct {
		q    Query
		want string
	}{
		{connect("web", "example.com", 443), `no rule allows workload "web" to reach example.com:443`},
		{connect("", "example.com", 443), `no rule allows anonymous callers to reach example.com:443`},
		{connect("billing", "api.stripe.com", 443), `rule "block-refunds" must see the requests workload "billing" sends to api.stripe.com:443, so the connection is intercepted`},
		{connect("web", "x.stripe.com", 443), `rule "stripe-tunnel" lets workload "web" tunnel to x.stripe.com:443 without interception`},
		{connect("", "api.github.com", 443), `rule "github-anon" denies anonymous callers access to api.github.com:443`},
		{request("billing", "POST", "https", "api.stripe.com", 443, "/v1/charges"), `rule "billing-charges" injects credential "stripe-live" as policytest-inj into POST https://api.stripe.com/v1/charges from workload "billing"`},
		{request("web", "GET", "http", "plain.test", 8080, "/x"), `rule "plain-web" injects credential "gh" as policytest-inj into GET http://plain.test:8080/x from workload "web"`},
		{request("billing", "GET", "http", "plain.test", 80, "/x"), `rule "plain-billing" would inject credential "gh", but GET http://plain.test/x is plain http and the rule does not set plaintext: true`},
		{request("web", "POST", "https", "api.github.com", 443, "/repos/x"), `rule "github" lets workload "web" reach api.github.com:443, but not with method POST`},
		{request("web", "GET", "https", "api.github.com", 443, "/user"), `rule "github" lets workload "web" reach api.github.com:443, but not GET /user`},
		// A deny rule lets nobody reach the host: the reason names the
		// rule that admits other requests (folded-items), and a deny
		// rule only where no such rule missed.
		{request("billing", "GET", "https", "api.folded.test", 443, "/other"), `rule "folded-items" lets workload "billing" reach api.folded.test:443, but not GET /other`},
		{request("web", "GET", "https", "api.stripe.com", 443, "/"), `rule "stripe-tunnel" forwards GET https://api.stripe.com/ from workload "web" without a credential`},
		{connect("billing", "::1", 8443), `rule "internal" lets workload "billing" tunnel to [::1]:8443 without interception`},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, p.Decide(tt.q).Reason); diff != "" {
			t.Errorf("Decide(%+v).Reason mismatch (-want +got):\n%s", tt.q, diff)
		}
	}
	// Only a deny rule (vault-sys-blocked) covers the host for web: it is
	// not said to let web reach it.
	pr := mustParse(t, privateReachPolicy)
	for _, tt := range []struct {
		q    Query
		want string
	}{
		{request("web", "GET", "https", "vault.internal.test", 443, "/other"), `no rule lets workload "web" send GET /other to vault.internal.test:443 (rule "vault-sys-blocked" denies other requests there)`},
		{request("billing", "POST", "https", "vault.internal.test", 443, "/v1/secret/x"), `rule "vault-read" lets workload "billing" reach vault.internal.test:443, but not with method POST`},
	} {
		if diff := cmp.Diff(tt.want, pr.Decide(tt.q).Reason); diff != "" {
			t.Errorf("Decide(%+v).Reason mismatch (-want +got):\n%s", tt.q, diff)
		}
	}
}

func TestInjectPlan(t *testing.T) {
	p := mustParse(t, decidePolicy)
	d := p.Decide(request("billing", "POST", "https", "api.stripe.com", 443, "/v1/charges"))
	if d.Inject == nil {
		t.Fatalf("no inject plan: %+v", d)
	}
	if d.Inject.As != testInjectorName || d.Inject.Provider == nil || d.Inject.Injector == nil || len(d.Inject.CredentialVersion) != 16 {
		t.Errorf("plan = %+v", d.Inject)
	}
	if got := d.Inject.Injector.(*testInjector).Header; got != "Authorization" {
		t.Errorf("injector settings not decoded: header = %q", got)
	}
	if got := d.Inject.Provider.(*testProvider).Value; got != "sk_live" {
		t.Errorf("provider settings not decoded: value = %q", got)
	}
}

func TestCredentialVersion(t *testing.T) {
	version := func(settings string) string {
		src := "credentials:\n  c:\n" + settings + "\nrules:\n  - {name: r, from: \"*\", to: d, inject: {credential: c, as: policytest-inj}}\n" +
			"destinations:\n  d: {hosts: [d.test]}\nworkloads:\n  w: {cidrs: [10.0.0.0/8]}\ndefault: deny\n"
		p := mustParse(t, src)
		return p.Decide(request("w", "GET", "https", "d.test", 443, "/")).Inject.CredentialVersion
	}
	a := version("    provider: policytest\n    value: one\n    fail: \"\"")
	b := version("    # reordered, with a comment\n    fail: \"\"\n    value: one\n    provider: policytest")
	c := version("    provider: policytest\n    value: two\n    fail: \"\"")
	if a != b {
		t.Errorf("same settings in another order gave versions %s and %s", a, b)
	}
	if a == c {
		t.Errorf("different settings gave the same version %s", a)
	}
}

// TestCredentialVersionCoversEverySetting: two definitions of a credential
// that differ anywhere in their settings have different versions (the
// cache key's Version: a reload that changes a credential never serves
// the old value, and a replica with another definition never reads the
// entry another sealed in Redis), however deep, long or aliased the
// settings are. The digest used to stop at depth 64 and after 65,536
// nodes (a budget against alias fan-out): settings differing past either
// had one version. An alias bomb is refused at parse now
// (TestParseYAMLHazards).
func TestCredentialVersionCoversEverySetting(t *testing.T) {
	version := func(t *testing.T, extra string) string {
		src := "credentials:\n  c:\n    provider: policytest\n    value: one\n    extra: " + extra +
			"\nrules:\n  - {name: r, from: \"*\", to: d, inject: {credential: c, as: policytest-inj}}\n" +
			"destinations:\n  d: {hosts: [d.test]}\nworkloads:\n  w: {cidrs: [10.0.0.0/8]}\ndefault: deny\n"
		p := mustParse(t, src)
		return p.Decide(request("w", "GET", "https", "d.test", 443, "/")).Inject.CredentialVersion
	}
	deep := func(depth int, leaf string) string {
		return strings.Repeat("[", depth) + leaf + strings.Repeat("]", depth)
	}
	long := func(n int, last string) string {
		return "[" + strings.Repeat("x, ", n) + last + "]"
	}
	// 300 aliases of a list of 300 nodes: 90,000 nodes to walk, then the
	// setting that differs.
	fanOut := func(last string) string {
		return "{a: &a [" + strings.Repeat("y, ", 299) + "y], b: [" + strings.Repeat("*a, ", 300) + "], z: " + last + "}"
	}
	bomb := func(last string) string {
		var b strings.Builder
		b.WriteString("{l0: &l0 [x, x, x, x, x, x, x, x, x, x]")
		for i := 1; i < 10; i++ {
			fmt.Fprintf(&b, ", l%d: &l%d [%s]", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
		}
		return b.String() + ", z: " + last + "}"
	}
	cases := []struct {
		name string
		a, b string
	}{
		{"shallow", "[a]", "[b]"},
		{"depth 10", deep(10, "a"), deep(10, "b")},
		{"depth 70", deep(70, "a"), deep(70, "b")},
		{"depth 70 vs 71", deep(70, "a"), deep(71, "a")},
		{"70,000 items", long(70000, "a"), long(70000, "b")},
		{"aliased 90,000 nodes", fanOut("a"), fanOut("b")},
	}
	// 10^9 nodes as a tree, 90 in the file: refused before anything
	// walks it (yamlstrict.AliasExpansion), the digest included.
	for _, last := range []string{"a", "b"} {
		src := "credentials:\n  c:\n    provider: policytest\n    value: one\n    extra: " + bomb(last) +
			"\nrules:\n  - {name: r, from: \"*\", to: d, inject: {credential: c, as: policytest-inj}}\n" +
			"destinations:\n  d: {hosts: [d.test]}\nworkloads:\n  w: {cidrs: [10.0.0.0/8]}\ndefault: deny\n"
		if _, err := Parse(t.Context(), "test.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "YAML aliases (*name) expand this policy") {
			t.Errorf("alias bomb: Parse = %v, want the aliases refused", err)
		}
	}
	failed := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := version(t, c.a), version(t, c.b)
			if a == b {
				failed++
				t.Errorf("two definitions that differ have one version %s", a)
			}
			if again := version(t, c.a); again != a {
				t.Errorf("one definition gave versions %s and %s", a, again)
			}
		})
	}
	t.Logf("%d of %d pairs shared a version", failed, len(cases))
}

func TestWorkloads(t *testing.T) {
	p := mustParse(t, `
workloads:
  zeta:
    cidrs: [10.1.0.0/16, "fd00::/8"]
    require: [source]
  alpha:
    require: [source]
rules: []
default: deny
`)
	want := []identity.Spec{
		{Name: "zeta", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00::/8")}, Require: []string{"source"}},
		{Name: "alpha", Require: []string{"source"}},
	}
	if diff := cmp.Diff(want, p.Workloads(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Workloads mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Workloads: 2, Hash: p.Stats().Hash}, p.Stats()); diff != "" || len(p.Stats().Hash) != 64 {
		t.Errorf("Stats mismatch (-want +got):\n%s", diff)
	}
}

func TestCloseCleansUpProviders(t *testing.T) {
	p, err := Parse(context.Background(), "test.yaml", []byte(decidePolicy))
	if err != nil {
		t.Fatal(err)
	}
	prov := p.Decide(request("billing", "POST", "https", "api.stripe.com", 443, "/v1/charges")).Inject.Provider.(*testProvider)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := prov.cleanups.Load(); n != 1 {
		t.Errorf("Cleanup called %d times, want 1", n)
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/v1/charges", "/v1/charges", true},
		{"/v1/charges", "/v1/charges/", false},
		{"/v1/charges*", "/v1/charges", true},
		{"/v1/charges*", "/v1/charges/ch_1/refunds", true},
		{"/v1/*/cards", "/v1/a/b/cards", true},
		{"/v1/*/cards", "/v1/cards", false},
		{"/v1/*/cards", "/v1//cards", true},
		{"/*a*b", "/ab", true},
		{"/*a*b", "/ba", false},
		{"/*ab*ab", "/abab", true},
		{"/*ab*ab", "/aab", false},
		{"/*", "/", true},
		{"/a*a", "/a", false},
	}
	for _, tt := range tests {
		g, msg := compileGlob(tt.pattern)
		if msg != "" {
			t.Fatalf("compileGlob(%q): %s", tt.pattern, msg)
		}
		if got := g.match(tt.path); got != tt.want {
			t.Errorf("glob %q match %q = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func compareDecision(want got, d Decision) string { return cmp.Diff(want, summarise(d)) }

// TestGlobsThatCouldNeverMatch: a rule path the gateway's canonical
// request could never match (it refuses such requests with bad_path, or
// matches the decoded form) is a policy error, not a silent dead rule.
func TestGlobsThatCouldNeverMatch(t *testing.T) {
	for _, tt := range []struct{ pattern, want string }{
		{"/v1//admin", "empty segment"},
		{"/v1/../admin", "dot segment"},
		{"/v1/./x*", "dot segment"},
		{"/v1/..", "dot segment"},
		{"/v1\\admin", `contains "\\"`},
		{"/v1/admin;x", `contains ";"`},
		{"/v1/caf%C3%A9", "write it decoded"},
		{"/v1/group%2Fproject", "write it decoded"},
		{"/v1/\x01", "control character"},
		{"/v1/x／y", "compatibility character"},
		{"/v1/x/‥/y", "compatibility character"},
		{"/v1/.．", "compatibility character"},
		{"/v1/x？", "compatibility character"},
		{"/v1/％2F", "compatibility character"},
		{"/v1/adm\u200bin", "default-ignorable"},
	} {
		if _, msg := compileGlob(tt.pattern); !strings.Contains(msg, tt.want) {
			t.Errorf("compileGlob(%q) = %q, want a message containing %q", tt.pattern, msg, tt.want)
		}
	}
	for _, ok := range []string{"/v1/a b", "/v1/café*", "/v1/東京/*", "/v1/...", "/v1/.well-known/*", "/v1/*", "/",
		"/v1/ａdmin*", "/v1/x‥y", "/v1/議事録（*）.pdf", "/v1/ｆｉｌｅ．ｔｘｔ"} {
		if _, msg := compileGlob(ok); msg != "" {
			t.Errorf("compileGlob(%q): %s", ok, msg)
		}
	}
}
