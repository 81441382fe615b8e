package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/credgate/credgate/internal/msghead/msgheadtest"
)

// checkFastRequest holds readFastRequest to http.ReadRequest on data:
// when it declines it consumed nothing; when it accepts, ReadRequest
// reads the same request (the whole struct) and leaves the same bytes.
func checkFastRequest(t *testing.T, data []byte) (accepted bool) {
	t.Helper()
	// It never waits for bytes ReadRequest would not wait for.
	if msgheadtest.AskedMore(data, func(br *bufio.Reader) { readFastRequest(br, 1<<20) }) &&
		!msgheadtest.AskedMore(data, func(br *bufio.Reader) { _, _ = http.ReadRequest(br) }) {
		t.Fatalf("%q: waited for more bytes where ReadRequest did not", data)
	}
	br := bufio.NewReaderSize(bytes.NewReader(data), 4<<10)
	got := readFastRequest(br, 1<<20)
	if got == nil {
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, data) {
			t.Fatalf("declined but consumed bytes of %q", data)
		}
		return false
	}
	ref := bufio.NewReaderSize(bytes.NewReader(data), 4<<10)
	want, err := http.ReadRequest(ref)
	if err != nil {
		t.Fatalf("accepted %q, which ReadRequest refuses: %v", data, err)
	}
	gb, wb := got.Body, want.Body
	if (gb == http.NoBody) != (wb == http.NoBody) {
		t.Fatalf("%q: body %T, ReadRequest's %T", data, gb, wb)
	}
	g1, w1 := *got, *want
	g1.Body, w1.Body = nil, nil
	if !reflect.DeepEqual(&g1, &w1) {
		t.Fatalf("%q:\n got %#v\nwant %#v", data, got, want)
	}
	if g, w := msgheadtest.Reads(gb), msgheadtest.Reads(wb); !reflect.DeepEqual(g, w) {
		t.Fatalf("%q: body reads %q, ReadRequest's %q", data, g, w)
	}
	g, _ := io.ReadAll(br)
	w, _ := io.ReadAll(ref)
	if !bytes.Equal(g, w) {
		t.Fatalf("%q: left %q, ReadRequest %q", data, g, w)
	}
	return true
}

// commonRequests are requests the fast path must take.
var commonRequests = []string{
	"GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n",
	// Go's client.
	"GET /v1/items?limit=10&cursor=abc%2Fdef HTTP/1.1\r\nHost: api.example.test\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
	// curl.
	"GET /repos/o/r HTTP/1.1\r\nHost: api.github.test\r\nUser-Agent: curl/8.11.1\r\nAccept: */*\r\nAuthorization: Bearer cg-placeholder\r\n\r\n",
	"DELETE /a/b%20c/./../d;p=1 HTTP/1.1\r\nhost: x.test:8443\r\nx-custom_name:  v1 \r\nX-Custom_Name: v2\r\nCookie: a=1\r\nCookie: b=2\r\nEmpty:\r\n\r\n",
	"OPTIONS /* HTTP/1.1\r\nHost: x.test\r\nOrigin: https://app.test\r\n\r\n",
	"HEAD //double//slash?x=%zz HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"POST /no-body HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"GET /missing-host HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
	"GET /e?q=caf%C3%A9#frag HTTP/1.1\r\nHost: x.test\r\n\r\n",
	// Bodies of one length: an LLM call, an empty one, one cut short.
	"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.test\r\nUser-Agent: OpenAI/Python 1.54.0\r\nContent-Type: application/json\r\nAuthorization: Bearer cg-placeholder\r\nContent-Length: 16\r\n\r\n{\"model\":\"x\",1}",
	"PUT /o HTTP/1.1\r\nHost: x.test\r\nContent-Length: 0\r\n\r\n",
	"PATCH /o HTTP/1.1\r\nHost: x.test\r\nContent-Length: 10\r\n\r\nshort",
	"POST /o HTTP/1.1\r\nHost: x.test\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
	// A Connection field: Python's requests (urllib3) and Node's agent
	// send keep-alive on every request; close in any case and list, alone
	// or repeated; an upgrade; with a body.
	"GET /v1/customers HTTP/1.1\r\nHost: api.stripe.test\r\nUser-Agent: python-requests/2.32.3\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\nAuthorization: Bearer cg-placeholder\r\n\r\n",
	"POST /v1/messages HTTP/1.1\r\nContent-Type: application/json\r\nHost: api.anthropic.test\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}",
	"GET / HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\nConnection: CLOSE\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\nConnection: keep-alive, Close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\nConnection: closed, x-close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\nConnection:\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: x.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
	"PUT /o HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
	// A proxy's CONNECT in the plain authority form: Go's Transport,
	// curl, the bench's client, no Host, a Host other than the target,
	// upper case, a port of one digit, every unreserved byte.
	connectGo,
	"CONNECT x.test:443 HTTP/1.1\r\nHost: x.test:443\r\nConnection: keep-alive\r\n\r\n",
	"CONNECT x.test:443 HTTP/1.1\r\nHost: x.test:443\r\nConnection: close\r\n\r\n",
	"CONNECT api.github.test:443 HTTP/1.1\r\nHost: api.github.test:443\r\nUser-Agent: curl/8.11.1\r\nProxy-Connection: Keep-Alive\r\n\r\n",
	"CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\nUser-Agent: credgate-bench/1\r\n\r\n",
	"CONNECT x.test:443 HTTP/1.1\r\n\r\n",
	"CONNECT x.test:443 HTTP/1.1\r\nHost: other.test:8443\r\n\r\n",
	"CONNECT API.Example.TEST:8443 HTTP/1.1\r\nHost: api.example.test\r\n\r\n",
	"CONNECT 10.0.0.1:1 HTTP/1.1\r\nHost: 10.0.0.1:1\r\n\r\n",
	"CONNECT a-b.c_d~e.:99999 HTTP/1.1\r\nHost: x\r\n\r\n",
	"CONNECT x.test:0443 HTTP/1.1\r\nHost: x.test:443\r\nExpect: 100-continue\r\n\r\n",
}

// declinedRequests it must leave to ReadRequest.
var declinedRequests = []string{
	"GET http://x.test/ HTTP/1.1\r\nHost: x.test\r\n\r\n",
	// CONNECT targets other than the plain authority form, and CONNECTs
	// with a body or of HTTP/1.0.
	"CONNECT x.test HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT x.test: HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT :443 HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT x.test:123456 HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT x.test:44a HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT x.test:443:1 HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
	"CONNECT [fe80::1%25en0]:443 HTTP/1.1\r\nHost: x\r\n\r\n",
	"CONNECT user:pw@x.test:443 HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT x%2etest:443 HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT x.test:443/ HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT x.test:443?q HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT x!test:443 HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT /rpc HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT x.test:443 HTTP/1.0\r\n\r\n",
	"CONNECT x.test:443 HTTP/1.1\r\nHost: x.test:443\r\nContent-Length: 0\r\n\r\n",
	"CONNECT x.test:443 HTTP/1.1\r\nHost: x.test:443\r\nContent-Length: 2\r\n\r\nab",
	"CONNECT x.test:443 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"connect x.test:443 HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"CONNECT x.test:443 HTTP/1.1\r\nHost: x.test:443\r\n", // the head has not all arrived
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"get / HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"PROPFIND / HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: x.test\r\n\r\n",
	"GET /  HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"GET /a b HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"GET /%x HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x.test\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	"POST / HTTP/1.1\r\nHost: x.test\r\nContent-Length: +1\r\n\r\nx",
	"POST / HTTP/1.1\r\nHost: x.test\r\nContent-Length: 1234567890123456789\r\n\r\nx",
	"POST / HTTP/1.1\r\nHost: x.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\nTrailer: X\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\nFolded: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\nBare: lf\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : x.test\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\nObs: caf\xc3\xa9\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\nCtl: a\x7fb\r\n\r\n",
	" GET / HTTP/1.1\r\nHost: x.test\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x.test\r\n", // the head has not all arrived
	// Where ReadRequest ends without waiting for more.
	"SSH-2.0-OpenSSH\r\n",
	"GET / HTTP/1.1\nHost: x.test\n\n",
	"GET / HTTP/1.1\r\nBad Name: x\r\n",
}

// TestFastRequest checks the fast path against ReadRequest on common
// requests (which it must take), pipelined, and on forms it must leave.
func TestFastRequest(t *testing.T) {
	for _, s := range commonRequests {
		if !checkFastRequest(t, []byte(s)) {
			t.Errorf("declined a common request: %q", s)
		}
		checkFastRequest(t, []byte(s+s))
		// Arriving a byte at a time (the tunnel's first byte comes alone,
		// from the idle wait): the head is read until it is whole.
		br := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader([]byte(s))), 4<<10)
		if readFastRequest(br, 1<<20) == nil {
			t.Errorf("declined %q arriving a byte at a time", s)
		}
	}
	for _, s := range declinedRequests {
		if checkFastRequest(t, []byte(s)) {
			t.Errorf("accepted %q", s)
		}
	}
}

// TestFastRequestAllocs bounds the fast path's allocations.
func TestFastRequestAllocs(t *testing.T) {
	data := []byte(commonRequests[2])
	br := bufio.NewReaderSize(nil, 4<<10)
	rd := bytes.NewReader(data)
	n := testing.AllocsPerRun(100, func() {
		rd.Reset(data)
		br.Reset(rd)
		if readFastRequest(br, 1<<20) == nil {
			t.Fatal("declined")
		}
	})
	ref := testing.AllocsPerRun(100, func() {
		rd.Reset(data)
		br.Reset(rd)
		if _, err := http.ReadRequest(br); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("fast path %v allocations, ReadRequest %v", n, ref)
	if n > 6 || n >= ref {
		t.Errorf("%v allocations (ReadRequest %v), want at most 6", n, ref)
	}
}

// TestFastConnectAllocs bounds the allocations of a Go client's CONNECT.
func TestFastConnectAllocs(t *testing.T) {
	data := []byte(connectGo)
	br := bufio.NewReaderSize(nil, 4<<10)
	rd := bytes.NewReader(data)
	n := testing.AllocsPerRun(100, func() {
		rd.Reset(data)
		br.Reset(rd)
		if r := readFastRequest(br, 1<<20); r == nil || r.Method != http.MethodConnect {
			t.Fatal("declined")
		}
	})
	ref := testing.AllocsPerRun(100, func() {
		rd.Reset(data)
		br.Reset(rd)
		if _, err := http.ReadRequest(br); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("fast path %v allocations, ReadRequest %v", n, ref)
	if n > 6 || n >= ref {
		t.Errorf("%v allocations (ReadRequest %v), want at most 6", n, ref)
	}
}

// connectGo is the CONNECT of Go's Transport through a proxy that asks for
// credentials.
const connectGo = "CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\nUser-Agent: Go-http-client/1.1\r\nProxy-Authorization: Basic Y2c6cHc=\r\n\r\n"

// FuzzFastRequest is the differential test: on any input the fast path
// either declines having consumed nothing or reads what ReadRequest reads.
func FuzzFastRequest(f *testing.F) {
	for _, s := range append(append([]string(nil), commonRequests...), declinedRequests...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastRequest(t, data)
	})
}

// BenchmarkReadRequest compares the fast path with ReadRequest on curl's
// request and on a Go client's JSON POST.
func BenchmarkReadRequest(b *testing.B) {
	for _, tc := range []struct{ name, req string }{
		{"curl-get", commonRequests[2]},
		{"llm-post", commonRequests[9]},
		{"go-connect", connectGo},
		{"python-requests", commonRequests[13]},
	} {
		data := []byte(tc.req)
		rd := bytes.NewReader(data)
		br := bufio.NewReaderSize(nil, 4<<10)
		b.Run(tc.name+"/fast", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(data)
				br.Reset(rd)
				if readFastRequest(br, 1<<20) == nil {
					b.Fatal("declined")
				}
			}
		})
		b.Run(tc.name+"/net-http", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(data)
				br.Reset(rd)
				if _, err := http.ReadRequest(br); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestOriginFormIsParseRequestURI holds originForm to url.ParseRequestURI
// on every target plainTarget lets through, for each visible ASCII byte
// in the path, in the query and at either's end, and for the '?'
// spellings (none, an empty query, two of them).
func TestOriginFormIsParseRequestURI(t *testing.T) {
	targets := []string{"/", "/?", "/??", "/a?", "/a?b?c", "/a?b", "//x/y", "/a//b/", "/a%2Fb", "/%zz", "/a?%zz", "/a#b", "/a?b#c"}
	for c := byte('!'); c <= '~'; c++ {
		s := string(c)
		targets = append(targets, "/"+s, "/a"+s+"b", "/a"+s+"?q", "/?"+s, "/a?b"+s+"c", "/"+s+s)
	}
	plain := 0
	for _, target := range targets {
		if !plainTarget(target) {
			continue
		}
		plain++
		want, err := url.ParseRequestURI(target)
		if err != nil {
			t.Errorf("%q: plainTarget took it, ParseRequestURI refuses it: %v", target, err)
			continue
		}
		if got := originForm(target); !reflect.DeepEqual(&got, want) {
			t.Errorf("%q:\n got %#v\nwant %#v", target, got, *want)
		}
	}
	if plain < len(targets)/2 {
		t.Errorf("plainTarget took %d of %d targets: the common ones must not go to ParseRequestURI", plain, len(targets))
	}
}
