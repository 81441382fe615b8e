package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/internal/redistest"
)

// batchLimitPolicy gives each batch format a rule of its own with a rule
// limit of 4 requests (one per 1000 s: nothing refills during the test),
// the four Salesforce formats on four API versions, and the workload a
// limit of 40 over all its rules; rule free (no limit of its own) probes
// the workload's room.
const batchLimitPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    rate_limit: {rps: 0.001, burst: 40}
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
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
rules:
  - name: graph
    from: local
    to: graph
    paths: ["/v1.0/*"]
    inject: {credential: token, as: bearer}
    rate_limit: {rps: 0.001, burst: 4}
  - {name: sf-composite, from: local, to: sf, paths: ["/services/data/v60.0/*"], inject: {credential: token, as: bearer}, rate_limit: {rps: 0.001, burst: 4}}
  - {name: sf-batch, from: local, to: sf, paths: ["/services/data/v61.0/*"], inject: {credential: token, as: bearer}, rate_limit: {rps: 0.001, burst: 4}}
  - {name: sf-graph, from: local, to: sf, paths: ["/services/data/v62.0/*"], inject: {credential: token, as: bearer}, rate_limit: {rps: 0.001, burst: 4}}
  - {name: sf-connect, from: local, to: sf, paths: ["/services/data/v63.0/*"], inject: {credential: token, as: bearer}, rate_limit: {rps: 0.001, burst: 4}}
  - {name: google, from: local, to: google, paths: ["/batch/*", "/drive/v3/*"], inject: {credential: token, as: bearer}, rate_limit: {rps: 0.001, burst: 4}}
  - {name: free, from: local, to: google, paths: ["/storage/v1/*"], inject: {credential: token, as: bearer}}
default: deny
`

// TestBatchRateLimit is the class "a batch multiplies its caller's rate
// limit by its sub-requests": for every batch format, with the
// per-process limiter and with Redis, the same requests are sent one by
// one to one gateway and as batches to another. A batch is charged one
// request per sub-request to the limits each would be charged alone (its
// rule's and its workload's), all or none, before anything is sent: a
// batch of 3 leaves the rule's and the workload's room exactly as 3
// single requests do; a batch of 2 with room for 1 is refused 429
// rate_limited with Retry-After, charged nothing and never forwarded
// (where the singles pass one); a batch larger than the rule's burst is
// refused 429 without Retry-After (no wait admits it). Before, each
// batch counted as one request.
func TestBatchRateLimit(t *testing.T) {
	type backend struct {
		name   string
		config func(t *testing.T, ns string) string
	}
	backends := []backend{{"local", func(*testing.T, string) string { return "" }}}
	var srv *redistest.Server
	backends = append(backends, backend{"redis", func(t *testing.T, ns string) string {
		if srv == nil {
			srv = redistest.Start(t)
		}
		key := testRedisKeyEnv(t)
		return fmt.Sprintf("cache:\n  redis:\n    addrs: [%q]\n    namespace: %s\n    encryption_keys: [{id: %s, env: %s}]\n", srv.Addr(), ns, key.ID, key.Env)
	}})
	// Each format's requests, on its rule's API version.
	versions := map[string]string{"salesforce-composite": "v60.0", "salesforce-batch": "v61.0", "salesforce-graph": "v62.0", "salesforce-connect": "v63.0"}
	at := func(f batchFormat) (path, ok string) {
		v := versions[f.name]
		switch f.host {
		case graphHost:
			return f.path, "/v1.0/users/alice"
		case sfHost:
			return strings.Replace(f.path, "v60.0", v, 1), "/services/data/" + v + "/sobjects/Account/001"
		}
		return f.path, "/drive/v3/files/abc"
	}
	type answer struct {
		Status     int
		Code       string
		RetryAfter bool
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			start := func(ns string) *testGateway {
				pki := newTestPKI(t, graphHost, sfHost, googleHost)
				tg := newTestGateway(t, pki, startOrigin(t, pki))
				writeFile(t, tg.dir, "policy.yaml", []byte(batchLimitPolicy))
				tg.run(t, fmt.Sprintf("resolve:\n  \"graph.microsoft.com:443\": %q\n  \"acme.my.salesforce.com:443\": %q\n  \"www.googleapis.com:443\": %q\n%s",
					tg.origin.addr, tg.origin.addr, tg.origin.addr, be.config(t, ns)))
				return tg
			}
			singles, batches := start("singles"), start("batches")
			cs, cb := singles.client(t, false), batches.client(t, false)
			do := func(c *http.Client, req *http.Request) answer {
				t.Helper()
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return answer{resp.StatusCode, resp.Header.Get(ReasonHeader), resp.Header.Get("Retry-After") != ""}
			}
			get := func(c *http.Client, host, path string) answer {
				req, _ := http.NewRequest("GET", "https://"+host+path, nil)
				return do(c, req)
			}
			// room is how many more single requests to host/path are
			// admitted (at most 50).
			room := func(c *http.Client, host, path string) int {
				for k := range 50 {
					if a := get(c, host, path); a.Status != http.StatusOK {
						return k
					}
				}
				return 50
			}
			n := 0
			send := func(f batchFormat, count int) (answer, string) {
				path, ok := at(f)
				subs := make([]sub, count)
				for i := range subs {
					subs[i] = sub{"GET", urlFor(f, ok)}
					if f.name == "salesforce-batch" {
						subs[i].url = strings.TrimPrefix(ok, "/services/data/")
					}
				}
				n++
				id := fmt.Sprintf("limit-%d", n)
				req, _ := http.NewRequest("POST", "https://"+f.host+path, bytes.NewReader(f.build(subs)))
				req.Header.Set("Content-Type", f.contentType)
				req.Header.Set("X-Probe-Id", id)
				return do(cb, req), id
			}
			ok200 := answer{Status: 200}
			limited := answer{Status: 429, Code: codeRateLimited, RetryAfter: true}
			never := answer{Status: 429, Code: codeRateLimited}
			for _, f := range batchFormats {
				_, ok := at(f)
				var gotS, gotB []answer
				for range 3 {
					gotS = append(gotS, get(cs, f.host, ok))
				}
				a, _ := send(f, 3)
				gotB = append(gotB, a)
				// Room 1: a batch of 2 is refused whole, and sends nothing;
				// one of 5 exceeds the burst of 4.
				a, id := send(f, 2)
				gotB = append(gotB, a)
				if batches.origin.find(id) != nil {
					t.Errorf("%s: the rate-limited batch reached the upstream", f.name)
				}
				a, _ = send(f, 5)
				gotB = append(gotB, a)
				if diff := cmp.Diff([]answer{ok200, ok200, ok200}, gotS); diff != "" {
					t.Errorf("%s: singles (-want +got):\n%s", f.name, diff)
				}
				if diff := cmp.Diff([]answer{ok200, limited, never}, gotB); diff != "" {
					t.Errorf("%s: batches of 3, 2, 5 (-want +got):\n%s", f.name, diff)
				}
				rs, rb := room(cs, f.host, ok), room(cb, f.host, ok)
				if rs != 1 || rb != rs {
					t.Errorf("%s: the rule's room after 3 singles %d, after a batch of 3 and two refused batches %d; want 1 and 1", f.name, rs, rb)
				}
			}
			// The workload's limit: 4 requests per format charged on
			// each gateway, of 40.
			rs, rb := room(cs, googleHost, "/storage/v1/b"), room(cb, googleHost, "/storage/v1/b")
			if want := 40 - 4*len(batchFormats); rs != want || rb != rs {
				t.Errorf("the workload's room: %d after singles, %d after batches; want %d and %d", rs, rb, want, want)
			}
			waitFor(t, 5*time.Second, "the audit lines of the refused batches", func() bool {
				return strings.Count(batches.audit.String(), `"code":"rate_limited"`) >= 2*len(batchFormats)
			})
			body := metricsText(t, batches)
			if !strings.Contains(body, `credgate_rate_limited_total{limit="rule",rule="graph",workload="local"} 3`) {
				t.Errorf("/metrics lacks the graph rule's 3 refusals (2 batches, 1 probe):\n%s", grepLines(body, "credgate_rate_limited_total"))
			}
		})
	}
}

// TestBatchCapacity is the class "concurrent batches each buffer up to
// 1 MiB, without a bound over all": with limits.batch_buffer_bytes at its
// least (2 MiB), two batches declaring 1 MiB bodies that their clients
// hold open fill it (credgate_batch_buffer_bytes shows 2 MiB); a third,
// small batch is refused at once 503 batch_capacity with Retry-After,
// audited, nothing sent, whether it would be admitted or not; once a held
// batch ends its bytes are given back and a batch passes again, and when
// all end the gauge is 0. A value under 2 MiB other than 0 is refused at
// load naming the key.
func TestBatchCapacity(t *testing.T) {
	for _, bad := range []string{"1048576", "-1"} {
		_, err := ParseConfig("c.yaml", []byte("limits:\n  batch_buffer_bytes: "+bad+"\n"))
		if err == nil || !strings.Contains(err.Error(), "limits.batch_buffer_bytes") || !strings.Contains(err.Error(), "0 is off") {
			t.Errorf("batch_buffer_bytes %s: %v, want a refusal naming the key and the fix", bad, err)
		}
	}
	for _, good := range []string{"0", "2097152"} {
		if _, err := ParseConfig("c.yaml", []byte("limits:\n  batch_buffer_bytes: "+good+"\n")); err != nil && strings.Contains(err.Error(), "batch_buffer_bytes") {
			t.Errorf("batch_buffer_bytes %s: %v", good, err)
		}
	}

	pki := newTestPKI(t, graphHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(batchPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"graph.microsoft.com:443\": %q\nlimits:\n  batch_buffer_bytes: %d\n", tg.origin.addr, MinBatchBufferBytes))
	const head = `{"requests":[{"id":"1","method":"GET","url":"/users/a"}]}`
	gauge := func() string {
		return grepLines(metricsText(t, tg), "credgate_batch_buffer_bytes ")
	}
	type held struct {
		w    *io.PipeWriter
		done chan int
	}
	var open []held
	for i := range 2 {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", "https://"+graphHost+"/v1.0/$batch", pr)
		req.ContentLength = 1 << 20
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Probe-Id", fmt.Sprintf("held-%d", i))
		h := held{pw, make(chan int, 1)}
		c := tg.client(t, false)
		go func() {
			resp, err := c.Do(req)
			if err != nil {
				h.done <- -1
				return
			}
			resp.Body.Close()
			h.done <- resp.StatusCode
		}()
		if _, err := pw.Write([]byte(head)); err != nil {
			t.Fatal(err)
		}
		open = append(open, h)
	}
	t.Cleanup(func() {
		for _, h := range open {
			h.w.CloseWithError(io.ErrUnexpectedEOF)
		}
	})
	waitFor(t, 5*time.Second, "two held batches of 1 MiB", func() bool {
		return strings.Contains(gauge(), fmt.Sprintf("credgate_batch_buffer_bytes %g", float64(MinBatchBufferBytes)))
	})
	c := tg.client(t, false)
	small := func(id, method string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", "https://"+graphHost+"/v1.0/$batch", strings.NewReader(`{"requests":[{"id":"1","method":"`+method+`","url":"/users/a"}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Probe-Id", id)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, method := range []string{"GET", "DELETE"} {
		resp := small("over-"+method, method)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(ReasonHeader) != codeBatchCapacity || resp.Header.Get("Retry-After") != "1" {
			t.Errorf("%s batch with the budget full: %d %q Retry-After %q, want 503 %s Retry-After 1", method, resp.StatusCode, resp.Header.Get(ReasonHeader), resp.Header.Get("Retry-After"), codeBatchCapacity)
		}
		if tg.origin.find("over-"+method) != nil {
			t.Errorf("the refused %s batch reached the upstream", method)
		}
	}
	// A request that is no batch does not use the budget.
	if resp, err := c.Get("https://" + graphHost + "/v1.0/users/a"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("a plain request with the budget full: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// The first held batch ends: its 1 MiB comes back.
	if _, err := open[0].w.Write([]byte(strings.Repeat(" ", 1<<20-len(head)))); err != nil {
		t.Fatal(err)
	}
	open[0].w.Close()
	if st := <-open[0].done; st != http.StatusOK {
		t.Fatalf("the first held batch: status %d, want 200", st)
	}
	waitFor(t, 5*time.Second, "the first batch's bytes given back", func() bool {
		return strings.Contains(gauge(), fmt.Sprintf("credgate_batch_buffer_bytes %g", float64(1<<20)))
	})
	if resp := small("after", "GET"); resp.StatusCode != http.StatusOK {
		t.Errorf("a batch after one ended: %d %q, want 200", resp.StatusCode, resp.Header.Get(ReasonHeader))
	}
	open[1].w.CloseWithError(io.ErrUnexpectedEOF) // the client gives up
	<-open[1].done
	waitFor(t, 5*time.Second, "every byte given back", func() bool {
		return strings.Contains(gauge(), "credgate_batch_buffer_bytes 0")
	})
	waitFor(t, 5*time.Second, "the batch_capacity audit lines", func() bool {
		return strings.Count(tg.audit.String(), `"code":"`+codeBatchCapacity+`"`) == 2
	})
}
