package policy

import (
	"context"
	"strings"
	"testing"
)

// TestEncodedDelimitersSetting: a destination's encoded_delimiters: true
// reaches the Decision of a request to it (the gateway refuses %3F and
// %23 otherwise), and nothing but true or false is accepted.
func TestEncodedDelimitersSetting(t *testing.T) {
	src := `
workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  s3: {hosts: [s3.test], encoded_delimiters: true}
  api: {hosts: [api.test]}
credentials:
  c: {provider: policytest, value: x}
rules:
  - {name: r, from: w, to: [s3, api], paths: ["/*"], inject: {credential: c, as: policytest-inj}}
default: deny
`
	p := mustParse(t, src)
	for host, want := range map[string]bool{"s3.test": true, "api.test": false} {
		d := p.Decide(request("w", "GET", "https", host, 443, "/bucket/what?.pdf"))
		if d.Action != Inject || d.EncodedDelimiters != want || d.EncodedSlashes {
			t.Errorf("%s: %s, EncodedDelimiters %v EncodedSlashes %v; want inject, EncodedDelimiters %v", host, d.Action, d.EncodedDelimiters, d.EncodedSlashes, want)
		}
	}
	_, err := Parse(context.Background(), "p.yaml", []byte(strings.Replace(src, "encoded_delimiters: true", "encoded_delimiters: yes please", 1)))
	if err == nil || !strings.Contains(err.Error(), `destination "s3" encoded_delimiters must be true or false`) {
		t.Errorf("encoded_delimiters: yes please: %v, want an error naming it", err)
	}
}
