package suggest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/gateway/replay"
	"github.com/credgate/credgate/policy"
	_ "github.com/credgate/credgate/providers/static"
)

func TestIsID(t *testing.T) {
	for seg, want := range map[string]bool{
		"123": true, "0": true, "550e8400-e29b-41d4-a716-446655440000": true,
		"deadbeef01": true, "cus_NffrFeUfNV2Hib": true, "ch_3MmlLrLkdIwHu7ix": true, "i-0abc123def4567890": true,
		"v1": false, "charges": false, "list_objects": false, "deadbeef": false, "": false, "repos": false, "api-v2": false,
	} {
		if got := isID(seg); got != want {
			t.Errorf("isID(%q) = %v, want %v", seg, got, want)
		}
	}
}

func TestTemplates(t *testing.T) {
	var many []string
	for i := range 5 {
		many = append(many, fmt.Sprintf("/repos/owner%c/x", 'a'+i))
	}
	tests := []struct {
		name  string
		paths []string
		max   int
		want  map[string]string
	}{
		{"ids", []string{"/v1/customers/cus_NffrFeUfNV2Hib", "/v1/charges/123/refunds", "/v1/charges"}, 0, map[string]string{
			"/v1/customers/cus_NffrFeUfNV2Hib": "/v1/customers/*",
			"/v1/charges/123/refunds":          "/v1/charges/*/refunds",
			"/v1/charges":                      "/v1/charges",
		}},
		{"cardinality", many, 3, map[string]string{
			"/repos/ownera/x": "/repos/*/x", "/repos/ownerb/x": "/repos/*/x", "/repos/ownerc/x": "/repos/*/x",
			"/repos/ownerd/x": "/repos/*/x", "/repos/ownere/x": "/repos/*/x",
		}},
		{"few literals stay", many[:3], 3, map[string]string{
			"/repos/ownera/x": "/repos/ownera/x", "/repos/ownerb/x": "/repos/ownerb/x", "/repos/ownerc/x": "/repos/ownerc/x",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, templates(tt.paths, tt.max)); diff != "" {
				t.Errorf("templates (-want +got):\n%s", diff)
			}
		})
	}
}

const recordedPolicy = `
mode: observe
workloads:
  billing:
    cidrs: [10.1.0.0/16]
    mode: observe
destinations:
  stripe:
    hosts: [api.stripe.com]
credentials:
  stripe-live:
    provider: static
    env: CREDGATE_SUGGEST_TEST_KEY
rules:
  - name: charges
    from: billing
    to: stripe
    methods: [GET]
    paths: [/v1/charges*]
    inject: {credential: stripe-live, as: bearer}
default: deny
`

// decide replays r under p through the gateway's decision path.
func decide(t *testing.T, p *policy.Policy, r audit.Record) replay.Outcome {
	t.Helper()
	o, err := replay.Decide(context.Background(), gateway.Judge{Policy: p}, r)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func record(dec, rule, method, host, path string, min int) audit.Record {
	r := audit.Record{Time: time.Date(2026, 12, 2, 6, min, 0, 0, time.UTC), Workload: "billing", Source: "10.1.2.3",
		Method: method, Scheme: "https", Host: host, Port: 443, Path: path, Rule: rule, Decision: dec}
	if dec == "inject" {
		r.Credential = "stripe-live"
	}
	return r
}

// TestSuggestAllowsExactlyWhatWasSeen: the suggested policy parses, allows
// every recorded request (replayed as the gateway decides), and denies
// what was not seen: another path, another method, another host.
func TestSuggestAllowsExactlyWhatWasSeen(t *testing.T) {
	t.Setenv("CREDGATE_SUGGEST_TEST_KEY", "sk_test_suggest")
	recs := []audit.Record{
		record("inject", "charges", "GET", "api.stripe.com", "/v1/charges/ch_3MmlLrLkdIwHu7ix", 1),
		record("inject", "charges", "GET", "api.stripe.com", "/v1/charges/ch_9ZZlLrLkdIwHu7iy", 2),
		record("would_deny", "", "POST", "api.stripe.com", "/v1/customers/cus_NffrFeUfNV2Hib/sources", 3),
		record("would_deny", "", "CONNECT", "intake.example.com", "", 4),
		record("deny", "", "GET", "api.stripe.com", "/v1/refused", 5), // refused: never suggested
		record("would_deny", "", "GET", "api.other.test", "/v1/x", 6), // no credential, intercepted: not allowed
	}
	var out bytes.Buffer
	if err := Write(&out, recs, Options{BaseFile: "recorded.yaml", Base: []byte(recordedPolicy), Now: time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	p, err := policy.Parse(context.Background(), "suggested.yaml", out.Bytes())
	if err != nil {
		t.Fatalf("the suggestion does not parse: %v\n%s", err, got)
	}
	defer p.Close()
	for _, r := range recs[:4] {
		if o := decide(t, p, r); o.Decision != "inject" && o.Decision != "tunnel" {
			t.Errorf("%s %s%s: %s under the suggestion, want allowed\n%s", r.Method, r.Host, r.Path, o, got)
		}
	}
	for _, r := range []audit.Record{
		record("", "", "GET", "api.stripe.com", "/v1/refused", 0),
		record("", "", "GET", "api.stripe.com", "/v1/customers/cus_NffrFeUfNV2Hib/sources", 0), // POST was seen, not GET
		record("", "", "POST", "api.stripe.com", "/v1/charges/ch_3MmlLrLkdIwHu7ix", 0),
		record("", "", "GET", "api.other.test", "/", 0),
	} {
		if o := decide(t, p, r); o.Decision != "deny" {
			t.Errorf("%s %s%s: %s under the suggestion, want deny\n%s", r.Method, r.Host, r.Path, o, got)
		}
	}
	for _, want := range []string{
		`- "/v1/charges/*"  # GET ×2 first 2026-12-02T06:01:00Z last 2026-12-02T06:02:00Z`,
		`- "/v1/customers/*/sources"  # POST ×1`,
		"# 1 CONNECT(s) tunnelled, first 2026-12-02T06:04:00Z",
		"cidrs: [10.1.0.0/16]", // the base's workload, not the source seen
		"# not allowed: GET https://api.other.test/v1/x (GET ×1,",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the suggestion lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "mode:") {
		t.Errorf("the suggestion carries observe mode over:\n%s", got)
	}
	if strings.Contains(got, "sk_test_suggest") {
		t.Error("the suggestion contains the credential value")
	}
}

func TestSuggestErrors(t *testing.T) {
	inj := record("inject", "charges", "GET", "api.stripe.com", "/v1/charges", 1)
	inj.Pos = audit.Pos{File: "a.log", Line: 7}
	tests := []struct {
		name string
		recs []audit.Record
		opts Options
		want string
	}{
		{"nothing admitted", []audit.Record{record("deny", "", "GET", "x.test", "/", 1)}, Options{}, "no admitted request"},
		{"injection without a base", []audit.Record{inj}, Options{}, `a.log:7: the request injected credential "stripe-live"; pass the policy`},
		{"rule not in the base", []audit.Record{inj}, Options{BaseFile: "b.yaml", Base: []byte("rules: []\ndefault: deny\n")}, `rule "charges", which the base policy b.yaml does not have`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, tt.recs, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Write error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestSuggestWithoutBase: workloads come from the sources seen, and the
// result parses.
func TestSuggestWithoutBase(t *testing.T) {
	recs := []audit.Record{record("would_deny", "", "CONNECT", "intake.example.com", "", 1), record("tunnel", "t", "CONNECT", "logs.example.com", "", 2)}
	recs[1].Port = 8443
	fwd := record("forward", "t", "GET", "plain.example.com", "/x", 3)
	fwd.Scheme, fwd.Port = "http", 80
	recs = append(recs, fwd)
	var out bytes.Buffer
	if err := Write(&out, recs, Options{}); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(context.Background(), "suggested.yaml", out.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	defer p.Close()
	if !strings.Contains(out.String(), "cidrs: [10.1.2.3/32]") {
		t.Errorf("no workload from the source seen:\n%s", out.String())
	}
	for _, r := range recs {
		if o := decide(t, p, r); o.Decision != "tunnel" && o.Decision != "forward" {
			t.Errorf("%s:%d: %s, want tunnel or forward", r.Host, r.Port, o)
		}
	}
}

// TestSuggestKeepsEncodedDelimiters: a base destination's
// encoded_delimiters carries over to the suggestion for its hosts, so a
// recorded %3F request is still admitted under it.
func TestSuggestKeepsEncodedDelimiters(t *testing.T) {
	t.Setenv("CREDGATE_SUGGEST_TEST_KEY", "sk_test_suggest")
	base := strings.Replace(recordedPolicy, "    hosts: [api.stripe.com]\n", "    hosts: [api.stripe.com]\n    encoded_delimiters: true\n", 1)
	recs := []audit.Record{record("inject", "charges", "GET", "api.stripe.com", "/v1/charges/ch_1", 1)}
	var out bytes.Buffer
	if err := Write(&out, recs, Options{BaseFile: "recorded.yaml", Base: []byte(base), Now: time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "encoded_delimiters: true") {
		t.Fatalf("encoded_delimiters did not carry over:\n%s", out.String())
	}
	p, err := policy.Parse(context.Background(), "suggested.yaml", out.Bytes())
	if err != nil {
		t.Fatalf("the suggestion does not parse: %v\n%s", err, out.String())
	}
	defer p.Close()
	if o := decide(t, p, record("", "", "GET", "api.stripe.com", "/v1/charges/ch_1", 0)); o.Decision == "deny" {
		t.Errorf("GET /v1/charges/ch_1: %s under the suggestion, want allowed\n%s", o, out.String())
	}
}

// TestYAMLStringRoundTrip: every value suggest writes from an audit line
// (a name, host, path or method) reads back through yaml.v3 as the same
// string, whatever YAML would make of it bare: numbers in every base,
// booleans of YAML 1.1, null, timestamps, indicators, unicode.
func TestYAMLStringRoundTrip(t *testing.T) {
	for _, s := range []string{
		"api.stripe.com", "0x1F", "0o17", "1_000", "1e3", ".inf", "-1", "~", "null", "Null", "NULL", "true", "True", "yes", "Yes", "y", "n", "on", "Off",
		"2026-12-02", "2026-12-02T06:00:00Z", "12:30", "*", "*A", "&a", "!x", "#", "a #b", "a: b", "{a}", "[a]", "- x", "?", "|", ">", "%x", "@x", "`x",
		"'", `"`, "a\nb", "é", "/v1/é", "\u2028", "\t", "", "<<", "=",
	} {
		var got string
		if err := yaml.Unmarshal([]byte("v: "+yamlString(s)), &struct{ V *string }{&got}); err != nil || got != s {
			t.Errorf("yamlString(%q) = %s, reads back as %q (%v)", s, yamlString(s), got, err)
		}
	}
}
