package h1client

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
)

// writeBoth writes the request build returns (called twice: a request
// is written once) as roundTrip does (rw.write, the body read whole by
// readBody first when it has a length) and with Request.Write. planned
// reports whether writeHead wrote it; wantErr is Request.Write's error.
// A request whose body readBody refuses is not written (ok false).
func writeBoth(t testing.TB, build func() *http.Request) (have, want []byte, planned bool, wantErr error, ok bool) {
	t.Helper()
	var wb bytes.Buffer
	wantErr = build().Write(&wb)

	r := build()
	var rb *reqBuf
	if r.ContentLength > 0 && r.ContentLength <= maxBody && r.Body != nil && r.Body != http.NoBody {
		var err error
		if rb, err = readBody(r); err != nil {
			return nil, nil, false, nil, false
		}
		defer rb.free()
	}
	trace := httptrace.ContextClientTrace(r.Context())
	_, planned = planHead(r, rb != nil, trace)
	var hb bytes.Buffer
	rw := &reqWriter{bw: bufio.NewWriterSize(&hb, 4<<10)}
	err := rw.write(r, rb, trace)
	if err == nil {
		err = rw.bw.Flush()
	}
	if wantErr == nil && err != nil {
		t.Fatalf("write: %v; Request.Write wrote %q", err, wb.Bytes())
	}
	return hb.Bytes(), wb.Bytes(), planned, wantErr, true
}

// TestWriteRequest: for each request, roundTrip's writer produces the
// bytes Request.Write produces, with writeHead for those planHead covers
// (every request the Client sends itself, unless a trace asks for the
// fields written) and with Request.Write itself for the others.
func TestWriteRequest(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		url     string
		body    string // ContentLength len(body), a reader in memory
		set     func(r *http.Request)
		planned bool // writeHead writes it
	}{
		{name: "plain GET", method: "GET", url: "http://a.test/v1/x", planned: true},
		{name: "empty method", method: "", url: "http://a.test/", planned: true},
		{name: "no path", method: "GET", url: "http://a.test", planned: true},
		{name: "default user agent", method: "GET", url: "http://a.test/", set: func(r *http.Request) { delete(r.Header, "User-Agent") }, planned: true},
		{name: "empty user agent", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Header["User-Agent"] = []string{""} }, planned: true},
		{name: "nil user agent", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Header["User-Agent"] = nil }, planned: true},
		{name: "blank user agent", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Header["User-Agent"] = []string{" \t "} }, planned: true},
		{name: "two user agents", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Header["User-Agent"] = []string{" a/1 ", "b/2"} }, planned: true},
		{name: "lower-case user agent", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Header["user-agent"] = []string{"x"} }, planned: true},
		{name: "newlines in user agent", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Header["User-Agent"] = []string{"\r\na\rb\nc\r\n"} }, planned: true},
		{name: "header sorting", method: "GET", url: "http://a.test/", set: func(r *http.Request) {
			r.Header["X-B"] = []string{"2"}
			r.Header["Accept"] = []string{"a/b", "c/d"}
			r.Header["x-a"] = []string{"lower"}
			r.Header["X-A"] = []string{"upper"}
			r.Header["Authorization"] = []string{"Bearer tok"}
			r.Header["X-Multi"] = []string{"1", "", "3"}
			r.Header["X-Nil"] = nil
		}, planned: true},
		{name: "excluded keys", method: "POST", url: "http://a.test/", body: "xy", set: func(r *http.Request) {
			r.Header["Host"] = []string{"h.test"}
			r.Header["Content-Length"] = []string{"99"}
			r.Header["Transfer-Encoding"] = []string{"chunked"}
			r.Header["Trailer"] = []string{"X-T"}
			r.Header["content-length"] = []string{"lower: written"}
			r.Header["HOST"] = []string{"upper: written"}
		}, planned: true},
		{name: "invalid key dropped", method: "GET", url: "http://a.test/", set: func(r *http.Request) {
			r.Header["Bad Key"] = []string{"v"}
			r.Header[""] = []string{"v"}
			r.Header["X:Y"] = []string{"v"}
		}, planned: true},
		{name: "values trimmed and newlines replaced", method: "GET", url: "http://a.test/", set: func(r *http.Request) {
			r.Header["X-Spaces"] = []string{"  a  b  ", "\t\tc\t", "\r\n d \r\n", "e\r\n f", "\r", ""}
			r.Header["X-Obs"] = []string{"caf\xc3\xa9 \x80\xff"}
		}, planned: true},
		{name: "Host differs from the URL's", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Host = "api.example.test:8443" }, planned: true},
		{name: "empty Host: the URL's", method: "GET", url: "http://a.test:81/", set: func(r *http.Request) { r.Host = "" }, planned: true},
		{name: "invalid Host emptied", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Host = "a b/c" }, planned: true},
		{name: "IPv6 host", method: "GET", url: "http://[::1]:8080/", planned: true},
		{name: "IPv6 zone removed", method: "GET", url: "http://[fe80::1%25en0]:8080/", planned: true},
		{name: "IPv6 zone without port", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Host = "[fe80::1%en0]" }, planned: true},
		{name: "bracket without zone", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Host = "[a%b" }, planned: true},
		{name: "non-ASCII Host", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Host = "bücher.example" }},
		{name: "odd query", method: "GET", url: "http://a.test/q?a=%2F%2f&b=+x&c&&d=%25&e=%E2%82%AC", planned: true},
		{name: "empty query forced", method: "GET", url: "http://a.test/q?", planned: true},
		{name: "query only", method: "GET", url: "http://a.test?x=1", planned: true},
		{name: "encoded path (RawPath)", method: "GET", url: "http://a.test/a%20b/c%2Fd/%7Euser", planned: true},
		{name: "path to escape", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.URL.Path = "/a b/ü/?#%" }, planned: true},
		{name: "RawPath not matching Path", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/a", "/b" }, planned: true},
		{name: "control byte in path escaped", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.URL.Path = "/a\x00\r\nb" }, planned: true},
		{name: "control byte in query", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.URL.RawQuery = "a=\r\nb" }},
		{name: "control byte in RawPath: Path escaped", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/a\x7f", "/a\x7f" }, planned: true},
		{name: "OPTIONS *", method: "OPTIONS", url: "http://a.test", set: func(r *http.Request) { r.URL.Path = "*" }, planned: true},
		{name: "double slash path", method: "GET", url: "http://a.test//a//b/", planned: true},
		{name: "opaque URL", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.URL.Opaque = "//b.test/x" }},
		{name: "CONNECT", method: "CONNECT", url: "http://a.test:443"},
		{name: "HEAD", method: "HEAD", url: "http://a.test/h", planned: true},
		{name: "POST without a body", method: "POST", url: "http://a.test/p", planned: true},
		{name: "PUT without a body", method: "PUT", url: "http://a.test/p", planned: true},
		{name: "PATCH without a body", method: "PATCH", url: "http://a.test/p", planned: true},
		{name: "DELETE without a body", method: "DELETE", url: "http://a.test/p", planned: true},
		{name: "lower-case post without a body", method: "post", url: "http://a.test/p", planned: true},
		{name: "POST with NoBody", method: "POST", url: "http://a.test/p", set: func(r *http.Request) { r.Body = http.NoBody }, planned: true},
		{name: "POST JSON", method: "POST", url: "http://a.test/v1/chat/completions", body: json1k, set: func(r *http.Request) {
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer sk-test")
		}, planned: true},
		{name: "GET with a body", method: "GET", url: "http://a.test/g", body: "q", planned: true},
		{name: "16 KiB body", method: "PUT", url: "http://a.test/big", body: strings.Repeat("z", maxBody), planned: true},
		{name: "binary body", method: "PROPFIND", url: "http://a.test/dav", body: "bin\x00\xff\r\n\r\n", planned: true},
		{name: "odd method", method: "GET /x HTTP/1.0\r\n", url: "http://a.test/", planned: true},
		{name: "Close", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.Close = true }},
		{name: "Close with Connection close", method: "GET", url: "http://a.test/", set: func(r *http.Request) {
			r.Close = true
			r.Header["Connection"] = []string{"keep-alive, close"}
		}},
		{name: "chunked", method: "POST", url: "http://a.test/", body: "abc", set: func(r *http.Request) { r.TransferEncoding = []string{"chunked"} }},
		{name: "identity with no body", method: "GET", url: "http://a.test/", set: func(r *http.Request) { r.TransferEncoding = []string{"identity"} }},
		{name: "trailer", method: "POST", url: "http://a.test/", body: "abc", set: func(r *http.Request) { r.Trailer = http.Header{"X-T": nil} }},
		{name: "body of unknown length", method: "POST", url: "http://a.test/", set: func(r *http.Request) {
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("abc")), -1
		}},
		{name: "trace asks for the fields", method: "GET", url: "http://a.test/", set: func(r *http.Request) {
			*r = *r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{WroteHeaders: func() {}}))
		}},
		{name: "trace for 1xx only", method: "GET", url: "http://a.test/", set: func(r *http.Request) {
			*r = *r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
				Got1xxResponse: func(int, textproto.MIMEHeader) error { return nil },
			}))
		}, planned: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			build := func() *http.Request {
				u, err := url.Parse(tt.url)
				if err != nil {
					t.Fatal(err)
				}
				r := &http.Request{Method: tt.method, URL: u, Host: u.Host, Header: http.Header{"User-Agent": {""}}}
				r = r.WithContext(context.Background())
				if tt.body != "" {
					r.Body, r.ContentLength = io.NopCloser(strings.NewReader(tt.body)), int64(len(tt.body))
				}
				if tt.set != nil {
					tt.set(r)
				}
				return r
			}
			have, want, planned, wantErr, ok := writeBoth(t, build)
			if !ok {
				t.Fatal("readBody refused the body")
			}
			if planned != tt.planned {
				t.Errorf("planHead: %v, want %v", planned, tt.planned)
			}
			if _, el := eligible(build()); el && !planned && !strings.HasPrefix(tt.name, "trace") {
				t.Error("the Client sends it itself, but not with writeHead")
			}
			if wantErr != nil {
				if planned {
					t.Errorf("planned a request Request.Write refuses (%v)", wantErr)
				}
				return
			}
			if !bytes.Equal(have, want) {
				t.Errorf("wrote\n%q\nwant (Request.Write)\n%q", have, want)
			}
		})
	}
}

// FuzzWriteRequest is TestWriteRequest for any method, URL, Host,
// header fields and body: whenever planHead covers a request, writeHead
// writes Request.Write's bytes (and Request.Write accepts it); when it
// does not, Request.Write writes it; and every request the Client sends
// itself is covered. headers holds fields separated by NUL, each a name,
// a colon and a value (a value may hold CR and LF). flags: 1 Host is
// host, not the URL's; 2 https; 4 the User-Agent key is absent unless
// headers set it (else it is blank); 8 Close; 16 TransferEncoding
// chunked; 32 a Trailer; 64 Body is http.NoBody when there is no body;
// 128 ForceQuery; 256 RawPath set to target's path as it is.
func FuzzWriteRequest(f *testing.F) {
	f.Add("GET", "a.test/v1/x", "", "Authorization:Bearer t\x00Accept:*/*", "", uint16(0))
	f.Add("POST", "a.test/v1/chat/completions?x=1", "", "Content-Type:application/json\x00Authorization:Bearer sk-test", json1k, uint16(0))
	f.Add("", "a.test", "", "", "", uint16(4))
	f.Add("PUT", "[fe80::1%25en0]:8080/o/a%2Fb", "", "X-Multi:1\x00X-Multi:\x00X-Multi: 3 ", "bin\x00\xff\r\n", uint16(2))
	f.Add("PATCH", "a.test/p", "h.test:8443", "User-Agent: ua/1 \r\n\x00user-agent:x\x00Host:h\x00Content-Length:9", "{}", uint16(1))
	f.Add("post", "a.test/p?", "a b", "X-Spaces:\t a\r\nb \x00Bad Key:v", "", uint16(64|128))
	f.Add("OPTIONS", "a.test*", "", "", "", uint16(0))
	f.Add("GET", "a.test/caf%C3%A9/%zz", "b\xc3\xbccher.test", "X-Obs:\xc3\xa9\x80", "", uint16(1|256))
	f.Add("DELETE", "a.test/d", "", "Connection:close", "x", uint16(8))
	f.Add("POST", "a.test/c", "", "", "abc", uint16(16|32))
	f.Fuzz(func(t *testing.T, method, target, host, headers, body string, flags uint16) {
		if len(body) > maxBody {
			body = body[:maxBody]
		}
		scheme := "http://"
		if flags&2 != 0 {
			scheme = "https://"
		}
		u, err := url.Parse(scheme + target)
		if err != nil {
			return
		}
		if flags&128 != 0 {
			u.ForceQuery = true
		}
		if flags&256 != 0 {
			u.RawPath = u.Path
			if i := strings.IndexAny(target, "/*"); i >= 0 {
				u.RawPath = target[i:]
				if j := strings.IndexByte(u.RawPath, '?'); j >= 0 {
					u.RawPath = u.RawPath[:j]
				}
			}
		}
		build := func() *http.Request {
			u := *u
			r := &http.Request{Method: method, URL: &u, Host: u.Host, Header: http.Header{}}
			r = r.WithContext(context.Background())
			if flags&1 != 0 {
				r.Host = host
			}
			if flags&4 == 0 {
				r.Header["User-Agent"] = []string{""}
			}
			for _, field := range strings.Split(headers, "\x00") {
				if name, value, ok := strings.Cut(field, ":"); ok {
					r.Header[name] = append(r.Header[name], value)
				}
			}
			switch {
			case body != "":
				r.Body, r.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
			case flags&64 != 0:
				r.Body = http.NoBody
			}
			r.Close = flags&8 != 0
			if flags&16 != 0 {
				r.TransferEncoding = []string{"chunked"}
			}
			if flags&32 != 0 {
				r.Trailer = http.Header{"X-T": nil}
			}
			return r
		}
		have, want, planned, wantErr, ok := writeBoth(t, build)
		if !ok {
			t.Fatal("readBody refused a body of its length")
		}
		if _, el := eligible(build()); el && !planned {
			t.Error("the Client sends it itself, but not with writeHead")
		}
		if wantErr != nil {
			if planned {
				t.Errorf("planned a request Request.Write refuses (%v)", wantErr)
			}
			return
		}
		if !bytes.Equal(have, want) {
			t.Errorf("wrote (planned %v)\n%q\nwant (Request.Write)\n%q", planned, have, want)
		}
	})
}

// gatewayRequest is a request as the gateway sends one upstream: a few
// fields, one of them a credential, and a blank User-Agent when the
// client sent none; with body (1 KiB of JSON) a POST.
func gatewayRequest(tb testing.TB, body string) (*http.Request, *reqBuf) {
	method := "GET"
	if body != "" {
		method = "POST"
	}
	r, err := http.NewRequest(method, "https://api.example.test/v1/chat/completions?stream=false", nil)
	if err != nil {
		tb.Fatal(err)
	}
	r.Header = http.Header{
		"User-Agent":      {"openai-python/1.40.0"},
		"Accept":          {"application/json"},
		"Accept-Encoding": {"gzip, deflate"},
		"Authorization":   {"Bearer sk-test-0123456789abcdefghijklmnopqrstuvwxyz"},
		"Content-Type":    {"application/json"},
		"X-Request-Id":    {"4f9d1c2e-8a7b-4c3d-9e0f-1a2b3c4d5e6f"},
		"Traceparent":     {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	}
	if body == "" {
		return r, nil
	}
	r.Body, r.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
	rb, err := readBody(r)
	if err != nil {
		tb.Fatal(err)
	}
	return r, rb
}

// TestWriteHeadAllocs: writeHead allocates nothing for the gateway's
// common requests (the point of it: Request.Write allocates about four
// times per request).
func TestWriteHeadAllocs(t *testing.T) {
	for _, body := range []string{"", json1k} {
		r, rb := gatewayRequest(t, body)
		rw := &reqWriter{bw: bufio.NewWriterSize(io.Discard, 4<<10)}
		if n := testing.AllocsPerRun(100, func() {
			if err := rw.write(r, rb, nil); err != nil {
				t.Fatal(err)
			}
			if err := rw.bw.Flush(); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", r.Method, n)
		}
	}
}

// BenchmarkWriteRequest compares writeHead with Request.Write for the
// gateway's common GET and 1 KiB POST, written to a pooled
// bufio.Writer over io.Discard.
func BenchmarkWriteRequest(b *testing.B) {
	for _, body := range []string{"", json1k} {
		r, rb := gatewayRequest(b, body)
		rw := &reqWriter{bw: bufio.NewWriterSize(io.Discard, 4<<10)}
		b.Run(r.Method+"/writeHead", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = rw.write(r, rb, nil)
				_ = rw.bw.Flush()
			}
		})
		b.Run(r.Method+"/Request.Write", func(b *testing.B) {
			w := r
			if rb != nil {
				w = &rb.req
			}
			b.ReportAllocs()
			for b.Loop() {
				rb.rewind()
				_ = w.Write(rw.bw)
				_ = rw.bw.Flush()
			}
		})
	}
}
