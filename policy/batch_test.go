package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
)

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
