package audit

import (
	"strings"
	"testing"
)

// TestRecordCheck: every request field the replay and suggest tools read
// from a line is one the gateway writes, or the line is an error naming
// its position and the field; a value that would change meaning when
// written into a URL or a policy (a wildcard host, a host with a path, a
// path with a query or a newline, a workload "*") never passes.
func TestRecordCheck(t *testing.T) {
	good := Record{Pos: Pos{File: "a.log", Line: 3}, Decision: "inject", Rule: "charges", Credential: "stripe", Workload: "billing", Source: "10.1.2.3", Method: "GET", Scheme: "https", Host: "api.stripe.com", Port: 443, Path: "/v1/charges/ch_1%2Fx"}
	ok := []func(*Record){
		func(*Record) {},
		func(r *Record) { r.Workload = "anonymous" },
		func(r *Record) { r.Method, r.Path, r.Decision = "CONNECT", "", "tunnel" },
		func(r *Record) { r.Method, r.Path, r.Decision = "CONNECT", "", "would_deny" },
		func(r *Record) { r.Decision, r.Rule, r.Credential = "deny", "", "" },
		func(r *Record) { r.Host = "127.0.0.1" },
		func(r *Record) { r.Host = "::1" },
		func(r *Record) { r.Host = "x_y.wild.test" },
		func(r *Record) { r.Scheme, r.Port = "http", 80 },
		func(r *Record) { r.Method = "*A" },
		func(r *Record) { r.Source = "" },
		func(r *Record) { r.Source = "fd00::1" },
	}
	for i, f := range ok {
		r := good
		f(&r)
		if err := r.Check(); err != nil {
			t.Errorf("ok %d: %+v: %v", i, r, err)
		}
	}
	bad := []struct {
		field string
		f     func(*Record)
	}{
		{"method", func(r *Record) { r.Method = "get" }},
		{"method", func(r *Record) { r.Method = "GET\n- name: x" }},
		{"method", func(r *Record) { r.Method = "" }},
		{"scheme", func(r *Record) { r.Scheme = "ftp" }},
		{"host", func(r *Record) { r.Host = "*.com" }},
		{"host", func(r *Record) { r.Host = "*" }},
		{"host", func(r *Record) { r.Host = "a.test/x" }},
		{"host", func(r *Record) { r.Host = "a.test:8443" }},
		{"host", func(r *Record) { r.Host = "evil@a.test" }},
		{"host", func(r *Record) { r.Host = "API.test" }},
		{"host", func(r *Record) { r.Host = "a.test." }},
		{"host", func(r *Record) { r.Host = "a.test\n" }},
		{"host", func(r *Record) { r.Host = "" }},
		{"host", func(r *Record) { r.Host = "fe80::1%eth0" }},
		{"host", func(r *Record) { r.Host = "::ffff:127.0.0.1" }},
		{"host", func(r *Record) { r.Host = "{a}.test" }},
		{"port", func(r *Record) { r.Port = 0 }},
		{"port", func(r *Record) { r.Port = 70000 }},
		{"path", func(r *Record) { r.Path = "v1" }},
		{"path", func(r *Record) { r.Path = "" }},
		{"path", func(r *Record) { r.Path = "/v1?x=1" }},
		{"path", func(r *Record) { r.Path = "/v1#x" }},
		{"path", func(r *Record) { r.Path = "/v1/a b" }},
		{"path", func(r *Record) { r.Path = "/v1/\n- x" }},
		{"path", func(r *Record) { r.Path = "/v1/é" }},
		{"path", func(r *Record) { r.Method, r.Decision = "CONNECT", "tunnel" }},
		{"workload", func(r *Record) { r.Workload = "*" }},
		{"workload", func(r *Record) { r.Workload = "" }},
		{"workload", func(r *Record) { r.Workload = "a b" }},
		{"workload", func(r *Record) { r.Workload = "a,b" }},
		{"workload", func(r *Record) { r.Workload = "a\nb" }},
		{"workload", func(r *Record) { r.Workload = "a\xffb" }},
		{"decision", func(r *Record) { r.Method, r.Path = "CONNECT", "" }},
		{"decision", func(r *Record) { r.Method, r.Path, r.Decision = "CONNECT", "", "forward" }},
		{"decision", func(r *Record) { r.Decision = "admin" }},
		{"decision", func(r *Record) { r.Decision = "" }},
		{"decision", func(r *Record) { r.Credential = "" }},
		{"source", func(r *Record) { r.Source = "10.0.0.0/8" }},
		{"source", func(r *Record) { r.Source = "host" }},
	}
	for i, tt := range bad {
		r := good
		tt.f(&r)
		err := r.Check()
		if err == nil || !strings.HasPrefix(err.Error(), "a.log:3: not a request line the gateway writes: "+tt.field+" ") {
			t.Errorf("bad %d: %+v: Check() = %v, want an error naming a.log:3 and the %s", i, r, err, tt.field)
		}
	}
}
