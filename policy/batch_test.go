package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
)

// TestAllowBatch: a rule's inject block's allow_batch becomes the plan's
// AllowBatch (false when unset), is not handed to the injector as a
// setting of its own, and anything but true or false is refused at its
// line, as allow_copy_source (TestAllowCopySource).
func TestAllowBatch(t *testing.T) {
	src := `destinations:
  d: {hosts: [x.test]}
  e: {hosts: [y.test]}
  f: {hosts: [z.test]}
credentials:
  c: {provider: policytest, value: a}
rules:
  - {name: allowed, from: "*", to: d, inject: {credential: c, as: policytest-inj, allow_batch: true}}
  - {name: refused, from: "*", to: e, inject: {credential: c, as: policytest-inj, allow_batch: false}}
  - {name: unset, from: "*", to: f, inject: {credential: c, as: policytest-inj}}
default: deny
`
	p := mustParse(t, src)
	for host, want := range map[string]bool{"x.test": true, "y.test": false, "z.test": false} {
		d := p.Decide(Query{Workload: identity.Workload{Name: "w"}, Scheme: "https", Host: host, Port: 443, Method: "POST", Path: "/v1.0/$batch"})
		if d.Inject == nil {
			t.Fatalf("%s: no inject plan", host)
		}
		if d.Inject.AllowBatch != want {
			t.Errorf("%s: AllowBatch = %v, want %v", host, d.Inject.AllowBatch, want)
		}
		if d.Inject.AllowCopySource {
			t.Errorf("%s: allow_batch set AllowCopySource too", host)
		}
	}
	bad := strings.Replace(src, "allow_batch: true", "allow_batch: yes please", 1)
	_, err := Parse(context.Background(), "p.yaml", []byte(bad))
	if err == nil || !strings.Contains(err.Error(), `p.yaml:8:`) || !strings.Contains(err.Error(), `rule "allowed" (rules[0]) inject allow_batch must be true or false`) {
		t.Errorf("allow_batch: yes please: %v, want an error at line 8 saying it must be true or false", err)
	}
}

// TestBatchMark: an inject block's batch setting marks the paths it names
// (globs, as the rule's paths) as a batch endpoint of its format; a
// format the gateway cannot judge, a missing key or an unknown one is
// refused at its line.
func TestBatchMark(t *testing.T) {
	src := `destinations:
  d: {hosts: [x.test]}
credentials:
  c: {provider: policytest, value: a}
rules:
  - {name: marked, from: "*", to: d, inject: {credential: c, as: policytest-inj, batch: {format: odata-json, paths: ["/odata/*/batch"]}}}
default: deny
`
	p := mustParse(t, src)
	d := p.Decide(Query{Workload: identity.Workload{Name: "w"}, Scheme: "https", Host: "x.test", Port: 443, Method: "POST", Path: "/odata/v4/batch"})
	if d.Inject == nil || d.Inject.Batch == nil || d.Inject.Batch.Format != "odata-json" {
		t.Fatalf("no batch mark: %+v", d.Inject)
	}
	for path, want := range map[string]bool{"/odata/v4/batch": true, "/odata/v4/People": false, "/batch": false} {
		if got := d.Inject.Batch.Matches(path); got != want {
			t.Errorf("Matches(%s) = %v, want %v", path, got, want)
		}
	}
	for _, c := range []struct{ from, to, says string }{
		{"format: odata-json", "format: salesforce-records", `unknown format "salesforce-records"`},
		{`, paths: ["/odata/*/batch"]`, "", "needs format and paths"},
		{"format: odata-json", "format: odata-json, max: 3", `unknown field "max"`},
		{`paths: ["/odata/*/batch"]`, `paths: ["odata"]`, "must start with '/'"},
	} {
		bad := strings.Replace(src, c.from, c.to, 1)
		_, err := Parse(context.Background(), "p.yaml", []byte(bad))
		if err == nil || !strings.Contains(err.Error(), "p.yaml:6:") || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want an error at line 6 saying %s", c.to, err, c.says)
		}
	}
}
