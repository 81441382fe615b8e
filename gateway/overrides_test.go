package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
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
		{"query, PHP's NUL cut", "POST", "a=1&_method%00x=DELETE", nil, "_method"},
		{"same method", "POST", "", hv("X-HTTP-Method-Override", "post"), ""},
		{"same method, every name", "POST", "", hv("X-HTTP-Method-Override", "POST", "x-http-method", "POST, post", "X-Method-Override", "POST"), ""},
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

// TestUnderscoreFieldsDropped is the class of "a header field name with
// '_', which CGI-style servers read as the name with '-'": every such
// field is removed before the policy sees the request, over HTTP/1.1 and
// HTTP/2, so that the origin receives none of them and the condition and
// the injection behave exactly as for the request without them (the
// differential: each request is also sent without its '_' fields and
// must get the same answer and the same fields at the origin). Before,
// X_Act_As passed a condition on x-act-as, X_Forwarded_For, X_Real_IP
// and X_Client_Cert passed although their '-' spellings are removed, and
// X_api_key reached the origin beside the injected X-Api-Key.
func TestUnderscoreFieldsDropped(t *testing.T) {
	tg := startOverrideGateway(t)
	const secretish = "underscore-value-not-logged"
	for _, tt := range []struct {
		name   string
		path   string
		header http.Header
		status int
	}{
		{"X_Forwarded_For", "/v1/charges/x", http.Header{"X_Forwarded_For": {"10.0.0.1"}}, 200},
		{"x_forwarded_for", "/v1/charges/x", http.Header{"x_forwarded_for": {"10.0.0.1"}}, 200},
		{"X-Forwarded_For", "/v1/charges/x", http.Header{"X-Forwarded_For": {"10.0.0.1"}}, 200},
		{"X_Real_IP", "/v1/charges/x", http.Header{"X_Real_IP": {"10.0.0.1"}}, 200},
		{"X_Client_Cert", "/v1/charges/x", http.Header{"X_Client_Cert": {secretish}}, 200},
		{"X_Forwarded_Client_Cert", "/v1/charges/x", http.Header{"X_Forwarded_Client_Cert": {"Hash=1"}}, 200},
		{"Proxy_Authorization", "/v1/charges/x", http.Header{"Proxy_Authorization": {"Basic eA=="}}, 200},
		{"X_api_key", "/v1/keyed/x", http.Header{"X_api_key": {"mine"}}, 200},
		{"X_API_KEY beside X-Api-Key", "/v1/keyed/x", http.Header{"X_API_KEY": {"mine"}, "X-Api-Key": {"mine too"}}, 200},
		{"x-api_key", "/v1/keyed/x", http.Header{"x-api_key": {secretish}}, 200},
		{"X_Act_As", "/v1/acting/x", http.Header{"X_Act_As": {"admin"}}, 200},
		{"x_act_as", "/v1/acting/x", http.Header{"x_act_as": {"admin"}}, 200},
		{"X-Act_As", "/v1/acting/x", http.Header{"X-Act_As": {"admin"}}, 200},
		{"X_Act_As beside X-Act-As", "/v1/acting/x", http.Header{"X_Act_As": {"nobody"}, "X-Act-As": {"admin"}}, 403},
		{"X_HTTP_Method_Override", "/v1/charges/x", http.Header{"X_HTTP_Method_Override": {"DELETE"}}, 200},
		{"several", "/v1/keyed/x", http.Header{"A_b": {"1"}, "_": {"2"}, "X-Kept": {"3"}, "X__": {"4"}}, 200},
	} {
		for _, p := range overrideProtos {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				c := tg.client(t, p.h2)
				without := http.Header{}
				for k, vv := range tt.header {
					if !strings.Contains(k, "_") {
						without[k] = vv
					}
				}
				var got [2]seen
				for i, h := range []http.Header{tt.header, without} {
					before := len(tg.origin.all())
					resp, body := sendThrough(t, c, p.h2, http.MethodGet, tt.path, h)
					if resp.StatusCode != tt.status {
						t.Fatalf("with %v: %d %s %s, want %d", h, resp.StatusCode, resp.Header.Get(ReasonHeader), body, tt.status)
					}
					if tt.status != http.StatusOK {
						if len(tg.origin.all()) != before {
							t.Fatalf("with %v: refused, but the origin received it", h)
						}
						return
					}
					got[i] = tg.origin.all()[before]
				}
				for k := range got[0].Header {
					if strings.Contains(k, "_") {
						t.Errorf("the origin received %s", k)
					}
				}
				if a, b := fieldNames(got[0].Header), fieldNames(got[1].Header); a != b {
					t.Errorf("the origin received fields %s, and %s without the '_' fields", a, b)
				}
				if k := got[0].Header.Values("X-Api-Key"); len(k) != 1 || k[0] != tg.token {
					t.Errorf("the origin received X-Api-Key %q, want only the injected credential", k)
				}
			})
		}
	}
	logs := tg.logs.String()
	if !strings.Contains(logs, `request header field with '_' in its name dropped`) || !strings.Contains(logs, `"field":"X_client_cert"`) {
		t.Errorf("the drops are not logged with the field name:\n%s", logs)
	}
	if strings.Contains(logs, secretish) {
		t.Errorf("a dropped field's value was logged")
	}
}

// TestUnderscoreTrailersDropped: a chunked request's trailers with '_' in
// their names are not forwarded either (servers that merge trailers into
// the headers would read X_Api_Key as X-Api-Key); no request trailer is
// (TestRequestTrailersNotForwarded).
func TestUnderscoreTrailersDropped(t *testing.T) {
	tg := startOverrideGateway(t)
	before := len(tg.origin.all())
	status, code := rawRequest(t, tg, apiHost, "POST /v1/keyed/trailers HTTP/1.1\r\nHost: "+apiHost+
		"\r\nTransfer-Encoding: chunked\r\nTrailer: X_Api_Key, X-Kept\r\n\r\n"+
		"1\r\na\r\n0\r\nX_Api_Key: mine\r\nX_Undeclared: 1\r\nX-Kept: 1\r\n\r\n")
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, code)
	}
	got := tg.origin.all()[before]
	for k := range got.Trailer {
		if strings.Contains(k, "_") {
			t.Errorf("the origin received trailer %s", k)
		}
	}
	if len(got.Trailer) != 0 {
		t.Errorf("the origin received trailers %v; request trailers are never forwarded", got.Trailer)
	}
}

// fieldNames lists the names in h, sorted, for comparing what the origin
// received.
func fieldNames(h http.Header) string {
	var names []string
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// TestDropUnderscoreFieldsNoAllocs: a request without such fields costs
// no allocation (the keep-alive fast path).
func TestDropUnderscoreFieldsNoAllocs(t *testing.T) {
	g := &Gateway{log: slog.New(slog.DiscardHandler)}
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"x"}, "Content-Type": {"application/json"}}
	ctx := t.Context()
	if n := testing.AllocsPerRun(100, func() { g.dropUnderscoreFields(ctx, h) }); n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
	h["X_Y"] = []string{"1"}
	g.dropUnderscoreFields(ctx, h)
	if len(h) != 3 {
		t.Errorf("left %v", h)
	}
}
