package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const observePolicy = `
workloads:
  watched:
    cidrs: [10.1.0.0/16]
    mode: observe
  enforced:
    cidrs: [10.2.0.0/16]
    mode: enforce
destinations:
  stripe:
    hosts: [api.stripe.com]
  github:
    hosts: [api.github.com]
  internal:
    hosts: [svc.internal.test]
    allow_private: true
  internal-api:
    hosts: [api.internal.test]
    allow_private: true
  partner:
    hosts: ["*.partner.test"]
    ports: [8443]
    mode: observe
credentials:
  stripe-live:
    provider: policytest
    value: sk_live
rules:
  - name: charges
    from: [watched, enforced]
    to: stripe
    methods: [GET]
    paths: [/v1/charges*]
    inject: {credential: stripe-live, as: policytest-inj}
  - name: no-refunds
    from: [watched, enforced]
    to: github
    action: deny
  - name: gated
    from: [watched, enforced]
    to: internal
    when: 'false'
    action: tunnel
  - name: internal-ok
    from: watched
    to: internal-api
    paths: [/ok]
    inject: {credential: stripe-live, as: policytest-inj}
default: deny
`

// observed is the comparable part of an observe-mode Decision.
type observed struct {
	Outcome, Action, Rule, Code string
	AllowPrivate, Injects       bool
}

func observedOf(d Decision) observed {
	return observed{Outcome: d.Outcome(), Action: d.Action.String(), Rule: d.Rule, Code: d.Code, AllowPrivate: d.AllowPrivate, Injects: d.Inject != nil}
}

func TestObserveMode(t *testing.T) {
	p := mustParse(t, observePolicy)
	global := mustParse(t, "mode: observe\n"+strings.Replace(observePolicy, "    mode: enforce\n", "", 1))
	tests := []struct {
		name string
		p    *Policy
		q    Query
		want observed
	}{
		// A workload in observe mode: every rule refusal goes through
		// without a credential.
		{"no rule, request", p, request("watched", "GET", "https", "unlisted.test", 443, "/x"),
			observed{Outcome: WouldDeny, Action: "forward", Code: "no_rule"}},
		{"no rule, connect tunnels", p, connect("watched", "unlisted.test", 443),
			observed{Outcome: WouldDeny, Action: "tunnel", Code: "no_rule"}},
		{"path not allowed", p, request("watched", "GET", "https", "api.stripe.com", 443, "/v1/refunds"),
			observed{Outcome: WouldDeny, Action: "forward", Code: "path_not_allowed"}},
		{"method not allowed", p, request("watched", "POST", "https", "api.stripe.com", 443, "/v1/charges"),
			observed{Outcome: WouldDeny, Action: "forward", Code: "method_not_allowed"}},
		{"deny rule, connect", p, connect("watched", "api.github.com", 443),
			observed{Outcome: WouldDeny, Action: "tunnel", Rule: "no-refunds", Code: "denied_by_rule"}},
		{"path not allowed keeps the allowing rule's allow_private", p, request("watched", "GET", "https", "api.internal.test", 443, "/other"),
			observed{Outcome: WouldDeny, Action: "forward", Code: "path_not_allowed", AllowPrivate: true}},
		{"condition not met on a request never allows private", p, request("watched", "GET", "https", "svc.internal.test", 443, "/x"),
			observed{Outcome: WouldDeny, Action: "forward", Code: "condition_not_met"}},
		{"condition not met never allows private", p, connect("watched", "svc.internal.test", 443),
			observed{Outcome: WouldDeny, Action: "tunnel", Code: "condition_not_met"}},
		// What the policy allows is unchanged.
		{"allowed still injects", p, request("watched", "GET", "https", "api.stripe.com", 443, "/v1/charges/ch_1"),
			observed{Outcome: "inject", Action: "inject", Rule: "charges", Injects: true}},
		{"a rule that must see requests still intercepts", p, connect("watched", "api.stripe.com", 443),
			observed{Outcome: "intercept", Action: "intercept", Rule: "charges"}},
		// Other refusals still refuse.
		{"bad method still refused", p, request("watched", "get", "https", "api.stripe.com", 443, "/v1/charges"),
			observed{Outcome: "deny", Action: "deny", Code: CodeBadMethod}},
		{"plaintext inject still refused", p, request("watched", "GET", "http", "api.stripe.com", 80, "/v1/charges"),
			observed{Outcome: "deny", Action: "deny", Rule: "charges", Code: "plaintext_not_allowed"}},
		// A workload not in observe mode is refused.
		{"enforced workload refused", p, request("enforced", "GET", "https", "unlisted.test", 443, "/x"),
			observed{Outcome: "deny", Action: "deny", Code: "no_rule"}},
		{"anonymous refused", p, request("", "GET", "https", "unlisted.test", 443, "/x"),
			observed{Outcome: "deny", Action: "deny", Code: "no_rule"}},
		// A destination in observe mode, for every caller, on its ports only.
		{"destination in observe mode", p, request("enforced", "GET", "https", "a.partner.test", 8443, "/x"),
			observed{Outcome: WouldDeny, Action: "forward", Code: "no_rule"}},
		{"destination in observe mode, anonymous connect", p, connect("", "b.partner.test", 8443),
			observed{Outcome: WouldDeny, Action: "tunnel", Code: "no_rule"}},
		{"destination in observe mode, other port", p, connect("enforced", "a.partner.test", 443),
			observed{Outcome: "deny", Action: "deny", Code: "no_rule"}},
		// mode: observe at the top covers everyone.
		{"global observe", global, request("enforced", "DELETE", "https", "unlisted.test", 443, "/x"),
			observed{Outcome: WouldDeny, Action: "forward", Code: "no_rule"}},
		{"global observe, anonymous", global, connect("", "unlisted.test", 443),
			observed{Outcome: WouldDeny, Action: "tunnel", Code: "no_rule"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.p.Decide(tt.q)
			if diff := cmp.Diff(tt.want, observedOf(d)); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			if d.WouldDeny && (d.Inject != nil || d.AllowPrivate && d.Code != "path_not_allowed" && d.Code != "method_not_allowed" || d.EncodedSlashes || d.EncodedDelimiters || d.RuleLimit != nil) {
				t.Errorf("would_deny decision carries a credential or a loosening: %+v", d)
			}
			if d.WouldDeny && !strings.Contains(d.Reason, "observe mode") {
				t.Errorf("reason %q does not say observe mode", d.Reason)
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	for _, tt := range []struct {
		d    Decision
		want string
	}{
		{Decision{Action: Forward, WouldDeny: true}, WouldDeny},
		{Decision{Action: Tunnel, WouldDeny: true}, WouldDeny},
		{Decision{Action: Deny, WouldDeny: true}, "deny"}, // refused later (upstream unreachable)
		{Decision{Action: Inject}, "inject"},
	} {
		if got := tt.d.Outcome(); got != tt.want {
			t.Errorf("%+v.Outcome() = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestModeErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"top level", "mode: watch\nrules: []\ndefault: deny\n",
			`test.yaml:1:7: policy: mode "watch" must be enforce`},
		{"workload", "workloads:\n  a:\n    cidrs: [10.0.0.0/8]\n    mode: [observe]\ndefault: deny\n",
			`test.yaml:4:11: workload "a" mode must be`},
		{"destination", "destinations:\n  d:\n    hosts: [a.test]\n    mode: Observe\ndefault: deny\n",
			`test.yaml:4:11: destination "d": mode "Observe" must be enforce`},
		{"mode is no selector", "workloads:\n  a:\n    mode: observe\ndefault: deny\n",
			`test.yaml:2:3: workload "a" has no selector`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(context.Background(), "test.yaml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// privateReachPolicy has destinations that allow private addresses and
// rules that name them without letting every caller reach them: a deny
// rule with paths, a rule for one workload only, and a rule whose
// condition only one workload meets.
const privateReachPolicy = `
workloads:
  billing:
    cidrs: [10.1.0.0/16]
  web:
    cidrs: [10.2.0.0/16]
destinations:
  vault:
    hosts: [vault.internal.test]
    allow_private: true
  gated:
    hosts: [gated.internal.test]
    allow_private: true
credentials:
  tok:
    provider: policytest
    value: v
rules:
  - name: vault-sys-blocked
    from: [billing, web]
    to: vault
    paths: [/v1/sys*]
    action: deny
  - name: vault-read
    from: billing
    to: vault
    methods: [GET]
    paths: [/v1/secret/*]
    inject: {credential: tok, as: policytest-inj}
  - name: gated
    from: [billing, web]
    to: gated
    methods: [GET]
    paths: [/v1/*]
    when: 'workload.name == "billing"'
    inject: {credential: tok, as: policytest-inj}
default: deny
`

// TestObserveNeverLoosensBeyondWouldDeny compares every decision of a
// policy with the same policy in observe mode, over a cross product of
// callers, hosts, ports, methods and paths: an allowed decision is the
// same; a refusal either stays the same or (for the rules' own codes
// only) becomes a would_deny Tunnel/Forward that injects nothing and
// admits no encoded slash. A would_deny allows special-purpose addresses
// only where the enforced policy lets the same caller reach the same
// host and port, with allow_private, by another method or path of the
// set: never through a deny rule, a rule of another caller, or a rule
// whose condition this caller does not meet.
func TestObserveNeverLoosensBeyondWouldDeny(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		hosts     []string
		paths     []string
	}{
		{"decide", decidePolicy,
			[]string{"api.stripe.com", "x.api.stripe.com", "plain.test", "api.github.com", "svc.internal.test", "10.0.0.5", "::1", "api.folded.test", "http-intake.datadoghq.com", "unknown.test"},
			[]string{"/", "/v1/refunds/1", "/v1/charges", "/v1/balance", "/repos/x", "/api/items/admin", "/API/ITEMS/ADMIN"}},
		{"private reach", privateReachPolicy,
			[]string{"vault.internal.test", "gated.internal.test", "unknown.test"},
			[]string{"/", "/v1/sys/seal", "/v1/secret/x", "/v1/x", "/other"}},
	} {
		t.Run(tc.name, func(t *testing.T) { observeNeverLoosens(t, tc.src, tc.hosts, tc.paths) })
	}
}

func observeNeverLoosens(t *testing.T, src string, hosts, paths []string) {
	enforce := mustParse(t, src)
	observe := mustParse(t, "mode: observe\n"+src)
	callers := []string{"billing", "web", ""}
	ports := []int{0, 80, 443, 8080, 8443}
	methods := []string{"GET", "POST", "DELETE", "get", "TRACE", "CONNECT"}
	var queries []Query
	for _, who := range callers {
		for _, h := range hosts {
			for _, port := range ports {
				queries = append(queries, connect(who, h, port))
				for _, scheme := range []string{"https", "http"} {
					for _, m := range methods {
						for _, p := range paths {
							queries = append(queries, request(who, m, scheme, h, port, p))
						}
					}
				}
			}
		}
	}
	// reach: the caller, host and port the enforced policy lets through
	// (inject or forward) to special-purpose addresses for some query.
	type where struct {
		who, scheme, host string
		port              int
	}
	whereOf := func(q Query) where {
		w := where{q.Workload.Name, q.Scheme, q.Host, q.Port}
		if q.Connect {
			w.scheme = "https"
		}
		if w.port == 0 {
			w.port = 443
			if w.scheme == "http" {
				w.port = 80
			}
		}
		return w
	}
	reach := map[where]bool{}
	for _, q := range queries {
		if e := enforce.Decide(q); (e.Action == Inject || e.Action == Forward || e.Action == Tunnel) && e.AllowPrivate {
			reach[whereOf(q)] = true
		}
	}
	wouldDeny := 0
	for _, q := range queries {
		e, o := enforce.Decide(q), observe.Decide(q)
		what := q.Workload.Name + " " + q.Method + " " + q.Scheme + "://" + q.Host + q.Path
		if e.Action != Deny || !observable[e.Code] {
			if diff := cmp.Diff(summarise(e), summarise(o)); diff != "" || o.WouldDeny {
				t.Errorf("%s (connect %v): observe mode changed a decision it must not change (-enforce +observe):\n%s", what, q.Connect, diff)
			}
			continue
		}
		wouldDeny++
		want := Forward
		if q.Connect {
			want = Tunnel
		}
		switch {
		case !o.WouldDeny || o.Action != want || o.Code != e.Code:
			t.Errorf("%s (connect %v): %+v, want a would_deny %s with code %s", what, q.Connect, summarise(o), want, e.Code)
		case o.Inject != nil || o.RuleLimit != nil || o.EncodedSlashes || o.EncodedDelimiters:
			t.Errorf("%s (connect %v): would_deny carries a credential, a rule limit or encoded slashes: %+v", what, q.Connect, o)
		case o.AllowPrivate && e.Code != "path_not_allowed" && e.Code != "method_not_allowed":
			t.Errorf("%s (connect %v): would_deny %s allows special-purpose addresses", what, q.Connect, e.Code)
		case o.AllowPrivate && !reach[whereOf(q)]:
			t.Errorf("%s (connect %v): would_deny %s allows special-purpose addresses the enforced policy lets this caller reach by no request", what, q.Connect, e.Code)
		}
	}
	if wouldDeny == 0 {
		t.Fatal("no query became would_deny")
	}
}
