package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
)

// TestInjectOptIns: each opt-in of a rule's inject block
// (allow_copy_source, allow_batch) becomes its own field of the plan
// (false when unset or false) and sets no other opt-in; anything but
// true or false is refused at its line.
func TestInjectOptIns(t *testing.T) {
	for _, c := range []struct {
		key, method, path string
		get               func(*InjectPlan) bool
	}{
		{"allow_copy_source", "PUT", "/b/k", func(p *InjectPlan) bool { return p.AllowCopySource }},
		{"allow_batch", "POST", "/v1.0/$batch", func(p *InjectPlan) bool { return p.AllowBatch }},
	} {
		src := `destinations:
  d: {hosts: [x.test]}
  e: {hosts: [y.test]}
  f: {hosts: [z.test]}
credentials:
  c: {provider: policytest, value: a}
rules:
  - {name: allowed, from: "*", to: d, inject: {credential: c, as: policytest-inj, KEY: true}}
  - {name: refused, from: "*", to: e, inject: {credential: c, as: policytest-inj, KEY: false}}
  - {name: unset, from: "*", to: f, inject: {credential: c, as: policytest-inj}}
default: deny
`
		src = strings.ReplaceAll(src, "KEY", c.key)
		p := mustParse(t, src)
		for host, want := range map[string]bool{"x.test": true, "y.test": false, "z.test": false} {
			d := p.Decide(Query{Workload: identity.Workload{Name: "w"}, Scheme: "https", Host: host, Port: 443, Method: c.method, Path: c.path})
			if d.Inject == nil {
				t.Fatalf("%s %s: no inject plan", c.key, host)
			}
			if got := c.get(d.Inject); got != want {
				t.Errorf("%s %s: %v, want %v", c.key, host, got, want)
			}
			if n := countOptIns(d.Inject); want && n != 1 || !want && n != 0 {
				t.Errorf("%s %s: %d opt-ins set", c.key, host, n)
			}
		}
		bad := strings.Replace(src, c.key+": true", c.key+": yes please", 1)
		_, err := Parse(context.Background(), "p.yaml", []byte(bad))
		if err == nil || !strings.Contains(err.Error(), `p.yaml:8:`) || !strings.Contains(err.Error(), `rule "allowed" (rules[0]) inject `+c.key+` must be true or false`) {
			t.Errorf("%s: yes please: %v, want an error at line 8 saying it must be true or false", c.key, err)
		}
	}
}

// countOptIns counts the opt-ins a plan has set.
func countOptIns(p *InjectPlan) int {
	n := 0
	for _, on := range []bool{p.AllowCopySource, p.AllowBatch} {
		if on {
			n++
		}
	}
	return n
}
