package suggest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/policy"
)

// TestSuggestKeepsEachCredential: when two inject rules of one caller
// injected two credentials to one host, each recorded request is injected
// with its own credential under the suggestion, whichever paths the
// templates generalise (a '*' also matches '/', so one rule's template can
// cover the other's paths, and the first rule in the file wins), and a
// request seen without a credential is given neither.
func TestSuggestKeepsEachCredential(t *testing.T) {
	t.Setenv("CREDGATE_SUGGEST_TEST_KEY", "sk_test_suggest")
	inj := func(rule, cred, method, path string, min int) audit.Record {
		r := record("inject", rule, method, "api.stripe.com", path, min)
		r.Credential = cred
		return r
	}
	tests := []struct {
		name string
		recs []audit.Record
	}{
		{"template covers the other's path", []audit.Record{
			inj("charges", "stripe-live", "GET", "/v1/charges/ch_3MmlLrLkdIwHu7ix", 1),
			inj("refunds", "stripe-refunds", "GET", "/v1/charges/ch_3MmlLrLkdIwHu7ix/refunds", 2),
		}},
		{"the other way round", []audit.Record{
			inj("refunds", "stripe-refunds", "GET", "/v1/charges/ch_3MmlLrLkdIwHu7ix", 1),
			inj("charges", "stripe-live", "GET", "/v1/charges/ch_3MmlLrLkdIwHu7ix/refunds", 2),
		}},
		{"same template", []audit.Record{
			inj("charges", "stripe-live", "GET", "/v1/charges/ch_3MmlLrLkdIwHu7ix", 1),
			inj("refunds", "stripe-refunds", "GET", "/v1/charges/ch_9ZZlLrLkdIwHu7iy", 2),
		}},
		{"same path, two rules", []audit.Record{
			inj("charges", "stripe-live", "GET", "/v1/charges/ch_3MmlLrLkdIwHu7ix", 1),
			inj("refunds", "stripe-refunds", "GET", "/v1/charges/ch_3MmlLrLkdIwHu7ix", 2),
			inj("refunds", "stripe-refunds", "GET", "/v1/refunds/re_3MmlLrLkdIwHu7ix", 3),
		}},
		{"cardinality collapse", func() []audit.Record {
			var rs []audit.Record
			for i, s := range []string{"a", "b", "c", "d"} {
				rs = append(rs, inj("charges", "stripe-live", "GET", "/v1/items/"+s, i))
			}
			return append(rs, inj("refunds", "stripe-refunds", "GET", "/v1/items/e", 9))
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Write(&out, tt.recs, Options{BaseFile: "base.yaml", Base: []byte(fuzzBase), MaxLiterals: 3, Now: time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)}); err != nil {
				t.Fatal(err)
			}
			p, err := policy.Parse(context.Background(), "suggested.yaml", out.Bytes())
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			defer p.Close()
			for _, r := range tt.recs {
				o := decide(t, p, r)
				if strings.Contains(out.String(), "# not allowed: "+r.Method+" https://"+r.Host+yamlString(r.Path)+" ") {
					if o.Decision != "deny" {
						t.Errorf("%s %s, listed as not allowed: %s under the suggestion\n%s", r.Method, r.Path, o, out.String())
					}
					continue
				}
				if o.Decision != "inject" || o.Credential != r.Credential {
					t.Errorf("%s %s, injected with %s: %s under the suggestion\n%s", r.Method, r.Path, r.Credential, o, out.String())
				}
			}
		})
	}
}
