package gateway

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/secret"
)

// rangeSecret and rangeBearer are the values the test's credentials hold:
// characters no JSON, query or path encoding changes, so the form stored
// is the raw value.
const (
	rangeSecret = "rngS3cretValue0123456789abcdefXYZ"
	rangeBearer = "rngBearerToken9876543210zyxwvuQRS"
	rangePH     = "CREDGATE_PH_ranges"
)

// rangesPolicy has one rule per ranges setting, each injecting the
// placeholder credential (an agent stores the secret through a
// placeholder, then reads it back), one without a setting, and a bearer
// rule without a placeholder whose upstream keeps request headers (a
// request-bin).
const rangesPolicy = `
workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
credentials:
  stored:
    provider: static
    env: CREDGATE_RANGES_TEST_SECRET
    placeholder: CREDGATE_PH_ranges
  bearer:
    provider: static
    env: CREDGATE_RANGES_TEST_BEARER
rules:
  - {name: pass, from: local, to: api, paths: [/pass/*], inject: {credential: stored, as: placeholder, substitute_in: [json]}, ranges: pass}
  - {name: refuse, from: local, to: api, paths: [/refuse/*], inject: {credential: stored, as: placeholder, substitute_in: [json]}, ranges: refuse}
  - {name: whole, from: local, to: api, paths: [/whole/*], inject: {credential: stored, as: placeholder, substitute_in: [json]}, ranges: whole}
  - {name: default, from: local, to: api, paths: [/default/*], inject: {credential: stored, as: placeholder, substitute_in: [json]}}
  - {name: bearer, from: local, to: api, paths: [/bearer/*], inject: {credential: bearer, as: bearer}}
default: deny
`

// rangeStore is an origin that keeps what a POST to /MODE/obj sends (the
// body, and the Authorization field it came with, as a request-bin
// does) and serves it with http.ServeContent, which honours Range
// (single, multiple, suffix), If-Range and HEAD. /MODE/partial answers
// 206 whatever the request (an S3 partNumber, a vendor's x-ms-range).
type rangeStore struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func (s *rangeStore) get(path string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objs[path]
}

func (s *rangeStore) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		obj := append([]byte("stored:"), b...)
		obj = append(obj, ";auth:"+r.Header.Get("Authorization")+";end"...)
		s.mu.Lock()
		s.objs[r.URL.Path] = obj
		s.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		return
	}
	obj := s.get(r.URL.Path)
	w.Header().Set("ETag", `"v1"`)
	w.Header().Set("Content-Type", "text/plain")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(obj))
}

// partialAlways answers 206 whatever the request asked for.
func partialAlways(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Range", "bytes 0-3/100")
	w.Header().Set("Content-Length", "4")
	w.WriteHeader(http.StatusPartialContent)
	_, _ = io.WriteString(w, "abcd")
}

// startRangesGateway runs a gateway with policy pol in front of a
// rangeStore origin.
func startRangesGateway(t *testing.T, pol string) (*testGateway, *rangeStore) {
	t.Helper()
	t.Setenv("CREDGATE_RANGES_TEST_SECRET", rangeSecret)
	t.Setenv("CREDGATE_RANGES_TEST_BEARER", rangeBearer)
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	st := &rangeStore{objs: map[string][]byte{}}
	for _, m := range []string{"pass", "refuse", "whole", "default", "bearer"} {
		o.route("/"+m+"/obj", st.serve)
		o.route("/"+m+"/partial", partialAlways)
	}
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(pol))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))
	t.Cleanup(func() {
		for _, v := range []string{rangeSecret, rangeBearer} {
			if strings.Contains(tg.audit.String()+tg.logs.String(), v) {
				t.Errorf("the audit or log output holds a secret")
			}
		}
	})
	return tg, st
}

// rangeReq is one request of an attack: its method and extra fields.
type rangeReq struct {
	method string
	header map[string]string
}

// rangeAttack is a way of asking for pieces of an object of length n
// whose secret starts at byte at and is k bytes long: each piece is
// shorter than the secret, so no piece holds it whole.
type rangeAttack struct {
	name string
	reqs func(n, at, k int) []rangeReq
	// ranged: the requests carry Range (ranges: refuse refuses them,
	// ranges: pass answers 206).
	ranged bool
}

// pieces returns "a-b" ranges of 4 bytes covering [0, n).
func pieces(n int) []string {
	var out []string
	for off := 0; off < n; off += 4 {
		out = append(out, fmt.Sprintf("%d-%d", off, min(off+3, n-1)))
	}
	return out
}

// eachPiece asks for each of pieces(n) in a request of its own, with the
// range under the field name key and the extra fields.
func eachPiece(n int, method string, extra map[string]string, key string) []rangeReq {
	var out []rangeReq
	for _, p := range pieces(n) {
		h := map[string]string{key: "bytes=" + p}
		for k, v := range extra {
			h[k] = v
		}
		out = append(out, rangeReq{method: method, header: h})
	}
	return out
}

var rangeAttacks = []rangeAttack{
	{name: "single", ranged: true, reqs: func(n, _, _ int) []rangeReq {
		return eachPiece(n, http.MethodGet, nil, "Range")
	}},
	{name: "multi", ranged: true, reqs: func(n, _, _ int) []rangeReq {
		return []rangeReq{{method: http.MethodGet, header: map[string]string{"Range": "bytes=" + strings.Join(pieces(n), ",")}}}
	}},
	{name: "suffix", ranged: true, reqs: func(n, at, _ int) []rangeReq {
		// The prefix and the secret's first byte, then the rest from
		// the end (bytes=-N).
		return []rangeReq{
			{method: http.MethodGet, header: map[string]string{"Range": fmt.Sprintf("bytes=0-%d", at)}},
			{method: http.MethodGet, header: map[string]string{"Range": fmt.Sprintf("bytes=-%d", n-at-1)}},
		}
	}},
	{name: "if-range", ranged: true, reqs: func(n, _, _ int) []rangeReq {
		return eachPiece(n, http.MethodGet, map[string]string{"If-Range": `"v1"`}, "Range")
	}},
	{name: "if-range-alone", reqs: func(int, int, int) []rangeReq {
		return []rangeReq{{method: http.MethodGet, header: map[string]string{"If-Range": `"v1"`}}}
	}},
	{name: "head", ranged: true, reqs: func(int, int, int) []rangeReq {
		return []rangeReq{{method: http.MethodHead, header: map[string]string{"Range": "bytes=0-3"}}}
	}},
	{name: "lowercase", ranged: true, reqs: func(n, _, _ int) []rangeReq {
		// Set under a non-canonical key, Go's HTTP/1.1 client writes the
		// field as "range:" (HTTP/2 lower-cases every field anyway).
		return eachPiece(n, http.MethodGet, nil, "range")
	}},
}

// rangeResult is what the client got from one request.
type rangeResult struct {
	status int
	code   string
	body   []byte
	// parts are the body's pieces at their offsets (a 200 is one piece
	// at 0; a multipart/byteranges 206 one per part).
	parts map[int][]byte
}

// doRange sends rq to url and returns what the client got.
func doRange(t *testing.T, c *http.Client, url string, rq rangeReq) rangeResult {
	t.Helper()
	req, err := http.NewRequest(rq.method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range rq.header {
		req.Header[k] = []string{v}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %v: %v", rq.method, rq.header, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %v: read body: %v", rq.method, rq.header, err)
	}
	res := rangeResult{status: resp.StatusCode, code: resp.Header.Get(ReasonHeader), body: b, parts: map[int][]byte{}}
	switch resp.StatusCode {
	case http.StatusOK:
		res.parts[0] = b
	case http.StatusPartialContent:
		mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if mt != "multipart/byteranges" {
			res.parts[rangeStart(t, resp.Header.Get("Content-Range"))] = b
			break
		}
		mr := multipart.NewReader(bytes.NewReader(b), params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("multipart body: %v", err)
			}
			pb, _ := io.ReadAll(p)
			res.parts[rangeStart(t, p.Header.Get("Content-Range"))] = pb
		}
	}
	return res
}

// rangeStart is the first byte a Content-Range field names.
func rangeStart(t *testing.T, cr string) int {
	t.Helper()
	a, _, ok := strings.Cut(strings.TrimPrefix(cr, "bytes "), "-")
	n, err := strconv.Atoi(a)
	if !ok || err != nil {
		t.Fatalf("Content-Range %q", cr)
	}
	return n
}

// TestRangesReassemble is the class test of reading a stored secret in
// pieces: an agent has the gateway substitute the secret into a body the
// upstream stores (or, for the bearer rule, an upstream keeps the
// Authorization field it received), then asks for ranges of it, each
// shorter than the secret, over HTTP/1.1 and HTTP/2: one range at a
// time, all at once (multipart/byteranges), a suffix range, with
// If-Range, If-Range alone, on a HEAD, and under a lower-case field
// name. Under ranges: whole (the default of these rules) and refuse, no
// response and no reassembly of all of them holds the secret, and the
// upstream never sees Range; under pass the 206 pieces work (and
// reassemble it: the documented risk of the opt-out).
func TestRangesReassemble(t *testing.T) {
	tg, store := startRangesGateway(t, rangesPolicy)
	modes := []struct {
		mode   string
		secret string
		want   policy.Ranges
	}{
		{"pass", rangeSecret, policy.RangesPass},
		{"refuse", rangeSecret, policy.RangesRefuse},
		{"whole", rangeSecret, policy.RangesWhole},
		{"default", rangeSecret, policy.RangesWhole},
		{"bearer", rangeBearer, policy.RangesWhole},
	}
	for _, m := range modes {
		for _, h2 := range []bool{false, true} {
			c := tg.client(t, h2)
			url := "https://" + apiHost + "/" + m.mode + "/obj"
			body := `{"note":"` + rangePH + `"}`
			if m.mode == "bearer" {
				body = `{"note":"request-bin"}` // the placeholder would be a tripwire here
			}
			resp, err := c.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			obj := store.get("/" + m.mode + "/obj")
			at := bytes.Index(obj, []byte(m.secret))
			if resp.StatusCode != http.StatusCreated || at < 0 {
				t.Fatalf("%s: store: status %d, stored %d bytes, secret at %d", m.mode, resp.StatusCode, len(obj), at)
			}
			for _, a := range rangeAttacks {
				t.Run(fmt.Sprintf("%s/h2=%v/%s", m.mode, h2, a.name), func(t *testing.T) {
					before := len(tg.origin.all())
					got := make([]byte, len(obj))
					for _, rq := range a.reqs(len(obj), at, len(m.secret)) {
						res := doRange(t, c, url, rq)
						if bytes.Contains(res.body, []byte(m.secret)) {
							t.Fatalf("%s %v: one response holds the secret whole (scrubbing failed): %q", rq.method, rq.header, res.body)
						}
						wantStatus := http.StatusOK
						switch {
						case m.want == policy.RangesRefuse && a.ranged:
							wantStatus = http.StatusForbidden
						case m.want == policy.RangesPass && a.ranged:
							wantStatus = http.StatusPartialContent
						}
						if res.status != wantStatus {
							t.Errorf("%s %v: status %d (%s), want %d", rq.method, rq.header, res.status, res.code, wantStatus)
						}
						if wantStatus == http.StatusForbidden && res.code != codeRangeRefused {
							t.Errorf("refusal code %q, want %s", res.code, codeRangeRefused)
						}
						for off, p := range res.parts {
							copy(got[off:], p)
						}
					}
					reassembled := bytes.Contains(got, []byte(m.secret))
					switch {
					case m.want == policy.RangesPass && a.ranged && a.name != "head":
						if !bytes.Equal(got, obj) {
							t.Errorf("ranges: pass: the pieces do not reassemble the object:\n got %q\nwant %q", got, obj)
						}
					case reassembled:
						t.Errorf("ranges: %s: the pieces reassemble the secret: %q", m.want, got)
					}
					if m.want != policy.RangesPass {
						for _, s := range tg.origin.all()[before:] {
							if s.Header["Range"] != nil || s.Header["If-Range"] != nil {
								t.Errorf("the upstream received Range %q, If-Range %q", s.Header["Range"], s.Header["If-Range"])
							}
						}
					}
					if m.want == policy.RangesWhole && a.name != "head" && !bytes.Contains(got, []byte(secret.Redacted)) {
						t.Errorf("the whole object came back without the redaction marker: %q", got)
					}
				})
			}
		}
	}
	waitFor(t, 5*time.Second, `an audit line of rule whole with "range":"removed"`, func() bool {
		for l := range strings.Lines(tg.audit.String()) {
			if strings.Contains(l, `"rule":"whole"`) && strings.Contains(l, `"range":"removed"`) {
				return true
			}
		}
		return false
	})
	if hasAuditLine(tg.audit.String(), `"rule":"pass"`, `"range":"removed"`) {
		t.Error(`a ranges: pass line says "range":"removed"`)
	}
	if !hasAuditLine(tg.audit.String(), `"rule":"refuse"`, `"code":"range_refused"`) {
		t.Error("no audit line of a range_refused refusal")
	}
}

// hasAuditLine reports whether one line of audit holds every one of subs.
func hasAuditLine(audit string, subs ...string) bool {
	for l := range strings.Lines(audit) {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestRangesPartialWithoutRange: an upstream that answers 206 to a
// request without Range (an S3 partNumber, a vendor range field) is
// refused under ranges: whole and refuse (response_not_scrubbable, 502)
// and passed under pass.
func TestRangesPartialWithoutRange(t *testing.T) {
	tg, _ := startRangesGateway(t, rangesPolicy)
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2)
		for mode, want := range map[string]int{"whole": 502, "default": 502, "refuse": 502, "bearer": 502, "pass": 206} {
			res := doRange(t, c, "https://"+apiHost+"/"+mode+"/partial", rangeReq{method: http.MethodGet})
			if res.status != want {
				t.Errorf("h2=%v %s: status %d (%s), want %d", h2, mode, res.status, res.code, want)
			}
			if want == 502 && res.code != codeResponseNotScrubbable {
				t.Errorf("h2=%v %s: code %q, want %s", h2, mode, res.code, codeResponseNotScrubbable)
			}
		}
	}
}

// TestPrepareRangesNoAllocs: a request without Range costs no allocation
// (the keep-alive fast path), under each setting.
func TestPrepareRangesNoAllocs(t *testing.T) {
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"x"}, "Content-Type": {"application/json"}}
	for _, r := range []policy.Ranges{policy.RangesWhole, policy.RangesPass, policy.RangesRefuse} {
		d := policy.Decision{Action: policy.Inject, Rule: "r", Ranges: r}
		var hooks responseHooks
		if n := testing.AllocsPerRun(100, func() {
			if f := prepareRanges(&d, h, &hooks); f != nil {
				t.Fatal("refused a request without Range")
			}
		}); n != 0 {
			t.Errorf("ranges %s: %v allocations per request, want 0", r, n)
		}
		if hooks.rangeRemoved || len(h) != 3 {
			t.Errorf("ranges %s: changed a request without Range: %v", r, h)
		}
	}
}

// TestPrepareRanges: what each setting does to a request's fields, and
// that a decision without a rule's setting (a forward rule whose request
// used custody values) makes the response whole.
func TestPrepareRanges(t *testing.T) {
	tests := []struct {
		name     string
		action   policy.Action
		mode     policy.Ranges
		header   http.Header
		want     http.Header
		refused  bool
		whole    bool
		recorded bool
	}{
		{"whole", policy.Inject, policy.RangesWhole, http.Header{"Range": {"bytes=0-3"}, "If-Range": {`"v1"`}, "Accept": {"*/*"}}, http.Header{"Accept": {"*/*"}}, false, true, true},
		{"whole if-range alone", policy.Inject, policy.RangesWhole, http.Header{"If-Range": {`"v1"`}}, http.Header{}, false, true, true},
		{"whole without range", policy.Inject, policy.RangesWhole, http.Header{"Accept": {"*/*"}}, http.Header{"Accept": {"*/*"}}, false, true, false},
		{"unset is whole", policy.Inject, "", http.Header{"Range": {"bytes=-4"}}, http.Header{}, false, true, true},
		{"forward", policy.Forward, "", http.Header{"Range": {"items=0-3"}}, http.Header{}, false, true, true},
		{"forward ignores a setting", policy.Forward, policy.RangesPass, http.Header{"Range": {"bytes=0-3"}}, http.Header{}, false, true, true},
		{"refuse", policy.Inject, policy.RangesRefuse, http.Header{"Range": {"bytes=0-3"}}, http.Header{"Range": {"bytes=0-3"}}, true, false, false},
		{"refuse if-range alone", policy.Inject, policy.RangesRefuse, http.Header{"If-Range": {`"v1"`}}, http.Header{}, false, true, true},
		{"pass", policy.Inject, policy.RangesPass, http.Header{"Range": {"bytes=0-3,4-7"}, "If-Range": {`"v1"`}}, http.Header{"Range": {"bytes=0-3,4-7"}, "If-Range": {`"v1"`}}, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := policy.Decision{Action: tt.action, Rule: "r", Ranges: tt.mode}
			var h responseHooks
			f := prepareRanges(&d, tt.header, &h)
			if (f != nil) != tt.refused {
				t.Fatalf("refusal %v, want refused=%v", f, tt.refused)
			}
			if f != nil && (f.Code != codeRangeRefused || f.Status != http.StatusForbidden || !strings.Contains(f.Reason, "ranges: pass")) {
				t.Errorf("refusal %d %s %q, want 403 %s naming ranges: pass", f.Status, f.Code, f.Reason, codeRangeRefused)
			}
			if diff := cmp.Diff(tt.want, tt.header); diff != "" {
				t.Errorf("fields sent upstream (-want +got):\n%s", diff)
			}
			if h.whole != tt.whole || h.rangeRemoved != tt.recorded {
				t.Errorf("whole %v, removed %v; want %v, %v", h.whole, h.rangeRemoved, tt.whole, tt.recorded)
			}
		})
	}
}
