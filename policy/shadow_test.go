package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
)

// shadowPolicy has the workloads and destinations of TestShadowed's rows;
// a row adds two rules, A then B.
const shadowPolicy = `workloads:
  w1: {cidrs: [10.1.0.0/16]}
  w2: {cidrs: [10.2.0.0/16]}
  w3: {cidrs: [10.3.0.0/16]}
destinations:
  api: {hosts: [api.example.com]}
  api2: {hosts: [api.example.com]}
  wild: {hosts: ["*.example.com"]}
  apex: {hosts: [example.com]}
  other: {hosts: [other.test]}
  api-8443: {hosts: [api.example.com], ports: [8443]}
  api-fold: {hosts: [api.example.com], path_case: insensitive}
  both: {hosts: [api.example.com, other.test]}
credentials:
  c: {provider: policytest, value: x}
rules:
  - %s
  - %s
default: deny
`

// TestShadowed is the class test of the shadowed-rule warning: pairs of
// rules (A first, then B) where A provably decides every request B
// matches, and pairs where some request reaches B.
func TestShadowed(t *testing.T) {
	const inj = "inject: {credential: c, as: policytest-inj}"
	tests := []struct {
		name     string
		a, b     string
		shadowed bool
	}{
		// Shadowed.
		{"duplicate", "{name: a, from: w1, to: api, methods: [GET], paths: [/v1/*], " + inj + "}", "{name: b, from: w1, to: api, methods: [GET], paths: [/v1/*], " + inj + "}", true},
		{"a takes every method and path", "{name: a, from: w1, to: api, " + inj + "}", "{name: b, from: w1, to: api, methods: [GET], paths: [/v1/*], " + inj + "}", true},
		{"a from any workload", "{name: a, from: \"*\", to: api, " + inj + "}", "{name: b, from: [w1, w2], to: api, " + inj + "}", true},
		{"a wider path glob", "{name: a, from: w1, to: api, paths: [/v1/*], " + inj + "}", "{name: b, from: w1, to: api, paths: [/v1/charges*], " + inj + "}", true},
		{"a star in the middle", "{name: a, from: w1, to: api, paths: [/v1/*/charges], " + inj + "}", "{name: b, from: w1, to: api, paths: [/v1/acct/charges, /v1/*/x/charges], " + inj + "}", true},
		{"a more methods", "{name: a, from: w1, to: api, methods: [GET, POST], " + inj + "}", "{name: b, from: w1, to: api, methods: [GET], " + inj + "}", true},
		{"a wildcard destination", "{name: a, from: w1, to: wild, " + inj + "}", "{name: b, from: w1, to: api, " + inj + "}", true},
		{"a wildcard covers a deeper wildcard", "{name: a, from: w1, to: wild, action: tunnel}", "{name: b, from: w1, to: wild, action: deny}", true},
		{"a more destinations", "{name: a, from: w1, to: [other, api], " + inj + "}", "{name: b, from: w1, to: api, " + inj + "}", true},
		{"a deny covers an inject", "{name: a, from: w1, to: api, action: deny, paths: [/admin*]}", "{name: b, from: w1, to: api, paths: [/admin/users], " + inj + "}", true},
		{"deny covers deny", "{name: a, from: w1, to: api, action: deny, paths: [/a/*]}", "{name: b, from: w1, to: api, action: deny, paths: [/a/b]}", true},
		{"b's own condition", "{name: a, from: w1, to: api, " + inj + "}", "{name: b, from: w1, to: api, when: 'now.getHours() < 22', " + inj + "}", true},
		{"inject without methods covers inject without methods", "{name: a, from: w1, to: api, paths: [/x], " + inj + "}", "{name: b, from: w1, to: api, paths: [/x], " + inj + "}", true},
		{"same path_case destination", "{name: a, from: w1, to: api-fold, paths: [/V1/*], " + inj + "}", "{name: b, from: w1, to: api-fold, paths: [/v1/X], " + inj + "}", true},
		{"anonymous covers anonymous", "{name: a, from: anonymous, to: other, action: tunnel}", "{name: b, from: anonymous, to: other, action: deny}", true},
		{"multi-host destination", "{name: a, from: w1, to: [api, other], " + inj + "}", "{name: b, from: w1, to: both, " + inj + "}", true},
		// Not shadowed.
		{"a has a condition", "{name: a, from: w1, to: api, when: 'request.method == \"POST\"', " + inj + "}", "{name: b, from: w1, to: api, " + inj + "}", false},
		{"b from more workloads", "{name: a, from: w1, to: api, " + inj + "}", "{name: b, from: [w1, w2], to: api, " + inj + "}", false},
		{"b from any workload", "{name: a, from: [w1, w2], to: api, " + inj + "}", "{name: b, from: \"*\", to: api, " + inj + "}", false},
		{"any workload is not anonymous", "{name: a, from: \"*\", to: other, action: tunnel}", "{name: b, from: anonymous, to: other, action: tunnel}", false},
		{"b more methods", "{name: a, from: w1, to: api, methods: [GET], " + inj + "}", "{name: b, from: w1, to: api, methods: [GET, POST], " + inj + "}", false},
		{"b every method", "{name: a, from: w1, to: api, methods: [GET, POST, PUT], " + inj + "}", "{name: b, from: w1, to: api, " + inj + "}", false},
		{"b wider path", "{name: a, from: w1, to: api, paths: [/v1/charges*], " + inj + "}", "{name: b, from: w1, to: api, paths: [/v1/*], " + inj + "}", false},
		{"overlapping globs", "{name: a, from: w1, to: api, paths: [/v1/a*], " + inj + "}", "{name: b, from: w1, to: api, paths: [/v1/*a], " + inj + "}", false},
		{"one of b's paths escapes", "{name: a, from: w1, to: api, paths: [/v1/*], " + inj + "}", "{name: b, from: w1, to: api, paths: [/v1/x, /v2/x], " + inj + "}", false},
		{"specific first", "{name: a, from: w1, to: api, methods: [GET], paths: [/v1/*], " + inj + "}", "{name: b, from: w1, to: api, " + inj + "}", false},
		{"an inject rule without methods leaves TRACE", "{name: a, from: w1, to: api, " + inj + "}", "{name: b, from: w1, to: api, methods: [TRACE], action: deny}", false},
		{"inject without methods does not cover deny without methods", "{name: a, from: w1, to: api, paths: [/x], " + inj + "}", "{name: b, from: w1, to: api, paths: [/x], action: deny}", false},
		{"a deny b with paths: slash and case forms", "{name: a, from: w1, to: api, paths: [/admin], " + inj + "}", "{name: b, from: w1, to: api, paths: [/admin], action: deny}", false},
		{"other ports", "{name: a, from: w1, to: api-8443, " + inj + "}", "{name: b, from: w1, to: api, " + inj + "}", false},
		{"default port is not 8443", "{name: a, from: w1, to: api, " + inj + "}", "{name: b, from: w1, to: api-8443, " + inj + "}", false},
		{"a wildcard is not its apex", "{name: a, from: w1, to: wild, " + inj + "}", "{name: b, from: w1, to: apex, " + inj + "}", false},
		{"b's destination folds case", "{name: a, from: w1, to: api, paths: [/v1/*], " + inj + "}", "{name: b, from: w1, to: api-fold, paths: [/v1/x], " + inj + "}", false},
		{"another destination, same host", "{name: a, from: w1, to: api2, paths: [/v1/*], " + inj + "}", "{name: b, from: w1, to: api-fold, paths: [/v1/x], " + inj + "}", false},
		{"another host", "{name: a, from: w1, to: other, " + inj + "}", "{name: b, from: w1, to: api, " + inj + "}", false},
		{"a covers one of b's hosts only", "{name: a, from: w1, to: api, " + inj + "}", "{name: b, from: w1, to: both, " + inj + "}", false},
		{"case: a's glob in upper case", "{name: a, from: w1, to: api, paths: [/V1/*], " + inj + "}", "{name: b, from: w1, to: api, paths: [/v1/x], " + inj + "}", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(strings.Replace(shadowPolicy, "%s", tt.a, 1), "%s", tt.b, 1)
			p, err := Parse(context.Background(), "p.yaml", []byte(src))
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, src)
			}
			defer p.Close()
			reached := reachesB(p)
			if tt.shadowed && reached != "" {
				t.Fatalf("Decide lets rule b decide %s: the row is wrong", reached)
			}
			if !tt.shadowed && reached == "" {
				t.Fatalf("no probe request reaches rule b: the row does not show b is reachable")
			}
			got := p.Shadowed()
			if !tt.shadowed {
				if len(got) != 0 {
					t.Errorf("Shadowed = %v, want none", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("Shadowed = %v, want one warning for rule b", got)
			}
			want := `p.yaml:18:5: warning: rule "b" (rules[1]) can never decide a request: rule "a" (rules[0]), line 17, comes first`
			if !strings.HasPrefix(got[0].Error(), want) {
				t.Errorf("Shadowed = %q, want it to start with %q", got[0].Error(), want)
			}
		})
	}
}

// reachesB returns a probe request that rule b decides, or "": a check of
// each row against Decide itself.
func reachesB(p *Policy) string {
	for _, who := range []string{"w1", "w2", "w3", ""} {
		for _, host := range []string{"api.example.com", "x.api.example.com", "example.com", "other.test"} {
			for _, port := range []int{443, 8443} {
				for _, m := range []string{"GET", "POST", "PUT", "DELETE", "TRACE"} {
					for _, path := range []string{"/", "/x", "/v1/x", "/V1/X", "/v1/charges", "/v1/charges/1", "/v1/acct/charges", "/v1/q/x/charges", "/v1/a", "/v1/b", "/v1/ba", "/v2/x", "/admin", "/admin/", "/ADMIN", "/admin/users", "/a/b"} {
						q := Query{Workload: identity.Workload{Name: who}, Scheme: "https", Host: host, Port: port, Method: m, Path: path}
						if d := p.Decide(q); d.Rule == "b" {
							return m + " https://" + host + path + " from " + who
						}
					}
				}
			}
		}
	}
	return ""
}
