package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// bigPolicy has n destinations with one host each, n rules (every fourth
// one injects, the others tunnel, deny by path, or deny), three workloads
// and a few wildcards.
func bigPolicy(n int) string {
	var b strings.Builder
	b.WriteString("workloads:\n  w0: {cidrs: [10.0.0.0/16]}\n  w1: {cidrs: [10.1.0.0/16]}\n  w2: {cidrs: [10.2.0.0/16]}\n")
	b.WriteString("destinations:\n")
	for i := range n {
		fmt.Fprintf(&b, "  d%d: {hosts: [svc%d.bench%d.test]}\n", i, i, i%50)
	}
	for i := range 50 {
		fmt.Fprintf(&b, "  wild%d: {hosts: [\"*.bench%d.test\"]}\n", i, i)
	}
	b.WriteString("credentials:\n  c: {provider: policytest, value: x}\nrules:\n")
	for i := range n {
		who := fmt.Sprintf("w%d", i%3)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  - {name: r%d, from: %s, to: d%d, methods: [GET, POST], paths: [/v1/*], inject: {credential: c, as: policytest-inj}}\n", i, who, i)
		case 1:
			fmt.Fprintf(&b, "  - {name: r%d, from: %s, to: d%d, action: tunnel}\n", i, who, i)
		case 2:
			fmt.Fprintf(&b, "  - {name: r%d, from: %s, to: d%d, paths: [/admin*], action: deny}\n", i, who, i)
		default:
			fmt.Fprintf(&b, "  - {name: r%d, from: \"*\", to: d%d, action: deny}\n", i, i)
		}
	}
	for i := range 50 {
		fmt.Fprintf(&b, "  - {name: wild%d, from: \"*\", to: wild%d, action: tunnel}\n", i, i)
	}
	b.WriteString("default: deny\n")
	return b.String()
}

// BenchmarkDecide10kRules decides requests and CONNECTs against a policy
// of 10 000 rules over 10 000 hosts.
func BenchmarkDecide10kRules(b *testing.B) {
	const n = 10000
	p, err := Parse(context.Background(), "bench.yaml", []byte(bigPolicy(n)))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	queries := make([]Query, 1024)
	for i := range queries {
		h := (i * 7919) % n
		who := fmt.Sprintf("w%d", h%3)
		if i%2 == 0 {
			queries[i] = request(who, "POST", "https", fmt.Sprintf("svc%d.bench%d.test", h, h%50), 443, "/v1/charges/ch_123")
		} else {
			queries[i] = connect(who, fmt.Sprintf("other%d.bench%d.test", h, h%50), 443)
		}
	}
	if d := p.Decide(queries[0]); d.Action != Inject {
		b.Fatalf("first query: %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p.Decide(queries[i%len(queries)])
	}
}

func TestBigPolicyDecides(t *testing.T) {
	p := mustParse(t, bigPolicy(400))
	tests := []struct {
		q    Query
		want got
	}{
		{request("w0", "POST", "https", "svc0.bench0.test", 443, "/v1/x"), got{Action: "inject", Rule: "r0", Destination: "d0", Credential: "c"}},
		{request("w1", "POST", "https", "svc0.bench0.test", 443, "/v1/x"), got{Action: "forward", Rule: "wild0", Destination: "wild0"}},
		{connect("w1", "svc1.bench1.test", 443), got{Action: "tunnel", Rule: "r1", Destination: "d1"}},
		{connect("w2", "svc2.bench2.test", 443), got{Action: "intercept", Rule: "r2", Destination: "d2"}},
		{connect("w0", "svc3.bench3.test", 443), got{Action: "deny", Rule: "r3", Destination: "d3", Code: "denied_by_rule"}},
		{connect("", "x.bench7.test", 443), got{Action: "deny", Code: "no_rule"}},
	}
	for _, tt := range tests {
		if diff := compareDecision(tt.want, p.Decide(tt.q)); diff != "" {
			t.Errorf("Decide(%+v) mismatch (-want +got):\n%s", tt.q, diff)
		}
	}
}

// TestDecideAllocs: deciding an allowed request (one per request inside
// a tunnel, where a CONNECT is one per connection) against rules
// without conditions, with NoAllowReason as the gateway asks, allocates
// nothing: the Query does not escape (only a copy for a rule's
// condition does, in its own branch).
func TestDecideAllocs(t *testing.T) {
	p := mustParse(t, bigPolicy(40))
	for _, q := range []Query{
		request("w0", "POST", "https", "svc0.bench0.test", 443, "/v1/x"),
		request("w1", "GET", "https", "svc0.bench0.test", 443, "/v1/x"), // the wildcard's forward
	} {
		q.NoAllowReason = true
		if d := p.Decide(q); d.Action == Deny {
			t.Fatalf("Decide(%+v) = %+v", q, d)
		}
		if n := testing.AllocsPerRun(100, func() { p.Decide(q) }); n != 0 {
			t.Errorf("Decide(%s %s): %v allocations, want 0", q.Method, q.Host, n)
		}
	}
}
