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

// TestObserveNeverLoosensBeyondWouldDeny compares every decision of a
// policy with the same policy in observe mode, over a cross product of
// callers, hosts, ports, methods and paths: an allowed decision is the
// same; a refusal either stays the same or (for the rules' own codes
// only) becomes a would_deny Tunnel/Forward that injects nothing, allows
// no special-purpose address unless a rule lets the caller reach the
// destination, and admits no encoded slash.
func TestObserveNeverLoosensBeyondWouldDeny(t *testing.T) {
	enforce := mustParse(t, decidePolicy)
	observe := mustParse(t, "mode: observe\n"+decidePolicy)
	callers := []string{"billing", "web", ""}
	hosts := []string{"api.stripe.com", "x.api.stripe.com", "plain.test", "api.github.com", "svc.internal.test", "10.0.0.5", "::1", "api.folded.test", "http-intake.datadoghq.com", "unknown.test"}
	ports := []int{0, 80, 443, 8080, 8443}
	methods := []string{"GET", "POST", "DELETE", "get", "TRACE", "CONNECT"}
	paths := []string{"/", "/v1/refunds/1", "/v1/charges", "/v1/balance", "/repos/x", "/api/items/admin", "/API/ITEMS/ADMIN"}
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
		case o.Inject != nil || o.RuleLimit != nil || o.EncodedSlashes:
			t.Errorf("%s (connect %v): would_deny carries a credential, a rule limit or encoded slashes: %+v", what, q.Connect, o)
		case o.AllowPrivate && e.Code != "path_not_allowed" && e.Code != "method_not_allowed":
			t.Errorf("%s (connect %v): would_deny %s allows special-purpose addresses", what, q.Connect, e.Code)
		}
	}
	if wouldDeny == 0 {
		t.Fatal("no query became would_deny")
	}
}
