package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/policy"
)

// overridePolicy allows POST and GET to charges with an injected X-Api-Key
// and denies DELETE there; /v1/acting/* is allowed only without X-Act-As.
const overridePolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: no-delete
    from: local
    to: api
    methods: [DELETE]
    paths: [/v1/charges/*]
    action: deny
  - name: charges
    from: local
    to: api
    paths: [/v1/charges/*, /v1/keyed/*]
    inject: {credential: token, as: header, name: X-Api-Key}
  - name: acting
    from: local
    to: api
    paths: [/v1/acting/*]
    when: '!("x-act-as" in request.headers)'
    inject: {credential: token, as: header, name: X-Api-Key}
default: deny
`

func startOverrideGateway(t *testing.T) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(overridePolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	return tg
}

// overrideProtos are the client protocols the tests of this file run over.
var overrideProtos = []struct {
	name string
	h2   bool
}{{"HTTP/1.1", false}, {"HTTP/2", true}}

// sendThrough sends method path?query with the header fields h (keys
// written as given: HTTP/1.1 sends them in that spelling) through the
// gateway, and returns the answer and its body.
func sendThrough(t *testing.T, c *http.Client, h2 bool, method, target string, h http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+apiHost+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vv := range h {
		req.Header[k] = append(req.Header[k], vv...)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if (resp.ProtoMajor == 2) != h2 {
		t.Fatalf("%s %s: spoke %s", method, target, resp.Proto)
	}
	return resp, string(b)
}

// TestMethodOverrideRefused is the class of "a request asks the server to
// run another method than the one the policy decided on": every override
// header (any case, several values, several fields) and the _method query
// parameter (encoded, repeated) naming another method is refused with
// 400 bad_method, audited and counted, over HTTP/1.1 and HTTP/2, and
// nothing reaches the origin; naming the request's own method passes.
// Before, a POST with X-HTTP-Method-Override: DELETE was decided as POST
// (allowed, credential injected) and forwarded as it was.
func TestMethodOverrideRefused(t *testing.T) {
	tg := startOverrideGateway(t)
	hv := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = append(h[kv[i]], kv[i+1])
		}
		return h
	}
	cases := []struct {
		name   string
		method string
		query  string
		header http.Header
		// field is what the reason must name; "" when the request passes.
		field string
	}{
		{"X-HTTP-Method-Override", "POST", "", hv("X-HTTP-Method-Override", "DELETE"), "X-HTTP-Method-Override"},
		{"lower case name and value", "POST", "", hv("x-http-method-override", "delete"), "X-HTTP-Method-Override"},
		{"upper case name", "POST", "", hv("X-HTTP-METHOD-OVERRIDE", " Delete "), "X-HTTP-Method-Override"},
		{"X-HTTP-Method", "POST", "", hv("X-HTTP-Method", "DELETE"), "X-HTTP-Method"},
		{"x-http-method", "POST", "", hv("x-http-method", "DELETE"), "X-HTTP-Method"},
		{"X-Method-Override", "POST", "", hv("X-Method-Override", "DELETE"), "X-Method-Override"},
		{"X-METHOD-OVERRIDE", "GET", "", hv("X-METHOD-OVERRIDE", "delete"), "X-Method-Override"},
		{"list in one field", "POST", "", hv("X-HTTP-Method-Override", "POST, DELETE"), "X-HTTP-Method-Override"},
		{"two fields", "POST", "", hv("X-HTTP-Method-Override", "POST", "X-HTTP-Method-Override", "DELETE"), "X-HTTP-Method-Override"},
		{"two fields in two casings", "POST", "", hv("X-Http-Method-Override", "POST", "x-HTTP-method-OVERRIDE", "DELETE"), "X-HTTP-Method-Override"},
		{"two names", "POST", "", hv("X-Method-Override", "POST", "X-Http-Method", "DELETE"), "X-HTTP-Method"},
		{"not a method name", "POST", "", hv("X-HTTP-Method-Override", "DELETE /v1/x"), "X-HTTP-Method-Override"},
		{"query", "POST", "_method=DELETE", nil, "_method"},
		{"query, lower case value", "POST", "a=1&_method=delete", nil, "_method"},
		{"query, encoded name", "POST", "%5Fmethod=DELETE", nil, "_method"},
		{"query, encoded name, lower hex", "POST", "%5fmethod=DELETE", nil, "_method"},
		{"query, twice", "POST", "_method=POST&_method=DELETE", nil, "_method"},
		{"query, PHP's dot", "POST", ".method=DELETE", nil, "_method"},
		{"same method", "POST", "", hv("X-HTTP-Method-Override", "post"), ""},
		{"same method, every name", "POST", "", hv("X-HTTP-Method-Override", "POST", "x-http-method", "POST, post", "X-Method-Override", " POST "), ""},
		{"same method, query", "POST", "_method=POST&_method=post", nil, ""},
		{"other query names", "POST", "x_method=DELETE&method=DELETE&_Method=DELETE", nil, ""},
		{"no override", "POST", "", nil, ""},
	}
	refused := 0
	for _, p := range overrideProtos {
		c := tg.client(t, p.h2)
		for i, tt := range cases {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				path := fmt.Sprintf("/v1/charges/ch_%d_%v", i, p.h2)
				target := path
				if tt.query != "" {
					target += "?" + tt.query
				}
				before := len(tg.origin.all())
				resp, body := sendThrough(t, c, p.h2, tt.method, target, tt.header)
				if tt.field == "" {
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("%d %s %s, want 200", resp.StatusCode, resp.Header.Get(ReasonHeader), body)
					}
					got := tg.origin.all()[before]
					if got.Method != tt.method || got.Path != path || got.Header.Get("X-Api-Key") != tg.token {
						t.Errorf("origin got %s %s with X-Api-Key %q, want %s with the injected credential", got.Method, got.Path, got.Header.Get("X-Api-Key"), tt.method)
					}
					return
				}
				refused++
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(ReasonHeader) != policy.CodeBadMethod {
					t.Fatalf("%d %q, want 400 %s", resp.StatusCode, resp.Header.Get(ReasonHeader), policy.CodeBadMethod)
				}
				var f refusal
				if err := json.Unmarshal([]byte(body), &f); err != nil {
					t.Fatalf("body %q: %v", body, err)
				}
				if !strings.Contains(f.Reason, tt.field) || !strings.Contains(f.Reason, "instead of an override") {
					t.Errorf("reason %q does not name %s and the fix", f.Reason, tt.field)
				}
				if strings.Contains(tt.name, "not a method") && strings.Contains(f.Reason, "/v1/x") {
					t.Errorf("reason %q repeats a value that is not a method", f.Reason)
				}
				if n := len(tg.origin.all()); n != before {
					t.Errorf("the origin received the request")
				}
				wantAudited(t, tg, path, http.StatusBadRequest, policy.CodeBadMethod)
			})
		}
	}
	if got, want := metric(t, tg, `credgate_refusals_total{code="bad_method"}`), fmt.Sprintf(`credgate_refusals_total{code="bad_method"} %d`, refused); got != want {
		t.Errorf("metric %q, want %q", got, want)
	}
}

// TestMethodOverrideRefusedRawHTTP1: override fields as they arrive on
// the wire, in spellings a Go client does not produce.
func TestMethodOverrideRefusedRawHTTP1(t *testing.T) {
	tg := startOverrideGateway(t)
	for _, fields := range []string{
		"x-http-method-override: DELETE\r\n",
		"X-HTTP-Method-Override: POST\r\nx-http-method-override: DELETE\r\n",
		"X-Http-Method: POST,DELETE\r\n",
		"x-method-override:\tdelete\t\r\n",
	} {
		before := len(tg.origin.all())
		status, code := rawRequest(t, tg, apiHost, "POST /v1/charges/ch_1 HTTP/1.1\r\nHost: "+apiHost+"\r\nContent-Length: 0\r\n"+fields+"\r\n")
		if status != http.StatusBadRequest || code != policy.CodeBadMethod {
			t.Errorf("%q: %d %q, want 400 %s", fields, status, code, policy.CodeBadMethod)
		}
		if len(tg.origin.all()) != before {
			t.Errorf("%q: the origin received the request", fields)
		}
	}
}
