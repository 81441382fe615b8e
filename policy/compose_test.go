package policy

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/providers"
)

const composeBase = `
workloads: {w: {cidrs: [10.0.0.0/8]}}
destinations: {d: {hosts: [api.example.com]}}
credentials:
  vault-secret: {provider: policytest, value: from-vault}
  other: {provider: policytest, value: other}
  client: {provider: policytest-compose, from: [vault-secret, other]}
rules:
  - {name: r, from: w, to: d, inject: {credential: client, as: policytest-inj}}
default: deny
`

func TestComposeByReference(t *testing.T) {
	p, err := Parse(context.Background(), "p.yaml", []byte(composeBase))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d := p.Decide(Query{Workload: wl("w"), Host: "api.example.com", Port: 443, Scheme: "https", Method: "GET", Path: "/"})
	if d.Action != Inject {
		t.Fatalf("decision %v", d)
	}
	c, err := d.Inject.Provider.Fetch(context.Background(), providers.Request{Credential: "client"})
	if err != nil {
		t.Fatal(err)
	}
	if tok, _ := c.Field(providers.FieldToken); tok.Reveal() != "from-vault+other" {
		t.Errorf("composed token %q", tok.Reveal())
	}

	// Editing an input changes the composer's cache version.
	p2, err := Parse(context.Background(), "p.yaml", []byte(strings.Replace(composeBase, "value: from-vault", "value: rotated", 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	d2 := p2.Decide(Query{Workload: wl("w"), Host: "api.example.com", Port: 443, Scheme: "https", Method: "GET", Path: "/"})
	if d2.Inject.CredentialVersion == d.Inject.CredentialVersion {
		t.Errorf("version unchanged after an input was edited")
	}
}

// TestInjectPlanUses: a plan names the credential it injects, then every
// credential it is made from, recursively and each once (a diamond reads
// its shared input once); the kill switch checks them all.
func TestInjectPlanUses(t *testing.T) {
	const pol = `
workloads: {w: {cidrs: [10.0.0.0/8]}}
destinations: {d: {hosts: [api.example.com]}, e: {hosts: [plain.example.com]}}
credentials:
  key: {provider: policytest, value: k}
  left: {provider: policytest-compose, from: [key]}
  right: {provider: policytest-compose, from: [key]}
  top: {provider: policytest-compose, from: [left, right]}
  plain: {provider: policytest, value: p}
rules:
  - {name: r, from: w, to: d, inject: {credential: top, as: policytest-inj}}
  - {name: s, from: w, to: e, inject: {credential: plain, as: policytest-inj}}
default: deny
`
	p, err := Parse(context.Background(), "p.yaml", []byte(pol))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for host, want := range map[string][]string{"api.example.com": {"top", "left", "key", "right"}, "plain.example.com": {"plain"}} {
		d := p.Decide(Query{Workload: wl("w"), Host: host, Port: 443, Scheme: "https", Method: "GET", Path: "/"})
		if d.Action != Inject {
			t.Fatalf("%s: decision %v", host, d)
		}
		if diff := cmp.Diff(want, d.Inject.Uses()); diff != "" {
			t.Errorf("%s: Uses() (-want +got):\n%s", host, diff)
		}
	}
}

func TestComposeErrors(t *testing.T) {
	tests := []struct {
		name, replace, with, want string
	}{
		{"unknown-input", "from: [vault-secret, other]", "from: [vault-secret, nope]",
			`^p\.yaml:7:3: credential "client" reads credential "nope", which is not defined`},
		{"cycle", "other: {provider: policytest, value: other}", "other: {provider: policytest-compose, from: [client]}",
			`credentials read each other in a cycle: "client" -> "other" -> "client"|"other" -> "client" -> "other"`},
		{"self", "from: [vault-secret, other]", "from: [client]", `cycle: "client" -> "client"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(context.Background(), "p.yaml", []byte(strings.Replace(composeBase, tt.replace, tt.with, 1)))
			if err == nil || !regexp.MustCompile(tt.want).MatchString(err.Error()) {
				t.Errorf("error %v, want %s", err, tt.want)
			}
		})
	}
}

func TestNoAllowReason(t *testing.T) {
	p, err := Parse(context.Background(), "p.yaml", []byte(composeBase))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	q := Query{Workload: wl("w"), Host: "api.example.com", Port: 443, Scheme: "https", Method: "GET", Path: "/", NoAllowReason: true}
	if d := p.Decide(q); d.Action != Inject || d.Reason != "" {
		t.Errorf("allowed with NoAllowReason: %v %q, want inject without a reason", d.Action, d.Reason)
	}
	q.Host = "other.example.com"
	if d := p.Decide(q); d.Action != Deny || d.Reason == "" {
		t.Errorf("refused with NoAllowReason: %v %q, want a reason", d.Action, d.Reason)
	}
}
