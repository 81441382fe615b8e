package canonical

import (
	"testing"
)

// TestMethodOverride: every spelling of a method override naming another
// method than the request's is reported, with the field and the method
// for the reason; one naming the request's own method, or none, is not.
func TestMethodOverride(t *testing.T) {
	h := func(kv ...string) map[string][]string {
		m := map[string][]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = append(m[kv[i]], kv[i+1])
		}
		return m
	}
	for _, tt := range []struct {
		name   string
		method string
		header map[string][]string
		query  string
		// field and named are the Override wanted; field "" for none.
		field, named string
	}{
		{"no override", "POST", h("Content-Type", "application/json"), "a=1&b=2", "", ""},
		{"X-HTTP-Method-Override", "POST", h("X-Http-Method-Override", "DELETE"), "", "header field X-HTTP-Method-Override", "DELETE"},
		{"X-HTTP-Method", "POST", h("X-Http-Method", "delete"), "", "header field X-HTTP-Method", "DELETE"},
		{"X-Method-Override", "GET", h("X-Method-Override", " Put\t"), "", "header field X-Method-Override", "PUT"},
		{"list in one field", "POST", h("X-Http-Method-Override", "POST, DELETE"), "", "header field X-HTTP-Method-Override", "DELETE"},
		{"second field", "POST", h("X-Http-Method-Override", "POST", "X-Http-Method-Override", "PATCH"), "", "header field X-HTTP-Method-Override", "PATCH"},
		{"not a method name", "POST", h("X-Http-Method", "DELETE /v1/x"), "", "header field X-HTTP-Method", ""},
		{"same method", "POST", h("X-Http-Method-Override", "post"), "", "", ""},
		{"same method, list", "DELETE", h("X-Http-Method-Override", "DELETE, delete", "X-Method-Override", " Delete "), "", "", ""},
		{"empty value names nothing", "POST", h("X-Http-Method-Override", "", "X-Http-Method", " , "), "", "", ""},
		{"query", "POST", nil, "_method=DELETE", "query parameter _method", "DELETE"},
		{"query, lower case value", "POST", nil, "a=1&_method=delete", "query parameter _method", "DELETE"},
		{"query, encoded name", "POST", nil, "%5Fmethod=DELETE", "query parameter _method", "DELETE"},
		{"query, encoded letters", "POST", nil, "%5f%6Dethod=DELETE", "query parameter _method", "DELETE"},
		{"query, encoded value", "POST", nil, "_method=DEL%45TE", "query parameter _method", "DELETE"},
		{"query, twice", "POST", nil, "_method=POST&_method=DELETE", "query parameter _method", "DELETE"},
		{"query, twice the same", "POST", nil, "_method=POST&_method=post", "", ""},
		{"query, semicolon", "POST", nil, "a=1;_method=DELETE", "query parameter _method", "DELETE"},
		{"query, PHP dot", "POST", nil, ".method=DELETE", "query parameter _method", "DELETE"},
		{"query, PHP leading space", "POST", nil, "+%20_method=DELETE", "query parameter _method", "DELETE"},
		{"query, bad escape in value", "POST", nil, "_method=%ZZ", "query parameter _method", ""},
		// PHP registers a name up to its first NUL (a C string): Laravel
		// and Symfony read "_method%00x" as _method.
		{"query, PHP NUL cut", "POST", nil, "_method%00=DELETE", "query parameter _method", "DELETE"},
		{"query, PHP NUL cut, rest", "POST", nil, "a=1&_method%00junk=DELETE", "query parameter _method", "DELETE"},
		{"query, PHP NUL cut, dot", "POST", nil, ".method%00.x=DELETE", "query parameter _method", "DELETE"},
		{"query, NUL before the name ends", "POST", nil, "_meth%00od=DELETE", "", ""},
		{"query, other names", "POST", nil, "x_method=DELETE&_methods=DELETE&_Method=DELETE&method=DELETE&_method", "", ""},
		{"query, same method", "GET", nil, "_method=GET", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, ok := MethodOverride(tt.method, tt.header, tt.query)
			if ok != (tt.field != "") || o.Field != tt.field || o.Method != tt.named {
				t.Errorf("MethodOverride(%s, %v, %q) = %+v, %v; want {Field:%s Method:%s}", tt.method, tt.header, tt.query, o, ok, tt.field, tt.named)
			}
		})
	}
}

// TestMethodOverrideNoAllocs: a request without an override costs no
// allocation (the keep-alive fast path).
func TestMethodOverrideNoAllocs(t *testing.T) {
	h := map[string][]string{"Accept": {"*/*"}, "Content-Type": {"application/json"}, "X-Http-Method-Override": {"POST"}}
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := MethodOverride("POST", h, "a=1&b=%20x&_method=POST&%5Fother=1"); ok {
			t.Fatal("override reported")
		}
	}); n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}
