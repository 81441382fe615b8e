package policy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
)

func TestParseWorkloadSelectors(t *testing.T) {
	src := `workloads:
  billing-api:
    spiffe: spiffe://prod.example.org/ns/billing/sa/api
    namespace: billing
    service_account: [api, api-v2]
    require: [mtls, jwt]
    bind_token_to_cert: true
  billing-any:
    spiffe: ["spiffe://prod.example.org/ns/billing/*", "spiffe://staging.example.org/*"]
  deploy:
    claims: {repository: example/app, environment: prod}
    cidrs: [10.0.0.0/8]
default: deny
`
	p, err := Parse(context.Background(), "p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	want := []identity.Spec{
		{Name: "billing-api", Require: []string{"mtls", "jwt"}, SPIFFE: []identity.SPIFFEPattern{identity.MustParseSPIFFEPattern("spiffe://prod.example.org/ns/billing/sa/api")},
			Namespaces: []string{"billing"}, ServiceAccounts: []string{"api", "api-v2"}, BindTokenToCert: true},
		{Name: "billing-any", SPIFFE: []identity.SPIFFEPattern{identity.MustParseSPIFFEPattern("spiffe://prod.example.org/ns/billing/*"), identity.MustParseSPIFFEPattern("spiffe://staging.example.org/*")}},
		{Name: "deploy", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Claims: map[string]string{"repository": "example/app", "environment": "prod"}},
	}
	byString := cmp.Comparer(func(a, b identity.SPIFFEPattern) bool { return a.String() == b.String() })
	if diff := cmp.Diff(want, p.Workloads(), byString, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("workloads (-want +got):\n%s", diff)
	}
}

func TestParseSelectorErrors(t *testing.T) {
	src := `workloads:
  a:
    spiffe: [spiffe://example.org, "spiffe://example.org/ns/*/x"]
    namespace: "bad ns"
    claims: [x]
  b:
    claims: {team: [a]}
    bind_token_to_cert: "yes"
  c:
    bind_token_to_cert: true
default: deny
`
	_, err := Parse(context.Background(), "p.yaml", []byte(src))
	want := []string{
		`p.yaml:3:14: workload "a": spiffe pattern "spiffe://example.org" names a trust domain, not a workload; write spiffe://example.org/* to select every ID in it`,
		`p.yaml:3:36: workload "a": spiffe pattern "spiffe://example.org/ns/*/x": '*' is only allowed as the whole last segment, like spiffe://example.org/ns/billing/*`,
		`p.yaml:4:16: workload "a": namespace "bad ns" is not a Kubernetes name`,
		`p.yaml:5:13: workload "a" claims must be a mapping of name: settings`,
		`p.yaml:7:20: workload "b" claims team must be a single value`,
		`p.yaml:8:25: workload "b" bind_token_to_cert must be true or false`,
		`p.yaml:9:3: workload "c" has no selector and would never match; set cidrs, spiffe, namespace, service_account, claims and/or require`,
	}
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

const condBase = `workloads:
  billing:
    cidrs: [10.1.0.0/16]
destinations:
  stripe:
    hosts: [api.stripe.com]
credentials:
  live:
    provider: policytest
    value: sk
rules:
`

// TestConditionErrors: `when:` is compiled and type-checked at load, and
// each problem is reported at its position in the file.
func TestConditionErrors(t *testing.T) {
	tests := []struct {
		name string
		rule string
		want []string
	}{
		{"undeclared variable, plain scalar", `  - name: r
    from: billing
    to: stripe
    action: deny
    when: workload.nme == "x"
`, []string{`p.yaml:16:11: rule "r" (rules[0]) when: unknown name at column 1 of "workload.nme == \"x\"": "workload.nme" is not a name conditions know; hint: conditions can use workload.name, workload.source, workload.factors, workload.attributes, workload.posture, request.method, request.scheme, request.host, request.port, request.path, request.headers, now; a string value is quoted (request.method == "GET")`}},
		{"type error, single-quoted", `  - name: r
    from: billing
    to: stripe
    action: deny
    when: 'workload.name + 1 == 2'
`, []string{`p.yaml:16:26: rule "r" (rules[0]) when: type error at column 15 of "workload.name + 1 == 2": "+" cannot be applied to string and int; hint: numbers (request.port, now.getHours()) compare with numbers (request.port == 443), strings with quoted strings (request.method == "GET")`}},
		{"type error on the second line of a literal block", `  - name: r
    from: billing
    to: stripe
    action: deny
    when: |
      request.method == "GET" &&
        request.port == "443"
`, []string{`p.yaml:18:22: rule "r" (rules[0]) when: type error at line 2, column 16 of "request.method == \"GET\" && request.port == \"443\"": "==" cannot be applied to int and string; hint: numbers (request.port, now.getHours()) compare with numbers (request.port == 443), strings with quoted strings (request.method == "GET")`}},
		{"syntax error", `  - name: r
    from: billing
    to: stripe
    action: deny
    when: "request.method =="
`, []string{`p.yaml:16:29: rule "r" (rules[0]) when: syntax error at column 18 of "request.method ==": the condition ends where a value or a closing bracket is expected; hint: complete the expression after its last operator (request.method == "GET"), or close every ( [ {`}},
		{"not a boolean", `  - name: r
    from: billing
    to: stripe
    action: deny
    when: request.path
`, []string{`p.yaml:16:11: rule "r" (rules[0]) when: "request.path" is of type string, but a condition must be true or false; hint: compare it (request.path == "/v1/x", request.path.startsWith("/v1/")) or test a key ("patched" in workload.posture)`}},
		{"tunnel rule reading the request", `  - name: r
    from: billing
    to: stripe
    action: tunnel
    when: request.method == "GET"
`, []string{`p.yaml:16:11: rule "r" (rules[0]): a tunnel rule's condition cannot use request, because the gateway does not see requests inside a tunnel; use workload and now only, or use inject or deny`}},
		{"empty", `  - name: r
    from: billing
    to: stripe
    action: deny
    when: " "
`, []string{`p.yaml:16:11: rule "r" (rules[0]): when is empty; write a condition such as workload.posture.patched, or remove it`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(context.Background(), "p.yaml", []byte(condBase+tt.rule+"default: deny\n"))
			var el ErrorList
			if !errors.As(err, &el) {
				t.Fatalf("error %v is not an ErrorList", err)
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

const condPolicy = `workloads:
  billing:
    spiffe: "spiffe://prod.example.org/ns/billing/*"
  web:
    cidrs: [10.2.0.0/16]
destinations:
  stripe:
    hosts: [api.stripe.com]
  datadog:
    hosts: [intake.datadoghq.com]
  github:
    hosts: [api.github.com]
credentials:
  live:
    provider: policytest
    value: sk
rules:
  - name: quarantine
    from: "*"
    to: stripe
    action: deny
    when: has(workload.posture.quarantined) && workload.posture.quarantined
  - name: charges
    from: billing
    to: stripe
    methods: [POST]
    when: >-
      workload.posture.patched && now.getHours() < 22 &&
      request.headers["x-change-ticket"].startsWith("CHG-") &&
      workload.factors.mtls.trust_domain == "prod.example.org"
    inject: {credential: live, as: policytest-inj}
  - name: reads
    from: billing
    to: stripe
    methods: [GET]
    inject: {credential: live, as: policytest-inj}
  - name: telemetry
    from: "*"
    to: datadog
    action: tunnel
    when: workload.posture.scan_age_days < 7
  - name: gh
    from: web
    to: github
    when: workload.posture.missing_key
    inject: {credential: live, as: policytest-inj}
default: deny
`

func TestDecideConditions(t *testing.T) {
	p, err := Parse(context.Background(), "p.yaml", []byte(condPolicy))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	billing := identity.Workload{Name: "billing", Source: netip.MustParseAddr("10.9.0.1"),
		Factors: []identity.Factor{{Kind: "mtls", Subject: "spiffe://prod.example.org/ns/billing/sa/api",
			Attributes: map[string]string{"trust_domain": "prod.example.org", "spiffe_id": "spiffe://prod.example.org/ns/billing/sa/api"}}},
		Posture: map[string]any{"patched": true, "scan_age_days": int64(3)}}
	unpatched := billing
	unpatched.Posture = map[string]any{"patched": false, "scan_age_days": 30.5}
	quarantined := billing
	quarantined.Posture = map[string]any{"patched": true, "quarantined": true}
	web := identity.Workload{Name: "web", Source: netip.MustParseAddr("10.2.0.1")}
	day := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	night := time.Date(2030, 1, 1, 23, 0, 0, 0, time.UTC)
	ticket := http.Header{"X-Change-Ticket": {"CHG-42"}, "Authorization": {"Bearer client-secret"}}

	tests := []struct {
		name     string
		q        Query
		wantAct  Action
		wantRule string
		wantCode string
	}{
		{"CONNECT to a host with conditional rules intercepts", Query{Workload: billing, Connect: true, Host: "api.stripe.com", Port: 443}, Intercept, "quarantine", ""},
		{"all conditions hold", Query{Workload: billing, Scheme: "https", Host: "api.stripe.com", Method: "POST", Path: "/v1/charges", Header: ticket, Now: day}, Inject, "charges", ""},
		{"after hours", Query{Workload: billing, Scheme: "https", Host: "api.stripe.com", Method: "POST", Path: "/v1/charges", Header: ticket, Now: night}, Deny, "", "condition_not_met"},
		{"missing ticket header is an evaluation error, refused", Query{Workload: billing, Scheme: "https", Host: "api.stripe.com", Method: "POST", Path: "/v1/charges", Now: day}, Deny, "charges", "condition_error"},
		{"unpatched", Query{Workload: unpatched, Scheme: "https", Host: "api.stripe.com", Method: "POST", Path: "/v1/charges", Header: ticket, Now: day}, Deny, "", "condition_not_met"},
		{"a false condition on a deny rule lets later rules decide", Query{Workload: billing, Scheme: "https", Host: "api.stripe.com", Method: "GET", Path: "/v1/x", Now: day}, Inject, "reads", ""},
		{"quarantined is denied by the conditional deny rule", Query{Workload: quarantined, Scheme: "https", Host: "api.stripe.com", Method: "GET", Path: "/v1/x", Now: day}, Deny, "quarantine", "denied_by_rule"},
		{"tunnel condition holds at CONNECT", Query{Workload: billing, Connect: true, Host: "intake.datadoghq.com", Port: 443}, Tunnel, "telemetry", ""},
		{"tunnel condition false at CONNECT", Query{Workload: unpatched, Connect: true, Host: "intake.datadoghq.com", Port: 443}, Deny, "", "condition_not_met"},
		{"no posture: the key is missing, refused", Query{Workload: web, Scheme: "https", Host: "api.github.com", Method: "GET", Path: "/"}, Deny, "gh", "condition_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.q)
			if d.Action != tt.wantAct || d.Rule != tt.wantRule || d.Code != tt.wantCode {
				t.Fatalf("Decide = %v rule %q code %q (%s), want %v rule %q code %q", d.Action, d.Rule, d.Code, d.Reason, tt.wantAct, tt.wantRule, tt.wantCode)
			}
			if strings.Contains(d.Reason, "client-secret") {
				t.Errorf("reason %q contains a header secret", d.Reason)
			}
		})
	}
}

// TestConditionHidesCredentials: conditions cannot read the headers that
// carry credentials.
func TestConditionHidesCredentials(t *testing.T) {
	rule := `  - name: r
    from: billing
    to: stripe
    when: '!("authorization" in request.headers) && !("proxy-authorization" in request.headers) && request.headers["x-a"] == "1, 2"'
    inject: {credential: live, as: policytest-inj}
`
	p, err := Parse(context.Background(), "p.yaml", []byte(condBase+rule+"default: deny\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d := p.Decide(Query{Workload: identity.Workload{Name: "billing"}, Scheme: "https", Host: "api.stripe.com", Method: "GET", Path: "/",
		Header: http.Header{"Authorization": {"Bearer x"}, "Proxy-Authorization": {"Bearer y"}, "X-A": {"1, 2"}}})
	if d.Action != Inject {
		t.Fatalf("Decide = %v %s: %s", d.Action, d.Code, d.Reason)
	}
}

func BenchmarkDecideCondition(b *testing.B) {
	p, err := Parse(context.Background(), "p.yaml", []byte(condPolicy))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	q := Query{Workload: identity.Workload{Name: "billing", Posture: map[string]any{"patched": true},
		Factors: []identity.Factor{{Kind: "mtls", Attributes: map[string]string{"trust_domain": "prod.example.org"}}}},
		Scheme: "https", Host: "api.stripe.com", Method: "POST", Path: "/v1/charges",
		Header: http.Header{"X-Change-Ticket": {"CHG-1"}}, Now: time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)}
	if d := p.Decide(q); d.Action != Inject {
		b.Fatalf("Decide = %v %s", d.Action, d.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(q)
	}
}

// TestReadsHeaders: Policy.ReadsHeaders is true exactly when a rule's
// `when:` reads request.headers, however it reads them (the gateway keeps
// a request's headers for deciding it again after a reload only then).
func TestReadsHeaders(t *testing.T) {
	base := `workloads: {w: {cidrs: [10.0.0.0/8]}}
destinations: {d: {hosts: [d.example]}}
rules:
  - name: r
    from: w
    to: d
    action: tunnel
%s
default: deny
`
	for when, want := range map[string]bool{
		``:                                 false,
		`    when: 'now.getHours() < 25'`:  false,
		`    when: 'workload.name == "w"'`: false,
		`  - {name: h, from: w, to: d, when: 'request.method == "GET"', action: deny}`:             false,
		`  - {name: h, from: w, to: d, when: '"x-a" in request.headers', action: deny}`:            true,
		`  - {name: h, from: w, to: d, when: 'request.headers["x-a"] == "1"', action: deny}`:       true,
		`  - {name: h, from: w, to: d, when: 'request.headers.exists(k, k == "x")', action: deny}`: true,
	} {
		src := fmt.Sprintf(base, when)
		p, err := Parse(context.Background(), "p.yaml", []byte(src))
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if got := p.ReadsHeaders(); got != want {
			t.Errorf("%s: ReadsHeaders %v, want %v", when, got, want)
		}
		p.Close()
	}
}

// TestConditionTimeZones checks that a time zone a condition names as a
// literal is refused at load exactly when CEL could not evaluate it (every
// request the rule covers would be refused as condition_error): the
// load-time check and CEL's evaluation agree on each zone, for every
// timestamp accessor that takes one.
func TestConditionTimeZones(t *testing.T) {
	env, err := conditionEnv()
	if err != nil {
		t.Fatal(err)
	}
	zones := []string{
		"Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires", "Asia/Kolkata", "", "Local",
		"+01:00", "-23:59", "+00:00", "01:30", "-05:30",
		"Europe/Berlinn", "CEST", "europe/berlin", "Mars/Olympus", "+24:00", "+01:60", "+1:x", "x:00", ":", "+01:00:00",
	}
	accessors := []string{"getHours", "getDayOfWeek", "getFullYear", "getMilliseconds"}
	now := time.Date(2026, 12, 3, 23, 0, 0, 0, time.UTC)
	for _, tz := range zones {
		for _, fn := range accessors {
			src := fmt.Sprintf("now.%s(%q) >= 0", fn, tz)
			// What CEL does at evaluation, without the load-time check.
			ast, iss := env.Compile(src)
			if iss.Err() != nil {
				t.Fatalf("%s: %v", src, iss.Err())
			}
			prg, err := env.Program(ast)
			if err != nil {
				t.Fatal(err)
			}
			_, _, evalErr := prg.Eval(map[string]any{"now": now})
			_, issues := compileCondition(src)
			if tz == "Local" {
				// Evaluates, on the host's zone: refused at load all
				// the same (TestConditionTimeZoneLocal).
				evalErr = errors.New("host-dependent")
			}
			if (evalErr != nil) != (len(issues) > 0) {
				t.Errorf("%s: CEL evaluation error %v, load-time issues %v; want both or neither", src, evalErr, issues)
			}
			for _, is := range issues {
				if !strings.Contains(is.msg, fmt.Sprintf("%q", tz)) || is.col != strings.Index(src, `"`) {
					t.Errorf("%s: issue %+v, want one naming %q at column %d", src, is, tz, strings.Index(src, `"`))
				}
			}
		}
	}
	// A zone from a variable cannot be checked at load; it is left to
	// evaluation (which fails closed).
	if _, issues := compileCondition(`now.getHours(workload.attributes["tz"]) >= 0`); len(issues) > 0 {
		t.Errorf("a zone from a variable: %v", issues)
	}
}

// TestConditionTimeZoneLocal: "Local" is the gateway host's zone (TZ,
// /etc/localtime): a condition naming it would decide differently on
// replicas set up differently, and is UTC in the container image. It is
// a load error that says to name the zone.
func TestConditionTimeZoneLocal(t *testing.T) {
	for _, src := range []string{`now.getHours("Local") < 22`, `now.getDayOfWeek("Local") == 1 || now.getHours("UTC") == 3`} {
		_, issues := compileCondition(src)
		if len(issues) != 1 || !strings.Contains(issues[0].msg, `"Local" is the gateway host's own`) || !strings.Contains(issues[0].msg, `"Europe/Berlin"`) {
			t.Errorf("%s: issues %+v, want one saying to name the zone", src, issues)
		}
	}
}

// TestConditionRepeatedHeader: a condition that reads a header the
// request sends in more than one field line, in any way CEL can read a
// map's value (index, select, has(), in, a macro's value), refuses the
// request as condition_error: its joined value is not what an upstream
// that takes one of the lines reads ("X-Act-As: bob" and "X-Act-As:
// admin" join to "bob, admin", which does not start with "admin"). A
// condition that reads other headers, only the keys, or nothing of them
// decides as before.
func TestConditionRepeatedHeader(t *testing.T) {
	web := identity.Workload{Name: "web", Source: netip.MustParseAddr("10.2.0.1")}
	twice := http.Header{"X-Act-As": {"bob", "admin"}, "Tenant": {"a", "b"}, "Other": {"y"}}
	spellings := http.Header{"X-Act-As": {"bob"}, "x-act-as": {"admin"}, "Other": {"y"}}
	once := http.Header{"X-Act-As": {"bob"}, "Tenant": {"a"}, "Other": {"y"}}
	refused := []string{
		`!request.headers["x-act-as"].startsWith("admin")`,
		`request.headers["x-act-as"] == "bob"`,
		`request.headers.tenant == "a"`,
		`has(request.headers.tenant)`,
		`!has(request.headers.tenant)`,
		`"tenant" in request.headers`,
		`!("x-act-as" in request.headers)`,
		`request.headers.exists(k, request.headers[k] == "admin") == false`,
		`request.headers.all(k, request.headers[k] != "admin")`,
		`request.headers.filter(k, request.headers[k].size() > 0).size() > 0`,
	}
	// Conditions that do not read a repeated field's value.
	decided := []string{
		`request.headers["other"] == "y"`,
		`request.headers.size() > 0`,
		`request.headers.all(k, k != "nothing")`,
		`request.method == "GET" || request.headers["x-act-as"] == "bob"`,
	}
	const pol = `workloads:
  web:
    cidrs: [10.2.0.0/16]
destinations:
  api:
    hosts: [api.example.com]
credentials:
  live:
    provider: policytest
    value: sk
rules:
  - name: act
    from: web
    to: api
    when: '%s'
    inject: {credential: live, as: policytest-inj}
default: deny
`
	decide := func(t *testing.T, expr string, h http.Header) Decision {
		t.Helper()
		p, err := Parse(context.Background(), "p.yaml", []byte(fmt.Sprintf(pol, expr)))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		return p.Decide(Query{Workload: web, Scheme: "https", Host: "api.example.com", Method: "GET", Path: "/", Header: h})
	}
	for _, expr := range refused {
		for name, h := range map[string]http.Header{"two lines": twice, "two spellings": spellings} {
			if name == "two spellings" && !strings.Contains(expr, "x-act-as") {
				continue
			}
			t.Run(name+"/"+expr, func(t *testing.T) {
				d := decide(t, expr, h)
				if d.Action != Deny || d.Code != "condition_error" {
					t.Fatalf("Decide = %v code %q (%s), want deny condition_error", d.Action, d.Code, d.Reason)
				}
				if !strings.Contains(d.Reason, "field lines") || !strings.Contains(d.Reason, "send it once") {
					t.Errorf("reason %q does not name the repeated field and the fix", d.Reason)
				}
			})
			t.Run("once/"+expr, func(t *testing.T) {
				if d := decide(t, expr, once); d.Code == "condition_error" {
					t.Fatalf("a field sent once: %v code %q (%s)", d.Action, d.Code, d.Reason)
				}
			})
		}
	}
	for _, expr := range decided {
		t.Run("decided/"+expr, func(t *testing.T) {
			if d := decide(t, expr, twice); d.Action != Inject {
				t.Fatalf("Decide = %v code %q (%s), want inject", d.Action, d.Code, d.Reason)
			}
		})
	}
}
