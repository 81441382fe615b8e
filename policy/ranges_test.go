package policy

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// testSignerName is a test injector that only signs
// (injectors.SignatureOnly), as sigv4 does.
const testSignerName = "policytest-sig"

func init() {
	injectors.Register(injectors.Module{Name: testSignerName, New: func() injectors.Injector { return &testSigner{} }})
}

type testSigner struct{}

func (*testSigner) Inject(*http.Request, *providers.Credential) error { return nil }
func (*testSigner) SignatureOnly()                                    {}

var _ injectors.SignatureOnly = (*testSigner)(nil)

// TestRangesSettings: the effective ranges setting of each kind of rule.
// The default is whole wherever a reusable secret can reach an upstream
// (a header injector, any credential with a placeholder, a custody
// block) and pass only for a signing injector without either; an
// explicit setting wins.
func TestRangesSettings(t *testing.T) {
	p, err := Parse(context.Background(), "p.yaml", []byte(`workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  d: {hosts: [api.example.com]}
credentials:
  c: {provider: policytest, value: x}
  ph: {provider: policytest, value: y, placeholder: CREDGATE_PH_ranges}
rules:
  - {name: header, from: w, to: d, paths: [/header], inject: {credential: c, as: policytest-inj}}
  - {name: placeholder, from: w, to: d, paths: [/placeholder], inject: {credential: ph, as: policytest-inj}}
  - {name: signed, from: w, to: d, paths: [/signed], inject: {credential: c, as: policytest-sig}}
  - {name: signed-placeholder, from: w, to: d, paths: [/signed-placeholder], inject: {credential: ph, as: policytest-sig}}
  - {name: signed-custody, from: w, to: d, paths: [/signed-custody], inject: {credential: c, as: policytest-sig}, custody: {cookies: [sid]}}
  - {name: scrub-off, from: w, to: d, paths: [/scrub-off], inject: {credential: c, as: policytest-inj}, scrub: {enabled: false}}
  - {name: pass, from: w, to: d, paths: [/pass], inject: {credential: ph, as: policytest-inj}, ranges: pass}
  - {name: refuse, from: w, to: d, paths: [/refuse], inject: {credential: c, as: policytest-inj}, ranges: refuse}
  - {name: signed-whole, from: w, to: d, paths: [/signed-whole], inject: {credential: c, as: policytest-sig}, ranges: whole}
  - {name: custody-off, from: w, to: d, paths: [/custody-off], inject: {credential: c, as: policytest-inj}, scrub: {enabled: false}, custody: {cookies: [sid]}, ranges: pass}
default: deny
`))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got := map[string]Ranges{}
	for _, path := range []string{"/header", "/placeholder", "/signed", "/signed-placeholder", "/signed-custody", "/scrub-off", "/pass", "/refuse", "/signed-whole", "/custody-off", "/nothing"} {
		d := p.Decide(Query{Workload: wl("w"), Scheme: "https", Host: "api.example.com", Port: 443, Method: "GET", Path: path})
		got[path] = d.Ranges
	}
	want := map[string]Ranges{
		"/header":             RangesWhole,
		"/placeholder":        RangesWhole,
		"/signed":             RangesPass,
		"/signed-placeholder": RangesWhole,
		"/signed-custody":     RangesWhole,
		"/scrub-off":          RangesWhole, // nothing scrubbed: the gateway leaves Range alone
		"/pass":               RangesPass,
		"/refuse":             RangesRefuse,
		"/signed-whole":       RangesWhole,
		"/custody-off":        RangesPass,
		"/nothing":            "", // no rule: not an inject decision
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ranges by rule (-want +got):\n%s", diff)
	}
}

// TestRangesErrors: each bad ranges setting is reported at its line and
// column, with the fix.
func TestRangesErrors(t *testing.T) {
	_, err := Parse(context.Background(), "p.yaml", []byte(responseHead+`  - name: a
    from: w
    to: d
    action: tunnel
    ranges: whole
  - name: b
    from: w
    to: d
    inject: {credential: c, as: policytest-inj}
    ranges: partial
  - name: c
    from: w
    to: d
    inject: {credential: c, as: policytest-inj}
    ranges: [whole]
  - name: e
    from: w
    to: d
    inject: {credential: c, as: policytest-inj}
    scrub: {enabled: false}
    ranges: refuse
default: deny
`))
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	want := []string{
		`p.yaml:12:5: rule "a" (rules[0]) ranges: ranges applies only to inject rules (another rule's response is scrubbed only of custody values its request used, and is always whole then); remove it`,
		`p.yaml:17:13: rule "b" (rules[1]) ranges: "partial" is not one of whole, pass, refuse (whole: the gateway removes Range so responses are scrubbed whole; pass: Range requests go through and each 206 piece is scrubbed on its own; refuse: Range requests are refused)`,
		`p.yaml:22:13: rule "c" (rules[2]) ranges must be a single value`,
		`p.yaml:28:5: rule "e" (rules[3]) ranges has no effect: the rule's responses are not scrubbed (scrub: {enabled: false}) nor kept in custody; remove ranges`,
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
