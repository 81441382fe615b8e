package identity

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// attrVerifier is a verifier plugin that always presents one factor with
// the given attributes.
type attrVerifier struct {
	kind  string
	attrs map[string]string
}

func (v attrVerifier) Kind() string { return v.kind }
func (v attrVerifier) Verify(context.Context, Evidence) (*Factor, error) {
	return &Factor{Kind: v.kind, Subject: v.kind, Attributes: v.attrs}, nil
}

// TestEveryFactorCountsForAgreement: all selecting factors must select
// one workload, however many verifiers (plugins) there are. Before, only
// the first 8 selecting factors were looked at, so a ninth or later one
// pointing at another workload was ignored and the caller became the
// workload of the first ones instead of a factor conflict. For each
// count of agreeing factors before one that disagrees, the disagreeing
// factor in every position.
func TestEveryFactorCountsForAgreement(t *testing.T) {
	specs := []Spec{
		{Name: "team-a", Claims: map[string]string{"team": "a"}},
		{Name: "admin", Claims: map[string]string{"role": "admin"}},
	}
	for n := 1; n <= 12; n++ {
		for odd := 0; odd <= n; odd++ { // odd == n: none disagrees
			t.Run(fmt.Sprintf("%d factors, disagreeing at %d", n+boolInt(odd < n), odd), func(t *testing.T) {
				var vs []Verifier
				for i := 0; i < n; i++ {
					if i == odd {
						vs = append(vs, attrVerifier{kind: fmt.Sprintf("odd%d", i), attrs: map[string]string{"role": "admin"}})
					}
					vs = append(vs, attrVerifier{kind: fmt.Sprintf("p%d", i), attrs: map[string]string{"team": "a"}})
				}
				w, err := NewResolver(vs...).Resolve(context.Background(), Evidence{}, specs)
				if odd == n {
					if err != nil || w.Name != "team-a" {
						t.Fatalf("agreeing factors: workload %q, error %v; want team-a", w.Name, err)
					}
					return
				}
				if !errors.Is(err, ErrFactorConflict) {
					t.Fatalf("a factor selecting admin beside %d selecting team-a: workload %q, error %v; want ErrFactorConflict", n, w.Name, err)
				}
			})
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
