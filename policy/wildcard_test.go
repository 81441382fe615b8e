package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestInjectWildcardOverPublicSuffix: an inject rule whose destination
// covers a whole public suffix (anyone can register a name there) is
// refused, naming the host and the fix; wildcards under a registrable
// domain or a provider's private suffix, and rules that send no
// credential, are not. Before, *.com took the credential to every .com.
func TestInjectWildcardOverPublicSuffix(t *testing.T) {
	for _, c := range []struct {
		host, action string
		want         string // "" accepted
	}{
		{"*.com", "inject", `destination "d" has host "*.com", which covers every domain under the public suffix "com"`},
		{"*.co.uk", "inject", `public suffix "co.uk"`},
		{"*.COM.", "inject", `public suffix "com"`},
		{"*.xn--p1ai", "inject", `public suffix "xn--p1ai"`},
		{"*.com", "tunnel", ""},
		{"*.com", "deny", ""},
		{"*.stripe.com", "inject", ""},
		{"*.example.co.uk", "inject", ""},
		{"*.s3.amazonaws.com", "inject", ""}, // a private suffix: buckets, addressed by SigV4 rules
		{"*.internal", "inject", ""},         // not a public suffix: a private zone
		{"com", "inject", ""},                // an exact name, not a wildcard
	} {
		t.Run(c.host+" "+c.action, func(t *testing.T) {
			rule := "action: " + c.action
			if c.action == "inject" {
				rule = "inject: {credential: c, as: policytest-inj}"
			}
			src := fmt.Sprintf(`workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  d: {hosts: [api.example.org, %q]}
credentials:
  c: {provider: policytest, value: x}
rules:
  - {name: r, from: w, to: d, %s}
default: deny
`, c.host, rule)
			p, err := Parse(context.Background(), "p.yaml", []byte(src))
			if p != nil {
				defer p.Close()
			}
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted; want %q", c.want)
			case c.want != "" && (!strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "p.yaml:8:")):
				t.Fatalf("got  %v\nwant p.yaml:8:...%s", err, c.want)
			}
		})
	}
}
