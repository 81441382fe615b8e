package replay

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/policy"
	_ "github.com/credgate/credgate/providers/static"
)

const oldPolicy = `
workloads:
  billing:
    cidrs: [10.1.0.0/16]
destinations:
  stripe:
    hosts: [api.stripe.com]
  intake:
    hosts: [intake.example.com]
credentials:
  stripe-live:
    provider: static
    env: CREDGATE_REPLAY_TEST_KEY
rules:
  - name: charges
    from: billing
    to: stripe
    methods: [GET, POST]
    paths: [/v1/charges*]
    inject: {credential: stripe-live, as: bearer}
  - name: intake
    from: billing
    to: intake
    action: tunnel
default: deny
`

func parse(t *testing.T, src string) *policy.Policy {
	t.Helper()
	t.Setenv("CREDGATE_REPLAY_TEST_KEY", "sk_test_replay")
	p, err := policy.Parse(context.Background(), "p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// decide is Decide with the judge of p alone.
func decide(t *testing.T, p *policy.Policy, r audit.Record) Outcome {
	t.Helper()
	o, err := Decide(context.Background(), gateway.Judge{Policy: p}, r)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func rec(wl, method, scheme, host, path string) audit.Record {
	port := 443
	if scheme == "http" {
		port = 80
	}
	return audit.Record{Pos: audit.Pos{File: "a.log", Line: 1}, Time: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC),
		Workload: wl, Method: method, Scheme: scheme, Host: host, Port: port, Path: path}
}

func TestDecideMatchesTheGateway(t *testing.T) {
	p := parse(t, oldPolicy)
	tests := []struct {
		name string
		r    audit.Record
		want Outcome
	}{
		{"inject", rec("billing", "POST", "https", "api.stripe.com", "/v1/charges"), Outcome{"inject", "", "charges", "stripe-live"}},
		{"path", rec("billing", "GET", "https", "api.stripe.com", "/v1/refunds"), Outcome{"deny", "path_not_allowed", "", ""}},
		{"method", rec("billing", "DELETE", "https", "api.stripe.com", "/v1/charges/ch_1"), Outcome{"deny", "method_not_allowed", "", ""}},
		{"connect refused", rec("billing", "GET", "https", "unknown.test", "/"), Outcome{"deny", "no_rule", "", ""}},
		{"tunnelled request", rec("billing", "POST", "https", "intake.example.com", "/v1/logs"), Outcome{"tunnel", "", "intake", ""}},
		{"tunnel line", rec("billing", "CONNECT", "https", "intake.example.com", ""), Outcome{"tunnel", "", "intake", ""}},
		{"anonymous", rec("anonymous", "GET", "https", "api.stripe.com", "/v1/charges"), Outcome{"deny", "no_rule", "", ""}},
		{"bad path", rec("billing", "GET", "https", "api.stripe.com", "/v1/charges/..%2F"), Outcome{"deny", "bad_path", "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, decide(t, p, tt.r)); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	recs := []audit.Record{
		rec("billing", "POST", "https", "api.stripe.com", "/v1/charges"),
		rec("billing", "POST", "https", "api.stripe.com", "/v1/charges"),
		rec("billing", "GET", "https", "api.stripe.com", "/v1/refunds"),
		rec("billing", "CONNECT", "https", "intake.example.com", ""),
		rec("anonymous", "GET", "https", "api.stripe.com", "/v1/charges"),
	}
	ended := rec("billing", "CONNECT", "https", "intake.example.com", "")
	ended.Closed = "ended"
	recs = append(recs, ended)
	tests := []struct {
		name string
		new  string
		want []string // "OLD -> NEW: REQUEST xN"
	}{
		{"same policy", oldPolicy, nil},
		{"narrowed methods", strings.Replace(oldPolicy, "methods: [GET, POST]", "methods: [GET]", 1),
			[]string{"inject by rule charges with credential stripe-live -> deny [method_not_allowed]: POST https://api.stripe.com/v1/charges x2"}},
		{"widened paths", strings.Replace(oldPolicy, "paths: [/v1/charges*]", "paths: [/v1/charges*, /v1/refunds*]", 1),
			[]string{"deny [path_not_allowed] -> inject by rule charges with credential stripe-live: GET https://api.stripe.com/v1/refunds x1"}},
		{"tunnel removed", strings.Replace(oldPolicy, "    to: intake\n    action: tunnel", "    to: intake\n    action: deny", 1),
			[]string{"tunnel by rule intake -> deny [denied_by_rule] by rule intake: CONNECT intake.example.com x1"}},
		{"observe mode", "mode: observe\n" + oldPolicy, []string{
			"deny [no_rule] -> would_deny [no_rule]: GET https://api.stripe.com/v1/charges x1",
			"deny [path_not_allowed] -> would_deny [path_not_allowed]: GET https://api.stripe.com/v1/refunds x1",
		}},
	}
	oldP := parse(t, oldPolicy)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			changes, _, err := Diff(context.Background(), gateway.Judge{Policy: oldP}, gateway.Judge{Policy: parse(t, tt.new)}, recs)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range changes {
				got = append(got, c.Old.String()+" -> "+c.New.String()+": "+c.Request()+" x"+strconv.Itoa(c.Count))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Diff (-want +got):\n%s", diff)
			}
			var buf bytes.Buffer
			if err := WriteText(&buf, changes, len(recs), 0); err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(buf.String(), strconv.Itoa(len(tt.want))+" request(s) change outcome, from 6 audit line(s) replayed\n") {
				t.Errorf("WriteText summary:\n%s", buf.String())
			}
		})
	}
}

// TestEncodedDelimitersReplayed: replay refuses %3F and %23 as the
// gateway does, unless the destination sets encoded_delimiters: true.
func TestEncodedDelimitersReplayed(t *testing.T) {
	off := parse(t, oldPolicy)
	on := parse(t, strings.Replace(oldPolicy, "    hosts: [api.stripe.com]\n", "    hosts: [api.stripe.com]\n    encoded_delimiters: true\n", 1))
	for _, tt := range []struct {
		p    *policy.Policy
		r    audit.Record
		want Outcome
	}{
		{off, rec("billing", "GET", "https", "api.stripe.com", "/v1/charges%3Fx"), Outcome{"deny", "bad_path", "charges", ""}},
		{off, rec("billing", "GET", "https", "api.stripe.com", "/v1/charges%23x"), Outcome{"deny", "bad_path", "charges", ""}},
		{on, rec("billing", "GET", "https", "api.stripe.com", "/v1/charges%3Fx"), Outcome{"inject", "", "charges", "stripe-live"}},
		{on, rec("billing", "GET", "https", "api.stripe.com", "/v1/charges%23x"), Outcome{"inject", "", "charges", "stripe-live"}},
		{on, rec("billing", "GET", "https", "api.stripe.com", "/v1/refunds%3F/charges"), Outcome{"deny", "path_not_allowed", "", ""}},
	} {
		if diff := cmp.Diff(tt.want, decide(t, tt.p, tt.r)); diff != "" {
			t.Errorf("%s: Decide (-want +got):\n%s", tt.r.Path, diff)
		}
	}
}

// TestDiffHostileLines: a refused line that is no request a policy
// decides (a malformed request's line, with no host) is the same under
// every policy and is counted, not replayed; a line that claims a request
// went through but is not one the gateway writes (a wildcard host, a path
// with a query that would be replayed as another path) is an error naming
// it, never decided as something else.
func TestDiffHostileLines(t *testing.T) {
	p := parse(t, oldPolicy)
	malformed := audit.Record{Pos: audit.Pos{File: "a.log", Line: 2}, Workload: "anonymous", Method: "get", Decision: "deny", Code: "malformed_request"}
	changes, skipped, err := Diff(context.Background(), gateway.Judge{Policy: p}, gateway.Judge{Policy: p}, []audit.Record{malformed, rec("billing", "GET", "https", "api.stripe.com", "/v1/charges")})
	if err != nil || len(changes) != 0 || skipped != 1 {
		t.Errorf("Diff with a malformed request's line = %v, %d skipped, %v; want no change, 1 skipped", changes, skipped, err)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, changes, 2, skipped); err != nil || !strings.Contains(buf.String(), "from 2 audit line(s) replayed (1 refused before any policy decided it") {
		t.Errorf("WriteText: %v\n%s", err, buf.String())
	}
	for _, r := range []audit.Record{
		rec("billing", "GET", "https", "*.stripe.com", "/v1/charges"),
		rec("billing", "GET", "https", "api.stripe.com", "/v1/refunds?/v1/charges"),
		rec("*", "GET", "https", "api.stripe.com", "/v1/charges"),
	} {
		r.Decision, r.Pos.Line = "inject", 9
		if _, _, err := Diff(context.Background(), gateway.Judge{Policy: p}, gateway.Judge{Policy: p}, []audit.Record{r}); err == nil || !strings.HasPrefix(err.Error(), "a.log:9: not a request line the gateway writes") {
			t.Errorf("%+v: Diff error = %v, want one naming a.log:9", r, err)
		}
	}
}
