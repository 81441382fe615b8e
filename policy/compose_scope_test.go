package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

// scopedProvider returns the caller's workload name as the token, one
// credential per workload (providers.Scoped): a Vault path rendered from
// the workload, an OAuth2 token exchange, an STS session tagged with it.
type scopedProvider struct {
	Prefix string `yaml:"prefix"`
}

const testScopedName = "policytest-scoped"

func init() {
	providers.Register(providers.Module{Name: testScopedName, New: func() providers.Provider { return &scopedProvider{} }})
}

func (p *scopedProvider) Fetch(_ context.Context, req providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(p.Prefix + req.Workload.Name)}}, nil
}

func (p *scopedProvider) CacheScope(req providers.Request) string {
	return providers.NewScope("policytest-scoped").Add("workload", req.Workload.Name).String()
}

var _ providers.Scoped = (*scopedProvider)(nil)

// TestComposedScope checks the class "a credential that reads another
// credential is cached per caller whenever any credential it reads,
// directly or through others, is": a Composer that is not Scoped itself
// (an awssts role assumed with source keys from a per-workload Vault
// path, an OAuth2 client whose secret or JWT key is read per workload)
// must not hand one workload's credential, made from that workload's
// input, to another workload from the cache.
func TestComposedScope(t *testing.T) {
	const head = `
workloads:
  a: {cidrs: [10.1.0.0/16]}
  b: {cidrs: [10.2.0.0/16]}
destinations: {d: {hosts: [api.example.com]}}
rules:
  - {name: r, from: [a, b], to: d, inject: {credential: top, as: policytest-inj}}
default: deny
credentials:
`
	tests := []struct {
		name, creds string
		// shared: the credential is one for every caller (no input is
		// scoped), so both workloads may share it.
		shared bool
	}{
		{"direct", `
  per-wl: {provider: policytest-scoped, prefix: "key-of-"}
  top: {provider: policytest-compose, from: [per-wl]}`, false},
		{"beside-a-fixed-input", `
  fixed: {provider: policytest, value: fixed}
  per-wl: {provider: policytest-scoped, prefix: "key-of-"}
  top: {provider: policytest-compose, from: [fixed, per-wl]}`, false},
		{"two-levels", `
  per-wl: {provider: policytest-scoped, prefix: "key-of-"}
  mid: {provider: policytest-compose, from: [per-wl]}
  top: {provider: policytest-compose, from: [mid]}`, false},
		{"fixed-inputs-only", `
  fixed: {provider: policytest, value: fixed}
  top: {provider: policytest-compose, from: [fixed]}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, head+strings.TrimPrefix(tt.creds, "\n")+"\n")
			q := func(w string) Decision {
				d := p.Decide(Query{Workload: wl(w), Host: "api.example.com", Port: 443, Scheme: "https", Method: "GET", Path: "/"})
				if d.Action != Inject {
					t.Fatalf("workload %s: decision %+v, want inject", w, d)
				}
				return d
			}
			ba, bb := q("a").Inject.Bind(wl("a")), q("b").Inject.Bind(wl("b"))
			if again := q("a").Inject.Bind(wl("a")); again.Key != ba.Key {
				t.Errorf("the same workload got two keys: %+v and %+v", ba.Key, again.Key)
			}
			if (ba.Key == bb.Key) != tt.shared {
				t.Errorf("keys of workloads a and b: %+v and %+v; shared = %v, want %v", ba.Key, bb.Key, ba.Key == bb.Key, tt.shared)
			}
			// Through the cache: b asks after a, and must get its own.
			c := providers.NewCache(providers.CacheOptions{DefaultTTL: time.Hour})
			defer c.Close()
			ca, _, err := c.GetBound(context.Background(), ba)
			if err != nil {
				t.Fatal(err)
			}
			cb, hit, err := c.GetBound(context.Background(), bb)
			if err != nil {
				t.Fatal(err)
			}
			ta, _ := ca.Field(providers.FieldToken)
			tb, _ := cb.Field(providers.FieldToken)
			if !tt.shared && (hit || tb.Reveal() == ta.Reveal()) {
				t.Errorf("workload b got workload a's credential from the cache (hit %v)", hit)
			}
		})
	}
}
