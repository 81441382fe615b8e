package policy

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const rateLimitPolicy = `
workloads:
  billing:
    cidrs: [10.1.0.0/16]
    rate_limit: {rps: 50, burst: 100}
  web:
    cidrs: [10.2.0.0/16]
destinations:
  stripe:
    hosts: [api.stripe.com]
  tunnelled:
    hosts: [t.example.com]
  blocked:
    hosts: [blocked.example.com]
credentials:
  key:
    provider: policytest
    value: v
rules:
  - name: charges
    from: [billing, web]
    to: stripe
    paths: [/v1/charges*]
    inject: {credential: key, as: policytest-inj}
    rate_limit: {rps: 2.5}
  - name: stripe-other
    from: "*"
    to: stripe
    action: tunnel
    rate_limit: {rps: 1, burst: 2}
  - name: tunnel
    from: ["*", anonymous]
    to: tunnelled
    action: tunnel
    rate_limit: {rps: 0.5, burst: 3}
  - name: blocked
    from: "*"
    to: blocked
    action: deny
default: deny
`

func TestRateLimitDecisions(t *testing.T) {
	p := mustParse(t, rateLimitPolicy)
	type limits struct{ Rule, Workload *RateLimit }
	b50 := &RateLimit{RPS: 50, Burst: 100}
	tests := []struct {
		name string
		q    Query
		want limits
	}{
		{"inject, both limits", request("billing", "POST", "https", "api.stripe.com", 443, "/v1/charges"), limits{&RateLimit{RPS: 2.5, Burst: 3}, b50}},
		{"inject, rule limit only", request("web", "POST", "https", "api.stripe.com", 443, "/v1/charges"), limits{&RateLimit{RPS: 2.5, Burst: 3}, nil}},
		// charges makes the gateway intercept api.stripe.com: each request
		// stripe-other forwards counts against its limit.
		{"forward by a tunnel rule inside an intercepted connection", request("billing", "GET", "https", "api.stripe.com", 443, "/v1/other"), limits{&RateLimit{RPS: 1, Burst: 2}, b50}},
		{"tunnel at CONNECT", connect("billing", "t.example.com", 443), limits{&RateLimit{RPS: 0.5, Burst: 3}, b50}},
		{"anonymous tunnel", connect("", "t.example.com", 443), limits{&RateLimit{RPS: 0.5, Burst: 3}, nil}},
		{"intercept carries none", connect("billing", "api.stripe.com", 443), limits{}},
		{"deny carries none", request("billing", "GET", "https", "blocked.example.com", 443, "/"), limits{}},
		{"no rule carries none", request("billing", "GET", "https", "nowhere.example.com", 443, "/"), limits{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.q)
			if diff := cmp.Diff(tt.want, limits{d.RuleLimit, d.WorkloadLimit}); diff != "" {
				t.Errorf("limits (-want +got):\n%s", diff)
			}
		})
	}
	// Observe mode: a would_deny request (or tunnelled CONNECT) counts
	// against its workload's limit, never a rule's (docs/policy.md
	// "Observe mode").
	obs := mustParse(t, "mode: observe\n"+rateLimitPolicy)
	for _, tt := range []struct {
		name string
		q    Query
		want limits
	}{
		{"would_deny, no rule", request("billing", "GET", "https", "nowhere.example.com", 443, "/"), limits{nil, b50}},
		{"would_deny, deny rule", request("billing", "GET", "https", "blocked.example.com", 443, "/"), limits{nil, b50}},
		{"would_deny CONNECT", connect("billing", "blocked.example.com", 443), limits{nil, b50}},
		{"would_deny, workload without a limit", request("web", "GET", "https", "nowhere.example.com", 443, "/"), limits{}},
		{"allowed, as in enforce mode", request("billing", "POST", "https", "api.stripe.com", 443, "/v1/charges"), limits{&RateLimit{RPS: 2.5, Burst: 3}, b50}},
	} {
		t.Run("observe/"+tt.name, func(t *testing.T) {
			d := obs.Decide(tt.q)
			if diff := cmp.Diff(tt.want, limits{d.RuleLimit, d.WorkloadLimit}); diff != "" {
				t.Errorf("limits (-want +got):\n%s", diff)
			}
			if wd := d.Outcome() == WouldDeny; wd != (tt.name != "allowed, as in enforce mode") {
				t.Errorf("outcome %s", d.Outcome())
			}
		})
	}
	if got := p.WorkloadRateLimit("web"); got != nil {
		t.Errorf("WorkloadRateLimit(web) = %v, want nil", got)
	}
	if got := (RateLimit{RPS: 2.5, Burst: 3}).String(); got != "2.5 requests/s, burst 3" {
		t.Errorf("String() = %q", got)
	}
}

func TestRateLimitParseErrors(t *testing.T) {
	const head = `workloads:
  w:
    cidrs: [10.0.0.0/8]
`
	const tail = `destinations:
  d: {hosts: [d.example.com]}
credentials:
  c: {provider: policytest, value: v}
`
	tests := []struct {
		name, src string
		want      []string
	}{
		{"not a mapping", head + "    rate_limit: 50\ndefault: deny\n", []string{
			`p.yaml:4:17: workload "w" rate_limit must be a mapping like {rps: 50, burst: 100}`}},
		{"no rps", head + "    rate_limit: {burst: 5}\ndefault: deny\n", []string{
			`p.yaml:4:17: workload "w" rate_limit has no rps; add rps: <requests per second>`}},
		{"bad values", head + tail + `rules:
  - {name: a, from: w, to: d, action: tunnel, rate_limit: {rps: 0}}
  - {name: b, from: w, to: d, action: tunnel, rate_limit: {rps: "5"}}
  - {name: c, from: w, to: d, action: tunnel, rate_limit: {rps: 2000000}}
  - {name: d, from: w, to: d, action: tunnel, rate_limit: {rps: 5, burst: 0}}
  - {name: e, from: w, to: d, action: tunnel, rate_limit: {rps: 5, burst: 1.5}}
  - {name: f, from: w, to: d, action: tunnel, rate_limit: {rps: .nan}}
  - {name: g, from: w, to: d, action: tunnel, rate_limit: {rps: 5, brust: 1}}
  - {name: h, from: w, to: d, action: deny, rate_limit: {rps: 5}}
default: deny
`, []string{
			`p.yaml:9:65: rule "a" (rules[0]) rate_limit: rps "0" must be a number of requests per second from 0.001 to 1e+06`,
			`p.yaml:10:65: rule "b" (rules[1]) rate_limit: rps "5" must be a number of requests per second from 0.001 to 1e+06`,
			`p.yaml:11:65: rule "c" (rules[2]) rate_limit: rps "2000000" must be a number of requests per second from 0.001 to 1e+06`,
			`p.yaml:12:75: rule "d" (rules[3]) rate_limit: burst "0" must be a whole number of requests from 1 to 1000000`,
			`p.yaml:13:75: rule "e" (rules[4]) rate_limit: burst "1.5" must be a whole number of requests from 1 to 1000000`,
			`p.yaml:14:65: rule "f" (rules[5]) rate_limit: rps ".nan" must be a number of requests per second from 0.001 to 1e+06`,
			`p.yaml:15:68: unknown field "brust" in rule "g" (rules[6]) rate_limit; known fields are rps, burst`,
			`p.yaml:16:45: rule "h" (rules[7]): a deny rule refuses every request it matches, so rate_limit has nothing to limit; remove it`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(context.Background(), "p.yaml", []byte(tt.src))
			var el ErrorList
			if !errors.As(err, &el) {
				t.Fatalf("Parse: %v, want an ErrorList", err)
			}
			var got []string
			for _, e := range el {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}
