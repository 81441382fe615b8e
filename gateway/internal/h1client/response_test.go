package h1client

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/credgate/credgate/internal/msghead/msgheadtest"
)

// checkFast holds readFastResponse to http.ReadResponse on data: when it
// declines it consumed nothing; when it accepts, ReadResponse reads the
// same response, the same body reads and leaves the same bytes after it.
func checkFast(t *testing.T, data []byte, method string) (accepted bool) {
	t.Helper()
	req, err := http.NewRequest(method, "http://example.test/", nil)
	if err != nil {
		return false
	}
	// It never waits for bytes ReadResponse would not wait for.
	if msgheadtest.AskedMore(data, func(br *bufio.Reader) { readFastResponse(br, req, 1<<20, nil) }) &&
		!msgheadtest.AskedMore(data, func(br *bufio.Reader) { _, _ = http.ReadResponse(br, req) }) {
		t.Fatalf("%q: waited for more bytes where ReadResponse did not", data)
	}
	br := bufio.NewReaderSize(bytes.NewReader(data), 4<<10)
	fr := readFastResponse(br, req, 1<<20, nil)
	if fr == nil {
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, data) {
			t.Fatalf("declined but consumed bytes of %q", data)
		}
		return false
	}
	ref := bufio.NewReaderSize(bytes.NewReader(data), 4<<10)
	want, err := http.ReadResponse(ref, req)
	if err != nil {
		t.Fatalf("accepted %q, which ReadResponse refuses: %v", data, err)
	}
	got := &fr.resp
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"Status", got.Status, want.Status},
		{"StatusCode", got.StatusCode, want.StatusCode},
		{"Proto", got.Proto, want.Proto},
		{"ProtoMajor", got.ProtoMajor, want.ProtoMajor},
		{"ProtoMinor", got.ProtoMinor, want.ProtoMinor},
		{"Header", got.Header, want.Header},
		{"ContentLength", got.ContentLength, want.ContentLength},
		{"TransferEncoding", got.TransferEncoding, want.TransferEncoding},
		{"Close", got.Close, want.Close},
		{"Uncompressed", got.Uncompressed, want.Uncompressed},
		{"Trailer", got.Trailer, want.Trailer},
		{"Request", got.Request, want.Request},
		{"NoBody", got.Body == http.NoBody, want.Body == http.NoBody},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Fatalf("%q: %s = %#v, ReadResponse's %#v", data, c.name, c.got, c.want)
		}
	}
	if g, w := msgheadtest.Reads(got.Body), msgheadtest.Reads(want.Body); !reflect.DeepEqual(g, w) {
		t.Fatalf("%q: body reads %q, ReadResponse's %q", data, g, w)
	}
	g, _ := io.ReadAll(br)
	w, _ := io.ReadAll(ref)
	if !bytes.Equal(g, w) {
		t.Fatalf("%q: left %q after the body, ReadResponse %q", data, g, w)
	}
	return true
}

// common are responses the fast path must take: what APIs answer.
var common = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Thu, 03 Dec 2026 12:00:00 GMT\r\nContent-Length: 2\r\n\r\n{}",
	// nginx: Connection: keep-alive, Server, several Set-Cookie.
	"HTTP/1.1 201 Created\r\nServer: nginx/1.27.0\r\nDate: Thu, 03 Dec 2026 12:00:00 GMT\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 11\r\nConnection: keep-alive\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/; HttpOnly\r\nETag: \"abc\"\r\n\r\n{\"id\": 42}\n",
	// GitHub-like: many fields, lower-case and odd-case names.
	"HTTP/1.1 404 Not Found\r\ncontent-type: application/json; charset=utf-8\r\nx-github-request-id: 1234:5678\r\nx-ratelimit-limit: 5000\r\nx-ratelimit-remaining: 4999\r\nX-Custom_Field: \t spaced \t\r\nVary: Accept, Accept-Encoding\r\nVary: Origin\r\ncontent-length: 9\r\n\r\nnot found",
	"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 302 Found\r\nLocation: https://example.test/next\r\nContent-Length: 0\r\nEmpty:\r\n\r\n",
}

// declined are responses it must leave to ReadResponse, refused or not.
var declined = []string{
	"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
	"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive, Close\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nPragma: no-cache\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTrailer: X\r\n\r\nx",
	"HTTP/1.1 200 OK\r\n\r\nuntil close",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nFolded: a\r\n b\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\nBare: lf\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nSpace : before\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nObs: caf\xc3\xa9\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nCtl: a\x01b\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nNoColon\r\n\r\nx",
	"HTTP/1.1  200 OK\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 600 Odd\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", // the block has not all arrived
	"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\nx",
	// Where ReadResponse ends without waiting for more.
	"SSH-2.0-OpenSSH\r\n",
	"HTTP/1.1 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nBad Name: x\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
}

// TestFastResponse checks the fast path against ReadResponse on the
// common responses (which it must take) and on the forms it must leave to
// ReadResponse, each whole and with its body cut short.
func TestFastResponse(t *testing.T) {
	for _, s := range common {
		if !checkFast(t, []byte(s), http.MethodGet) {
			t.Errorf("declined a common response: %q", s)
		}
		if checkFast(t, []byte(s), http.MethodHead) {
			t.Errorf("accepted a response to HEAD: %q", s)
		}
		// Body cut short, and followed by the next response.
		if i := strings.Index(s, "\r\n\r\n"); i+4 < len(s) {
			checkFast(t, []byte(s[:len(s)-1]), http.MethodGet)
		}
		checkFast(t, []byte(s+s), http.MethodGet)
	}
	for _, s := range declined {
		if checkFast(t, []byte(s), http.MethodGet) {
			t.Errorf("accepted %q", s)
		}
	}
}

// TestFastResponseAllocs bounds the fast path's allocations.
func TestFastResponseAllocs(t *testing.T) {
	data := []byte(common[2])
	req, _ := http.NewRequest(http.MethodGet, "http://example.test/", nil)
	br := bufio.NewReaderSize(nil, 4<<10)
	rd := bytes.NewReader(data)
	n := testing.AllocsPerRun(100, func() {
		rd.Reset(data)
		br.Reset(rd)
		if readFastResponse(br, req, 1<<20, nil) == nil {
			t.Fatal("declined")
		}
	})
	// The block's text, the map, its values, the response; Set-Cookie's
	// second value and the map's growth may add one each.
	if n > 6 {
		t.Errorf("%v allocations, want at most 6", n)
	}
	ref := testing.AllocsPerRun(100, func() {
		rd.Reset(data)
		br.Reset(rd)
		if _, err := http.ReadResponse(br, req); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("fast path %v allocations, ReadResponse %v", n, ref)
}

// FuzzFastResponse is the differential test: on any input, the fast path
// either declines having consumed nothing or reads what ReadResponse
// reads.
func FuzzFastResponse(f *testing.F) {
	for _, s := range append(append([]string(nil), common...), declined...) {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		m := http.MethodGet
		if head {
			m = http.MethodHead
		}
		checkFast(t, data, m)
	})
}

// TestResponseSpace: a request's ResponseSpace holds the first response
// the Client reads itself; a second one read for the same request (a
// reissue's) gets its own allocation, and the first keeps its status,
// fields and body.
func TestResponseSpace(t *testing.T) {
	var n atomic.Int64
	o := startRawOrigin(t, nil, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := readRequest(br); err != nil {
				return
			}
			i := n.Add(1)
			fmt.Fprintf(c, "HTTP/1.1 20%d OK\r\nX-N: %d\r\nContent-Length: 2\r\n\r\nr%d", i, i, i)
		}
	})
	c := newClient(t)
	space := &ResponseSpace{}
	ctx := context.WithValue(t.Context(), ResponseSpaceKey{}, space)
	send := func() (*http.Response, string) {
		t.Helper()
		r, _ := http.NewRequestWithContext(ctx, "GET", "http://"+o.addr+"/", nil)
		resp, err := c.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp, string(b)
	}
	first, body1 := send()
	if first != &space.fr.resp {
		t.Fatal("the first response was not read into the request's ResponseSpace")
	}
	second, body2 := send()
	if second == first {
		t.Fatal("a second response was read into the space the first one holds")
	}
	if first.StatusCode != 201 || first.Header.Get("X-N") != "1" || body1 != "r1" {
		t.Errorf("first response after the second: %d %v %q, want 201, X-N 1, r1", first.StatusCode, first.Header, body1)
	}
	if second.StatusCode != 202 || second.Header.Get("X-N") != "2" || body2 != "r2" {
		t.Errorf("second response: %d %v %q, want 202, X-N 2, r2", second.StatusCode, second.Header, body2)
	}
}
