package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/batch"
)

const (
	graphHost  = "graph.microsoft.com"
	sfHost     = "acme.my.salesforce.com"
	googleHost = "www.googleapis.com"
)

// batchPolicy admits broad globs over three batch services: the batch
// endpoint and every read under it, but not DELETE, not the admin paths
// (a deny rule) and not the mail paths (another rule, another
// credential).
const batchPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
destinations:
  graph:
    hosts: [graph.microsoft.com]
    allow_private: true
  sf:
    hosts: [acme.my.salesforce.com]
    allow_private: true
  google:
    hosts: [www.googleapis.com]
    allow_private: true
  partner:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
  mail:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: no-admin
    from: local
    to: [graph, sf, google]
    paths: ["/v1.0/admin*", "/services/data/*/sobjects/User*", "/admin*"]
    action: deny
  - name: graph-mail
    from: local
    to: graph
    paths: ["/v1.0/me/messages*"]
    inject: {credential: mail, as: bearer}
  - name: graph
    from: local
    to: graph
    methods: [GET, POST]
    paths: ["/v1.0/*"]
    inject: {credential: token, as: bearer}
  - name: sf
    from: local
    to: sf
    methods: [GET, POST]
    paths: ["/services/data/*"]
    inject: {credential: token, as: bearer}
  - name: google
    from: local
    to: google
    methods: [GET, POST]
    paths: ["/batch/*", "/drive/v3/*", "/storage/v1/*"]
    inject: {credential: token, as: bearer}
  - name: partner
    from: local
    to: partner
    methods: [GET, POST]
    paths: ["/odata/*"]
    inject: {credential: token, as: bearer, batch: {format: multipart-http, paths: [/odata/batch]}}
  - name: graph-open
    from: local
    to: graph
    paths: ["/beta/*"]
    inject: {credential: token, as: bearer, allow_batch: true}
default: deny
`

func startBatchGateway(t *testing.T, extra string) *testGateway {
	t.Helper()
	pki := newTestPKI(t, graphHost, sfHost, googleHost, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(batchPolicy+extra))
	tg.run(t, fmt.Sprintf("resolve:\n  \"graph.microsoft.com:443\": %q\n  \"acme.my.salesforce.com:443\": %q\n  \"www.googleapis.com:443\": %q\n  \"api.origin.test:443\": %q\n",
		tg.origin.addr, tg.origin.addr, tg.origin.addr, tg.origin.addr))
	return tg
}

// sub is one sub-request of a test batch.
type sub struct{ method, url string }

// batchFormat builds the request of one batch format from sub-requests.
type batchFormat struct {
	name, host, path, contentType string
	build                         func([]sub) []byte
}

func jsonBody(key string, subs []sub, hdr string) []byte {
	var items []map[string]any
	for i, s := range subs {
		it := map[string]any{"method": s.method, "url": s.url}
		if key == "requests" {
			it["id"] = fmt.Sprint(i + 1)
		} else {
			it["referenceId"] = fmt.Sprintf("r%d", i)
		}
		if hdr != "" {
			it[hdr] = map[string]string{"Accept": "application/json"}
		}
		items = append(items, it)
	}
	b, _ := json.Marshal(map[string]any{key: items})
	return b
}

func multipartBody(subs []sub) []byte {
	var b strings.Builder
	for i, s := range subs {
		fmt.Fprintf(&b, "--b0undary\r\nContent-Type: application/http\r\nContent-ID: <item%d>\r\n\r\n%s %s\r\nAccept: application/json\r\n\r\n", i, s.method, s.url)
	}
	b.WriteString("--b0undary--\r\n")
	return []byte(b.String())
}

// batchFormats are the formats the gateway reads, each with how a
// sub-request's url is written for the service (graph: relative to the
// version root; Salesforce batch: relative to /services/data/).
var batchFormats = []batchFormat{
	{"graph", graphHost, "/v1.0/$batch", "application/json", func(s []sub) []byte { return jsonBody("requests", s, "headers") }},
	{"salesforce-composite", sfHost, "/services/data/v60.0/composite", "application/json", func(s []sub) []byte { return jsonBody("compositeRequest", s, "httpHeaders") }},
	{"salesforce-batch", sfHost, "/services/data/v60.0/composite/batch", "application/json", func(s []sub) []byte { return jsonBody("batchRequests", s, "") }},
	{"salesforce-graph", sfHost, "/services/data/v60.0/composite/graph", "application/json", func(s []sub) []byte {
		var inner map[string]json.RawMessage
		_ = json.Unmarshal(jsonBody("compositeRequest", s, ""), &inner)
		b, _ := json.Marshal(map[string]any{"graphs": []any{map[string]any{"graphId": "g1", "compositeRequest": inner["compositeRequest"]}}})
		return b
	}},
	{"google", googleHost, "/batch/drive/v3", "multipart/mixed; boundary=b0undary", multipartBody},
	// Connect REST API's batch, as its documentation spells it: methods
	// "Get", "Post"; urls /vNN.N/... (the gateway reads /services/data/
	// before them).
	{"salesforce-connect", sfHost, "/services/data/v60.0/connect/batch", "application/json", func(s []sub) []byte {
		var items []map[string]any
		for _, x := range s {
			m := x.method
			if m == strings.ToUpper(m) && len(m) > 1 {
				m = m[:1] + strings.ToLower(m[1:])
			}
			items = append(items, map[string]any{"method": m, "url": x.url})
		}
		b, _ := json.Marshal(map[string]any{"batchRequests": items, "haltOnError": false})
		return b
	}},
}

// urlFor writes the top-level path p as format f's sub-request url.
func urlFor(f batchFormat, p string) string {
	switch f.name {
	case "graph":
		return strings.TrimPrefix(p, "/v1.0")
	case "salesforce-batch":
		return strings.TrimPrefix(p, "/services/data/")
	case "salesforce-connect":
		return strings.TrimPrefix(p, "/services/data")
	}
	return p
}

// TestBatchSubrequestsJudged is the class "a request-in-request endpoint
// admitted by a broad glob runs sub-requests the policy never judged":
// for each batch format (Graph, Salesforce composite, batch and graph,
// Google multipart) over HTTP/1.1 and HTTP/2, plain and gzip-compressed,
// a batch whose sub-requests the batch's rule admits is forwarded
// unchanged, and one with a sub-request refused by method, by a deny
// rule's path, by a hostile spelling of a path (the canonical checks of
// top-level requests), or admitted by another rule (another credential)
// is refused 403 batch_request_not_allowed naming the sub-request, and
// nothing reaches the upstream. Before, every batch was forwarded with
// the credential.
func TestBatchSubrequestsJudged(t *testing.T) {
	tg := startBatchGateway(t, "")
	paths := map[string]struct{ ok, admin, other string }{
		graphHost:  {"/v1.0/users/alice", "/v1.0/admin/roles", "/v1.0/me/messages"},
		sfHost:     {"/services/data/v60.0/sobjects/Account/001", "/services/data/v60.0/sobjects/User/005", ""},
		googleHost: {"/drive/v3/files/abc", "/admin/directory/v1/users", ""},
	}
	type tc struct {
		name   string
		subs   func(ok, admin, other string) []sub
		refuse bool
	}
	cases := []tc{
		{"admitted", func(ok, _, _ string) []sub { return []sub{{"GET", ok}, {"POST", ok}} }, false},
		{"method", func(ok, _, _ string) []sub { return []sub{{"GET", ok}, {"DELETE", ok}} }, true},
		{"lower-case method", func(ok, _, _ string) []sub { return []sub{{"delete", ok}} }, true},
		{"deny rule", func(ok, admin, _ string) []sub { return []sub{{"GET", ok}, {"GET", admin}} }, true},
		{"dot segment", func(ok, _, _ string) []sub { return []sub{{"GET", ok + "/../x"}} }, true},
		{"encoded dots", func(ok, _, _ string) []sub { return []sub{{"GET", ok + "/%2e%2e/x"}} }, true},
		{"double slash", func(ok, _, _ string) []sub { return []sub{{"GET", strings.Replace(ok, "/", "//", 2)}} }, true},
		{"encoded slash", func(ok, _, _ string) []sub { return []sub{{"GET", ok + "%2Fx"}} }, true},
		{"fullwidth solidus", func(ok, _, _ string) []sub { return []sub{{"GET", ok + "%EF%BC%8F..%EF%BC%8Fx"}} }, true},
		{"method override", func(ok, _, _ string) []sub { return []sub{{"GET", ok + "?_method=DELETE"}} }, true},
		{"other rule", func(ok, _, other string) []sub {
			if other == "" {
				return nil
			}
			return []sub{{"GET", ok}, {"GET", other}}
		}, true},
	}
	n := 0
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2)
		for _, f := range batchFormats {
			p := paths[f.host]
			for _, k := range cases {
				subs := k.subs(p.ok, p.admin, p.other)
				if subs == nil {
					continue
				}
				for i := range subs {
					subs[i].url = urlFor(f, subs[i].url)
				}
				for _, gz := range []bool{false, true} {
					for _, chunked := range []bool{false, true} {
						n++
						id := fmt.Sprintf("batch-%d", n)
						t.Run(fmt.Sprintf("h2=%v/%s/%s/gzip=%v/chunked=%v", h2, f.name, k.name, gz, chunked), func(t *testing.T) {
							body := f.build(subs)
							var rd io.Reader = bytes.NewReader(gzipped(body, gz))
							if chunked {
								rd = io.MultiReader(rd) // no length: chunked (HTTP/1.1), no content-length (HTTP/2)
							}
							req, _ := http.NewRequest("POST", "https://"+f.host+f.path, rd)
							req.Header.Set("Content-Type", f.contentType)
							req.Header.Set("X-Probe-Id", id)
							if gz {
								req.Header.Set("Content-Encoding", "gzip")
							}
							resp, err := c.Do(req)
							if err != nil {
								t.Fatal(err)
							}
							rb, _ := io.ReadAll(resp.Body)
							resp.Body.Close()
							arrived := tg.origin.find(id)
							if !k.refuse {
								if resp.StatusCode != http.StatusOK || arrived == nil {
									t.Fatalf("status %d (%s), reached %v; want it forwarded", resp.StatusCode, rb, arrived != nil)
								}
								if got := arrived.Header.Get("Content-Length"); got != fmt.Sprint(len(gzipped(body, gz))) {
									t.Errorf("the upstream got Content-Length %s, want the batch's %d bytes unchanged", got, len(gzipped(body, gz)))
								}
								return
							}
							if resp.StatusCode != http.StatusForbidden || resp.Header.Get(ReasonHeader) != codeBatchNotAllowed {
								t.Errorf("status %d reason %q (%.300s), want 403 %s", resp.StatusCode, resp.Header.Get(ReasonHeader), rb, codeBatchNotAllowed)
							}
							if arrived != nil {
								t.Errorf("the refused batch reached the upstream")
							}
							if !strings.Contains(string(rb), "sub-request ") || !strings.Contains(string(rb), "allow_batch") {
								t.Errorf("the reason should name the sub-request and the setting: %s", rb)
							}
						})
					}
				}
			}
		}
	}
	waitFor(t, 5*time.Second, "the audit lines of the batches", func() bool {
		return strings.Contains(tg.audit.String(), `"code":"`+codeBatchNotAllowed+`"`) && strings.Contains(tg.audit.String(), `"batch":2`)
	})
}

func gzipped(b []byte, gz bool) []byte {
	if !gz {
		return b
	}
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	_, _ = w.Write(b)
	_ = w.Close()
	return out.Bytes()
}

// find returns the request carrying X-Probe-Id id that reached the
// origin, nil if none did.
func (o *testOrigin) find(id string) *seen {
	for _, s := range o.all() {
		if s.Header.Get("X-Probe-Id") == id {
			return &s
		}
	}
	return nil
}

// TestBatchEdges: a batch whose body does not parse as its endpoint's
// format, has more sub-requests than the endpoint takes, names another
// host (an absolute url or a Host field), refers to another
// sub-request's result, nests a batch, or goes to a record collection
// is refused with a reason naming it, nothing sent; a rule with
// allow_batch forwards any batch; a chunked body is judged; observe mode
// forwards a batch whose sub-request it would let through on its own as
// would_deny, without the credential.
func TestBatchEdges(t *testing.T) {
	tg := startBatchGateway(t, "")
	c := tg.client(t, false)
	many := make([]sub, 21)
	for i := range many {
		many[i] = sub{"GET", "/users/" + fmt.Sprint(i)}
	}
	cases := []struct {
		name, host, path, ct, body string
		chunked                    bool
		status                     int
		code, says                 string
	}{
		{"not json", graphHost, "/v1.0/$batch", "application/json", `{"requests":[`, false, 400, codeBadBatch, "not a JSON object"},
		{"no requests", graphHost, "/v1.0/$batch", "application/json", `{"request":[]}`, false, 400, codeBadBatch, "no requests array"},
		{"duplicate url", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"GET","url":"/users/a","url":"/admin/x"}]}`, false, 400, codeBadBatch, "twice"},
		{"url in upper case", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"GET","url":"/users/a","URL":"/admin/x"}]}`, false, 400, codeBadBatch, "twice"},
		{"too many", graphHost, "/v1.0/$batch", "application/json", string(jsonBody("requests", many, "")), false, 400, codeBadBatch, "more sub-requests"},
		{"other host", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"GET","url":"https://evil.example/v1.0/users"}]}`, false, 403, codeBatchNotAllowed, "another host"},
		{"other host field", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"GET","url":"/users","headers":{"Host":"evil.example"}}]}`, false, 403, codeBatchNotAllowed, "another host"},
		{"query spaces", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"GET","url":"/users?$filter=importance eq 'high'"}]}`, false, 200, "", ""},
		{"query spaces override", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"GET","url":"/users/a?x=a b&_method=DELETE"}]}`, false, 403, codeBatchNotAllowed, "bad_method"},
		{"same host absolute", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"GET","url":"https://graph.microsoft.com/v1.0/users"}]}`, false, 200, "", ""},
		{"nested", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"POST","url":"/$batch"}]}`, false, 403, codeBatchNotAllowed, "itself a batch"},
		{"reference", sfHost, "/services/data/v60.0/composite", "application/json", `{"compositeRequest":[{"method":"GET","url":"/services/data/v60.0/sobjects/Account/@{r0.id}","referenceId":"r1"}]}`, false, 403, codeBatchNotAllowed, "refers to the result"},
		{"records", sfHost, "/services/data/v60.0/composite/sobjects", "application/json", `{"records":[]}`, false, 403, codeBatchNotAllowed, "records"},
		{"multipart not http", googleHost, "/batch/drive/v3", "multipart/mixed; boundary=x", "--x\r\nContent-Type: text/plain\r\n\r\nGET /admin/x\r\n--x--\r\n", false, 400, codeBadBatch, "not application/http"},
		{"multipart quoted-printable", googleHost, "/batch/drive/v3", "multipart/mixed; boundary=x", "--x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGET /drive/v3/f=\r\niles\r\n--x--\r\n", false, 400, codeBadBatch, "Content-Transfer-Encoding"},
		{"not multipart", googleHost, "/batch/drive/v3", "application/json", `{}`, false, 400, codeBadBatch, "multipart/mixed"},
		{"chunked refused", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"DELETE","url":"/users/a"}]}`, true, 403, codeBatchNotAllowed, "sub-request 0 (DELETE /v1.0/users/a)"},
		{"chunked admitted", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"GET","url":"/users/a"}]}`, true, 200, "", ""},
		{"allow_batch", graphHost, "/beta/$batch", "application/json", `{"requests":[{"id":"1","method":"DELETE","url":"/users/a"}]}`, false, 200, "", ""},
		{"batch encoded", graphHost, "/v1.0/%24batch", "application/json", `{"requests":[{"id":"1","method":"DELETE","url":"/users/a"}]}`, false, 403, codeBatchNotAllowed, "DELETE"},
		{"batch upper case", graphHost, "/v1.0/$BATCH", "application/json", `{"requests":[{"id":"1","method":"DELETE","url":"/users/a"}]}`, false, 403, codeBatchNotAllowed, "DELETE"},
		{"marked refused", apiHost, "/odata/batch", "multipart/mixed; boundary=x", "--x\r\nContent-Type: application/http\r\n\r\nDELETE /odata/People(1) HTTP/1.1\r\n\r\n--x--\r\n", false, 403, codeBatchNotAllowed, "sub-request 0 (DELETE /odata/People(1)) of the batch to the rule"},
		{"marked admitted", apiHost, "/odata/batch", "multipart/mixed; boundary=x", "--x\r\nContent-Type: application/http\r\n\r\nGET People HTTP/1.1\r\n\r\n--x--\r\n", false, 200, "", ""},
		{"marked nested", apiHost, "/odata/batch", "multipart/mixed; boundary=x", "--x\r\nContent-Type: application/http\r\n\r\nPOST /odata/batch HTTP/1.1\r\n\r\n--x--\r\n", false, 403, codeBatchNotAllowed, "itself a batch"},
		{"gzip bomb", graphHost, "/v1.0/$batch", "application/json", "", false, 413, codeBodyTooLarge, "decodes to more than"},
		{"too large", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"GET","url":"/users/a"}]}` + strings.Repeat(" ", 1<<20), true, 413, codeBodyTooLarge, "larger than"},
		{"long path", graphHost, "/v1.0/$batch", "application/json", `{"requests":[{"id":"1","method":"DELETE","url":"/users/` + strings.Repeat("a", 20000) + `"}]}`, false, 403, codeBatchNotAllowed, "..."},
		{"unknown coding", graphHost, "/v1.0/$batch", "application/json", `{"requests":[]}`, false, 400, codeBadBatch, "content coding"},
		// A length over the bound is refused from the field, no body byte
		// read: the client waits for 100-continue, which never comes, so
		// it sends none (declaredTooLarge). Before, the gateway read
		// batch.MaxBody+1 bytes first.
		{"declared too large", graphHost, "/v1.0/$batch", "application/json", "", false, 413, codeBodyTooLarge, "larger than"},
		{"declared too large h2", graphHost, "/v1.0/$batch", "application/json", "", false, 413, codeBodyTooLarge, "larger than"},
	}
	for i, k := range cases {
		t.Run(k.name, func(t *testing.T) {
			if strings.HasPrefix(k.name, "declared too large") {
				declaredTooLarge(t, tg, strings.HasSuffix(k.name, "h2"), k.host+k.path, k.ct, k.status, k.code, k.says)
				return
			}
			id := fmt.Sprintf("edge-%d", i)
			var body io.Reader = strings.NewReader(k.body)
			if k.chunked {
				body = io.MultiReader(strings.NewReader(k.body)) // no length: chunked
			}
			req, _ := http.NewRequest("POST", "https://"+k.host+k.path, body)
			req.Header.Set("Content-Type", k.ct)
			req.Header.Set("X-Probe-Id", id)
			switch k.name {
			case "unknown coding":
				req.Header.Set("Content-Encoding", "zstd")
			case "gzip bomb":
				// 2 MiB of JSON white space in 2 KiB.
				b := gzipped([]byte(`{"requests":[{"id":"1","method":"GET","url":"/users/a"}]}`+strings.Repeat(" ", 2<<20)), true)
				req, _ = http.NewRequest("POST", "https://"+k.host+k.path, bytes.NewReader(b))
				req.Header.Set("Content-Type", k.ct)
				req.Header.Set("X-Probe-Id", id)
				req.Header.Set("Content-Encoding", "gzip")
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			rb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			arrived := tg.origin.find(id)
			if resp.StatusCode != k.status || resp.Header.Get(ReasonHeader) != k.code {
				t.Fatalf("status %d reason %q (%.300s), want %d %q", resp.StatusCode, resp.Header.Get(ReasonHeader), rb, k.status, k.code)
			}
			if (k.status == 200) != (arrived != nil) {
				t.Errorf("status %d, reached the upstream %v", k.status, arrived != nil)
			}
			if len(rb) > 4096 {
				t.Errorf("the refusal is %d bytes: a reason names what the body holds clipped", len(rb))
			}
			if !strings.Contains(string(rb), k.says) {
				t.Errorf("the reason should say %q: %s", k.says, rb)
			}
		})
	}
}

// declaredTooLarge is TestBatchEdges' row of a batch whose
// Content-Length is over batch.MaxBody, over HTTP/1.1 or HTTP/2: the
// client sends Expect: 100-continue and waits for the 100 as long as the
// test lasts, so a body byte sent means the gateway asked for the body.
// The answer is the refusal of a body read past the bound, audited so,
// with no byte of the body read and none reaching the upstream.
func declaredTooLarge(t *testing.T, tg *testGateway, h2 bool, hostPath, ct string, status int, code, says string) {
	t.Helper()
	c := tg.client(t, h2)
	c.Transport.(*http.Transport).ExpectContinueTimeout = time.Minute
	id := fmt.Sprintf("declared-%v", h2)
	// countingBody: the gateway's own counter of body bytes.
	body := &countingBody{ReadCloser: io.NopCloser(strings.NewReader(strings.Repeat(" ", batch.MaxBody+1)))}
	req, _ := http.NewRequest("POST", "https://"+hostPath, body)
	req.ContentLength = batch.MaxBody + 1
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("X-Probe-Id", id)
	before := strings.Count(tg.audit.String(), `"code":"`+code+`"`)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status || resp.Header.Get(ReasonHeader) != code || !strings.Contains(string(rb), says) {
		t.Fatalf("status %d reason %q (%.300s), want %d %q saying %q", resp.StatusCode, resp.Header.Get(ReasonHeader), rb, status, code, says)
	}
	if h2 != (resp.ProtoMajor == 2) {
		t.Fatalf("answered over %s, want HTTP/2 %v", resp.Proto, h2)
	}
	if n := body.n.Load(); n != 0 {
		t.Errorf("the client sent %d bytes of the body: the gateway asked for a body its length already refused", n)
	}
	if tg.origin.find(id) != nil {
		t.Error("the batch reached the upstream")
	}
	waitFor(t, 5*time.Second, "the refusal's audit line", func() bool {
		return strings.Count(tg.audit.String(), `"code":"`+code+`"`) > before
	})
}

// TestBatchObserveMode: in observe mode a batch with a sub-request the
// policy would refuse on its own is a would_deny: forwarded without the
// credential, audited as such with the batch's code; one whose
// sub-requests are all admitted carries the credential.
func TestBatchObserveMode(t *testing.T) {
	tg := startBatchGateway(t, "mode: observe\n")
	c := tg.client(t, false)
	for i, k := range []struct {
		method string
		cred   bool
	}{{"GET", true}, {"DELETE", false}} {
		id := fmt.Sprintf("observe-%d", i)
		req, _ := http.NewRequest("POST", "https://"+graphHost+"/v1.0/$batch", strings.NewReader(`{"requests":[{"id":"1","method":"`+k.method+`","url":"/users/a"}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Probe-Id", id)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		arrived := tg.origin.find(id)
		if resp.StatusCode != 200 || arrived == nil {
			t.Fatalf("%s: status %d, reached %v; want it forwarded", k.method, resp.StatusCode, arrived != nil)
		}
		if got := arrived.Header.Get("Authorization") != ""; got != k.cred {
			t.Errorf("%s: the upstream got a credential: %v, want %v", k.method, got, k.cred)
		}
	}
	waitFor(t, 5*time.Second, "the would_deny line", func() bool {
		return strings.Contains(tg.audit.String(), `"decision":"would_deny","code":"`+codeBatchNotAllowed+`"`)
	})
}

// TestBatchDifferential: for every hostile spelling of an allowed or
// denied path (pathSpellings, TestPathDifferential's table: separators
// doubled or encoded, dot segments, double encoding, case, Unicode
// compatibility forms) and several methods, the verdict on a batch
// holding it as its one sub-request (an OData multipart $batch) is the
// verdict on sending it as a request of its own: forwarded exactly when
// the top-level request is forwarded.
func TestBatchDifferential(t *testing.T) {
	// canonPolicy, its v1 rule marking /v1/composite as a batch in
	// Salesforce's composite format (urls host-relative, JSON-escaped).
	pol := strings.Replace(canonPolicy, "inject: {credential: token, as: bearer}", "inject: {credential: token, as: bearer, batch: {format: salesforce-composite, paths: [/v1/composite]}}", 1)
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(pol))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	c := tg.client(t, false)
	spellings := pathSpellings()
	n, admitted := 0, 0
	for _, method := range []string{"GET", "DELETE"} {
		for i, p := range spellings {
			if method == "DELETE" && i%4 != 0 {
				continue // DELETE's condition on a quarter of them
			}
			n++
			status, _ := rawRequest(t, tg, apiHost, fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", method, p, apiHost))
			top := status == http.StatusOK
			for _, f := range []struct{ path, ct string }{
				{"/v1/$batch", "multipart/mixed; boundary=b0undary"},
				{"/v1/composite", "application/json"},
			} {
				id := fmt.Sprintf("diff-%d-%s", n, f.path)
				body := multipartBody([]sub{{method, p}})
				if f.ct == "application/json" {
					body = jsonBody("compositeRequest", []sub{{method, p}}, "")
				}
				req, _ := http.NewRequest("POST", "https://"+apiHost+f.path, bytes.NewReader(body))
				req.Header.Set("Content-Type", f.ct)
				req.Header.Set("X-Probe-Id", id)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				rb, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				batched := resp.StatusCode == http.StatusOK
				if batched != top {
					t.Errorf("%s %q: on its own forwarded=%v (%d), in a batch to %s forwarded=%v (%d %.200s)", method, p, top, status, f.path, batched, resp.StatusCode, rb)
				}
				if !batched && tg.origin.find(id) != nil {
					t.Errorf("%s %q: the refused batch to %s reached the upstream", method, p, f.path)
				}
			}
			if top {
				admitted++
			}
		}
	}
	t.Logf("%d sub-requests, %d admitted", n, admitted)
	if admitted == 0 || admitted == n {
		t.Fatal("the table admits all or nothing: the test checks nothing")
	}
}
