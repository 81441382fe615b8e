package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestRuleErrorsNameTheIndexPath: every kind of error about a rule gives
// its index path (rules[2]) beside its name, and its FILE:LINE:COL within
// the rule, so that a missing, invalid or repeated name never leaves the
// reader guessing which rule is meant. Each case is the third rule of a
// policy whose first rule is named "a".
func TestRuleErrorsNameTheIndexPath(t *testing.T) {
	const head = `workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  d: {hosts: [api.example.com]}
  suffix: {hosts: ["*.co.uk"]}
credentials:
  c: {provider: policytest}
  ph: {provider: policytest, placeholder: CREDGATE_PH_rulepath}
rules:
  - {name: a, from: w, to: d, action: deny}
  - {name: b, from: w, to: d, inject: {credential: c, as: bearer}}
`
	const ruleLine = 12 // where the third rule starts
	for _, tc := range []struct{ name, rule string }{
		{"not a mapping", "  - just a string\n"},
		{"no name", "  - {from: w, to: d, action: deny}\n"},
		{"invalid name", "  - {name: \"bad name!\", from: w, to: d, action: deny}\n"},
		{"repeated name", "  - {name: a, from: w, to: d, action: deny}\n"},
		{"repeated name and another error", "  - {name: a, from: nobody, to: d, action: deny}\n"},
		{"unknown field", "  - {name: x, from: w, to: d, action: deny, whence: true}\n"},
		{"key twice", "  - name: x\n    from: w\n    to: d\n    to: d\n    action: deny\n"},
		{"unknown workload", "  - {name: x, from: nobody, to: d, action: deny}\n"},
		{"unknown destination", "  - {name: x, from: w, to: nowhere, action: deny}\n"},
		{"no from", "  - {name: x, to: d, action: deny}\n"},
		{"empty from", "  - {name: x, from: [], to: d, action: deny}\n"},
		{"no to", "  - {name: x, from: w, action: deny}\n"},
		{"no action", "  - {name: x, from: w, to: d}\n"},
		{"unknown action", "  - {name: x, from: w, to: d, action: allow}\n"},
		{"deny with inject", "  - {name: x, from: w, to: d, action: deny, inject: {credential: c, as: bearer}}\n"},
		{"inject without a block", "  - {name: x, from: w, to: d, action: inject}\n"},
		{"inject not a mapping", "  - {name: x, from: w, to: d, inject: bearer}\n"},
		{"inject without credential", "  - {name: x, from: w, to: d, inject: {as: bearer}}\n"},
		{"unknown credential", "  - {name: x, from: w, to: d, inject: {credential: nope, as: bearer}}\n"},
		{"unknown injector", "  - {name: x, from: w, to: d, inject: {credential: c, as: bearz}}\n"},
		{"injector setting", "  - {name: x, from: w, to: d, inject: {credential: c, as: bearer, bogus: 1}}\n"},
		{"public suffix", "  - {name: x, from: w, to: suffix, inject: {credential: c, as: bearer}}\n"},
		{"bad method", "  - {name: x, from: w, to: d, action: deny, methods: [\"G ET\"]}\n"},
		{"empty methods", "  - {name: x, from: w, to: d, action: deny, methods: []}\n"},
		{"bad path", "  - {name: x, from: w, to: d, action: deny, paths: [v1]}\n"},
		{"tunnel with paths", "  - {name: x, from: w, to: d, action: tunnel, paths: [/v1]}\n"},
		{"empty when", "  - {name: x, from: w, to: d, action: deny, when: \" \"}\n"},
		{"bad when", "  - {name: x, from: w, to: d, action: deny, when: \"workload.name ==\"}\n"},
		{"tunnel when on request", "  - {name: x, from: w, to: d, action: tunnel, when: \"request.method == 'GET'\"}\n"},
		{"plaintext on deny", "  - {name: x, from: w, to: d, action: deny, plaintext: true}\n"},
		{"plaintext not a boolean", "  - {name: x, from: w, to: d, inject: {credential: c, as: bearer}, plaintext: maybe}\n"},
		{"rate_limit", "  - {name: x, from: w, to: d, action: tunnel, rate_limit: {rps: 0}}\n"},
		{"require_placeholder on deny", "  - {name: x, from: w, to: d, action: deny, require_placeholder: true}\n"},
		{"require_placeholder without a placeholder", "  - {name: x, from: w, to: d, inject: {credential: c, as: bearer}, require_placeholder: true}\n"},
		{"substitute_in", "  - {name: x, from: w, to: d, inject: {credential: ph, as: placeholder, substitute_in: [nowhere]}}\n"},
		{"scrub", "  - {name: x, from: w, to: d, inject: {credential: c, as: bearer}, scrub: {enabled: maybe}}\n"},
		{"custody", "  - {name: x, from: w, to: d, inject: {credential: c, as: bearer}, custody: {ttl: 90d}}\n"},
		{"ranges", "  - {name: x, from: w, to: d, inject: {credential: c, as: bearer}, ranges: partial}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(context.Background(), "p.yaml", []byte(head+tc.rule+"default: deny\n"))
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("Parse: %v, want errors", err)
			}
			for _, e := range list {
				if !strings.Contains(e.Msg, "rules[2]") || e.File != "p.yaml" || e.Line < ruleLine || e.Col == 0 {
					t.Errorf("%s: want rules[2] in the message, at p.yaml:LINE:COL within the rule (from line %d)", e, ruleLine)
				}
				if strings.Contains(e.Msg, `rule "a"`) && !strings.Contains(e.Msg, "rules[2]") {
					t.Errorf("%s: names the first rule's name for the third rule", e)
				}
			}
		})
	}
}

// TestShadowWarningNamesIndexPaths: the shadowing warning gives both
// rules' index paths.
func TestShadowWarningNamesIndexPaths(t *testing.T) {
	p, err := Parse(context.Background(), "p.yaml", []byte(`workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  d: {hosts: [api.example.com]}
rules:
  - {name: a, from: w, to: d, action: deny}
  - {name: b, from: w, to: d, action: deny}
default: deny
`))
	if err != nil {
		t.Fatal(err)
	}
	ws := p.Shadowed()
	if len(ws) != 1 || !strings.Contains(ws[0].Msg, `rule "b" (rules[1]) can never decide a request: rule "a" (rules[0]), line 6,`) || ws[0].Line != 7 {
		t.Errorf("Shadowed = %v, want one warning at line 7 naming rules[1] and rules[0]", ws)
	}
}
