package suggest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/policy"
)

// TestSuggestMethodsAnyToken: a method is whatever token the gateway
// lets through (canonical.Method: upper-case letters, digits and
// !#$%&'*+-.^_`|~), and the audit lines a workload in observe mode makes
// are what suggest reads, so a method that is YAML syntax (an alias `*A`,
// an anchor, a tag `!A`, a quote, a comment after a space, a block
// indicator) must come out as a string: for each special character, at
// the start and inside a method, the suggestion parses and allows that
// method on that path, and the GET seen beside it stays allowed.
func TestSuggestMethodsAnyToken(t *testing.T) {
	for _, c := range "!#$%&'*+-.^_`|~" {
		for _, m := range []string{string(c) + "A", "A" + string(c) + "B", string(c)} {
			if canonical.Method(m) != nil {
				t.Fatalf("%q is not a method the gateway lets through", m)
			}
			t.Run(m, func(t *testing.T) {
				recs := []audit.Record{
					record("inject", "charges", "GET", "api.stripe.com", "/v1/seen", 1),
					record("would_deny", "", m, "api.stripe.com", "/v1/odd", 2),
					record("would_deny", "", "POST", "api.stripe.com", "/v1/odd", 3),
				}
				var out bytes.Buffer
				if err := Write(&out, recs, Options{BaseFile: "recorded.yaml", Base: []byte(recordedPolicy), Now: time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)}); err != nil {
					t.Fatal(err)
				}
				p, err := policy.Parse(context.Background(), "suggested.yaml", out.Bytes())
				if err != nil {
					t.Fatalf("the suggestion does not parse: %v\n%s", err, out.String())
				}
				defer p.Close()
				for _, r := range recs {
					if o := decide(t, p, r); o.Decision == "deny" {
						t.Errorf("%s %s: %s under the suggestion, want allowed\n%s", r.Method, r.Path, o, out.String())
					}
				}
				if o := decide(t, p, record("", "", "PUT", "api.stripe.com", "/v1/odd", 0)); o.Decision != "deny" {
					t.Errorf("PUT /v1/odd: %s, want deny\n%s", o, out.String())
				}
				if strings.Count(out.String(), "- name:") > 2 {
					t.Errorf("more rules than the seen method sets:\n%s", out.String())
				}
			})
		}
	}
}
