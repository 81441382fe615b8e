package gateway

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
)

// trailerPolicy denies any request carrying X-Act-As (a condition on a
// header), injects into /v1/* and forwards everything else without a
// credential.
const trailerPolicy = `
workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
credentials:
  token: {provider: static, env: CREDGATE_GATEWAY_TEST_TOKEN}
rules:
  - name: no-act-as
    from: local
    to: api
    when: '"x-act-as" in request.headers'
    action: deny
  - {name: inject, from: local, to: api, paths: [/v1/*], inject: {credential: token, as: bearer}}
  - {name: forward, from: local, to: api, action: tunnel}
default: deny
`

// trailerSeen is what the origin's trailer routes received: for each
// request, its trailers after the whole body was read and its header.
type trailerSeen struct {
	mu   sync.Mutex
	reqs map[string]seenTrailer // by path
}

type seenTrailer struct {
	body    string
	trailer http.Header
	header  http.Header
}

func (s *trailerSeen) get(path string) (seenTrailer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reqs[path]
	return r, ok
}

// startTrailerGateway runs a gateway with trailerPolicy (upstream.http2
// set to upstream, "" for the default) whose origin records, for paths
// under /v1/t/ and /fwd/t/, the body and the trailers it received.
func startTrailerGateway(t *testing.T, upstream string) (*testGateway, *trailerSeen) {
	t.Helper()
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	ts := &trailerSeen{reqs: map[string]seenTrailer{}}
	record := func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body) // fills r.Trailer
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ts.mu.Lock()
		ts.reqs[r.URL.Path] = seenTrailer{body: string(b), trailer: r.Trailer.Clone(), header: r.Header.Clone()}
		ts.mu.Unlock()
		fmt.Fprintf(w, "%s got %d bytes", r.Proto, len(b))
	}
	tg := newTestGateway(t, pki, o)
	if upstream != "" {
		tg.upstreamExtra = ", http2: " + upstream
	}
	writeFile(t, tg.dir, "policy.yaml", []byte(trailerPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))
	for _, proto := range trailerProtos {
		for _, rule := range []string{"inject", "forward"} {
			o.route(trailerPath(rule, proto), record)
		}
	}
	return tg, ts
}

// trailerProtos are how a request with trailers is sent: HTTP/1.1
// chunked, HTTP/2 without a length (sent upstream chunked over HTTP/1.1)
// and HTTP/2 with a Content-Length (which h1client sends itself over
// HTTP/1.1).
var trailerProtos = []string{"h1", "h2", "h2len"}

// trailerPath is the request path of a case: under /v1/ for the inject
// rule, elsewhere for the forward rule.
func trailerPath(rule, proto string) string {
	if rule == "inject" {
		return "/v1/t/" + proto
	}
	return "/fwd/t/" + proto
}

// sendWithTrailers sends POST path to host with body "abc" and the
// trailers, as proto says (trailerProtos): over HTTP/1.1 chunked, written
// byte for byte, declaring them in a Trailer field, or over HTTP/2 with
// Go's client, which declares them too. It returns the status and reason
// code.
func sendWithTrailers(t *testing.T, tg *testGateway, proto, host, path string, trailers http.Header) (int, string) {
	t.Helper()
	if proto == "h1" {
		var b strings.Builder
		fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n", path, host)
		fmt.Fprintf(&b, "Trailer: %s\r\n\r\n3\r\nabc\r\n0\r\n", strings.Join(slices.Sorted(maps.Keys(trailers)), ", "))
		for k, vs := range trailers {
			for _, v := range vs {
				fmt.Fprintf(&b, "%s: %s\r\n", k, v)
			}
		}
		b.WriteString("\r\n")
		return rawRequest(t, tg, host, b.String())
	}
	req, err := http.NewRequest("POST", "https://"+host+path, io.NopCloser(strings.NewReader("abc")))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	if proto == "h2len" {
		req.ContentLength = 3
	}
	req.Trailer = trailers.Clone()
	resp, err := tg.client(t, true).Do(req)
	if err != nil {
		t.Fatalf("POST %s over HTTP/2: %v", path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.ProtoMajor != 2 {
		t.Fatalf("POST %s: the client spoke %s, want HTTP/2", path, resp.Proto)
	}
	return resp.StatusCode, resp.Header.Get(ReasonHeader)
}

// TestRequestTrailersNotForwarded is the class of "a field the policy
// never judged reaches the upstream as a request trailer": for HTTP/1.1
// (chunked) and HTTP/2 clients (with and without a Content-Length),
// inject and forward rules, and each upstream protocol (h1client and its
// net/http fallback that sends chunked bodies, and HTTP/2), the origin
// receives the body but no request
// trailer and no Trailer field, and the audit line records the rule
// that allowed it; the field the deny rule's condition looks for, sent as
// a header, is refused. A server merging trailers into headers so never
// sees X-Act-As (or a client's Authorization) that the condition did not
// judge. Before, every trailer except gateway-scoped and injected fields
// was forwarded.
func TestRequestTrailersNotForwarded(t *testing.T) {
	for _, upstream := range []string{"", "always", "never"} {
		t.Run("upstream.http2="+upstream, func(t *testing.T) {
			tg, ts := startTrailerGateway(t, upstream)
			for _, proto := range trailerProtos {
				trailers := http.Header{"X-Act-As": {"acct_victim"}, "X-Sum": {"42"}}
				if proto == "h1" {
					// HTTP/2 servers refuse these as trailers; HTTP/1.1
					// ones take them.
					trailers["Authorization"] = []string{"Bearer client-chosen"}
					trailers["Proxy-Authorization"] = []string{"Basic eA=="}
				}
				for _, rule := range []string{"inject", "forward"} {
					path := trailerPath(rule, proto)
					status, code := sendWithTrailers(t, tg, proto, apiHost, path, trailers)
					if status != http.StatusOK {
						t.Errorf("%s %s: %d %s, want 200", proto, rule, status, code)
						continue
					}
					got, ok := ts.get(path)
					if !ok {
						t.Errorf("%s %s: the origin did not record the request", proto, rule)
						continue
					}
					if got.body != "abc" {
						t.Errorf("%s %s: origin body %q, want abc", proto, rule, got.body)
					}
					if len(got.trailer) != 0 {
						t.Errorf("%s %s: the origin received request trailers %v", proto, rule, got.trailer)
					}
					for _, h := range []string{"Trailer", "X-Act-As"} {
						if v, ok := got.header[h]; ok {
							t.Errorf("%s %s: the origin received header %s: %q", proto, rule, h, v)
						}
					}
					wantAuth := ""
					if rule == "inject" {
						wantAuth = "Bearer " + tg.token
					}
					if a := got.header.Get("Authorization"); a != wantAuth {
						t.Errorf("%s %s: origin Authorization %q, want %q", proto, rule, a, wantAuth)
					}
					var ev map[string]any
					waitFor(t, 10*time.Second, "the audit line of "+path, func() bool {
						ev = auditFor(tg, path)
						return ev != nil
					})
					if ev["rule"] != rule {
						t.Errorf("%s %s: audited rule %v decision %v", proto, rule, ev["rule"], ev["decision"])
					}
				}
			}
			// The same field as a header is judged, and refused.
			for _, h2 := range []bool{false, true} {
				path := "/v1/t/as-header"
				if h2 {
					path += "-h2"
				}
				req, err := http.NewRequest("POST", "https://"+apiHost+path, strings.NewReader("abc"))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("X-Act-As", "acct_victim")
				resp, err := tg.client(t, h2).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden || resp.Header.Get(ReasonHeader) != "denied_by_rule" {
					t.Errorf("X-Act-As as a header (h2=%v): %s %q, want 403 denied_by_rule", h2, resp.Status, resp.Header.Get(ReasonHeader))
				}
			}
		})
	}
}

// TestPlaceholderTripwireInTrailer: a placeholder bound to another
// destination, sent as a request trailer (HTTP/1.1 chunked, HTTP/2 with
// and without a length; to two destinations, each binding the other's
// tripwire), is caught at the end of the body: the request is cut off
// before its end (the origin never receives a complete body), answered
// 403 placeholder_misuse, audited with the tripwire and counted under
// where="trailer". The bound placeholder in a trailer is no misuse (the
// trailer is dropped, nothing substituted). Before, the trailer was
// forwarded and nothing was detected.
func TestPlaceholderTripwireInTrailer(t *testing.T) {
	tg, bs := startPlaceholderGateway(t, false)
	n := 0
	for _, proto := range trailerProtos {
		for _, host := range []string{apiHost, secondHost} {
			// api binds phAPI (phElse is a tripwire there); second binds
			// phElse, so phAPI is the tripwire there.
			trip, bound := phElse, phAPI
			if host == secondHost {
				trip, bound = phAPI, phElse
			}
			name := proto + " " + host
			before := bs.count()
			status, code := sendWithTrailers(t, tg, proto, host, "/body", http.Header{"X-Key": {trip}})
			if status != http.StatusForbidden || code != codePlaceholderMisuse {
				t.Errorf("%s: tripwire in a trailer: %d %s, want 403 %s", name, status, code, codePlaceholderMisuse)
			}
			n++
			if bs.count() != before {
				t.Errorf("%s: the origin received the whole request: %q", name, bs.last())
			}
			status, code = sendWithTrailers(t, tg, proto, host, "/body", http.Header{"X-Key": {bound}})
			if status != http.StatusOK {
				t.Errorf("%s: bound placeholder in a trailer: %d %s, want 200", name, status, code)
			}
		}
	}
	poll.Until(t, 5*time.Second, "audit names the tripwires", func() error {
		a := tg.audit.String()
		for _, want := range []string{`"tripwire":"elsewhere"`, `"tripwire":"ph"`} {
			if !strings.Contains(a, want) {
				return fmt.Errorf("audit lacks %s", want)
			}
		}
		return nil
	})
	if m := metric(t, tg, `credgate_placeholder_misuse_total{quarantine="false",where="trailer"}`); !strings.HasSuffix(m, fmt.Sprintf(" %d", n)) {
		t.Errorf("metric: %q, want %d", m, n)
	}
}

func (b *bodySeen) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.bodies)
}
