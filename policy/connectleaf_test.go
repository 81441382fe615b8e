package policy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestConnectInterceptsOnlyWhatMayPass: a CONNECT is intercepted (and the
// gateway signs a leaf certificate for it) only when some request inside
// the tunnel could be let through. A CONNECT whose candidates are deny
// rules only — with methods, paths or a `when:` — was intercepted, and a
// leaf signed and cached for every such host, though every request inside
// would be refused. The class: every sequence of up to three candidate
// rules drawn from the kinds below, each CONNECT decision checked against
// the decisions of a set of requests inside the tunnel (differential):
// Intercept or Tunnel exactly when some request is let through, and
// Intercept never when none is.
func TestConnectInterceptsOnlyWhatMayPass(t *testing.T) {
	kinds := []struct{ name, yaml string }{
		{"inject", "inject: {credential: c, as: bearer}"},
		{"inject-paths", "paths: [/v1/ok*]\n    inject: {credential: c, as: bearer}"},
		{"inject-when", "when: 'request.path.startsWith(\"/v1/ok\")'\n    inject: {credential: c, as: bearer}"},
		{"tunnel", "action: tunnel"},
		{"tunnel-when-false", "action: tunnel\n    when: 'workload.name == \"nobody\"'"},
		{"deny", "action: deny"},
		{"deny-paths", "action: deny\n    paths: [/v1/admin*]"},
		{"deny-methods", "action: deny\n    methods: [DELETE]"},
		{"deny-when", "action: deny\n    when: 'request.path.startsWith(\"/v1/admin\")'"},
	}
	requests := []struct{ method, path string }{
		{http.MethodGet, "/v1/ok"}, {http.MethodGet, "/v1/admin"}, {http.MethodDelete, "/v1/ok"},
		{http.MethodPost, "/v1/other"}, {http.MethodGet, "/"},
	}
	var seqs [][]int
	var grow func(prefix []int)
	grow = func(prefix []int) {
		if len(prefix) > 0 {
			seqs = append(seqs, append([]int(nil), prefix...))
		}
		if len(prefix) == 3 {
			return
		}
		for k := range kinds {
			grow(append(prefix, k))
		}
	}
	grow(nil)
	checked := 0
	for _, seq := range seqs {
		var b strings.Builder
		b.WriteString("workloads:\n  w:\n    cidrs: [10.9.0.0/16]\ndestinations:\n  d:\n    hosts: [api.origin.test]\ncredentials:\n  c:\n    provider: policytest\n    value: v\nrules:\n")
		var names []string
		for i, k := range seq {
			fmt.Fprintf(&b, "  - name: r%d\n    from: w\n    to: d\n    %s\n", i, kinds[k].yaml)
			names = append(names, kinds[k].name)
		}
		b.WriteString("default: deny\n")
		p := mustParse(t, b.String())
		d := p.Decide(connect("w", "api.origin.test", 443))
		passes := false
		for _, r := range requests {
			rd := p.Decide(request("w", r.method, "https", "api.origin.test", 443, r.path))
			if rd.Action == Inject || rd.Action == Forward {
				passes = true
			}
		}
		switch {
		case d.Action == Intercept && !passes:
			t.Errorf("%v: CONNECT intercepted (%s), but no request inside would pass: a leaf signed for nothing", names, d.Reason)
		case d.Action == Deny && passes:
			t.Errorf("%v: CONNECT refused (%s %s), but a request inside would pass", names, d.Code, d.Reason)
		case d.Action == Deny && d.Code == "":
			t.Errorf("%v: CONNECT refused without a code", names)
		}
		checked++
	}
	if checked != len(kinds)+len(kinds)*len(kinds)+len(kinds)*len(kinds)*len(kinds) {
		t.Fatalf("checked %d sequences", checked)
	}
}
