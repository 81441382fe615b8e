package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// The fidelity differential: every cell is one request, made by one real
// client (curl, Go's net/http, Python's urllib; configured only by
// HTTPS_PROXY/HTTP_PROXY and a CA file), once straight to an origin that
// answers with exact bytes and once through a running gateway. What the
// client sees must be the same both ways, and what the origin receives
// must be the same both ways, except for the differences docs/clients.md
// ("What the gateway changes on the wire") lists: the injected
// credential, the Host field naming the origin instead of 127.0.0.1:PORT,
// and the hop-by-hop fields RFC 9110 §7.6.1 has a proxy remove.
//
// 30 of its 205 cells differed before the fixes it came with: queries
// holding a ';' re-encoded whole (3), a Content-Type the gateway's
// HTTP/2 server guessed and added (26, every HTTP/2 answer with a body
// but no type), and a 304 with a Content-Length that Go's HTTP/2 client
// failed (1).

// fidelityPolicy injects into both origins with scrubbing off, so that
// the gateway changes nothing it does not have to (scrubbing's documented
// changes, such as decoding gzip, are its own tests').
const fidelityPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  plain:
    hosts: [plain.origin.test]
    ports: [80]
    allow_private: true
credentials:
  api-token:
    provider: static
    env: CREDGATE_E2E_TOKEN
rules:
  - name: api-inject
    from: local
    to: api
    methods: [GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE]
    inject: {credential: api-token, as: bearer}
    scrub: {enabled: false}
  - name: plain-inject
    from: local
    to: plain
    methods: [GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE]
    plaintext: true
    inject: {credential: api-token, as: bearer}
    scrub: {enabled: false}
default: deny
`

// fidelityDate is the Date every canned response carries: a gateway that
// replaced it would show.
const fidelityDate = "Date: Mon, 30 Nov 2026 10:00:00 GMT\r\n"

// gzipped is "hello, compressed\n" gzip-encoded.
var gzipped = func() string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte("hello, compressed\n"))
	_ = zw.Close()
	return b.String()
}()

// bigFields is a header section of 12 fields of 4000 bytes each.
var bigFields = func() string {
	var b strings.Builder
	for i := range 12 {
		fmt.Fprintf(&b, "X-Big-%02d: %s\r\n", i, strings.Repeat(string(rune('a'+i)), 4000))
	}
	return b.String()
}()

// fidelityResponses are the origin's answers by the path's last segment
// (/c/NAME). Each is exact bytes; close means the origin closes the
// connection after it.
var fidelityResponses = map[string]struct {
	raw   string
	close bool
}{
	"length":        {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "Content-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"},
	"chunked":       {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello\n\r\n8\r\nchunked\n\r\n0\r\n\r\n"},
	"close":         {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "Content-Type: text/plain\r\nConnection: close\r\n\r\nhello, until close\n", close: true},
	"trailers":      {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "Content-Type: text/plain\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello\n\r\n0\r\nX-Checksum: abc123\r\n\r\n"},
	"head":          {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "Content-Type: text/plain\r\nContent-Length: 1234\r\n\r\n"},
	"head-chunked":  {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"},
	"204":           {raw: "HTTP/1.1 204 No Content\r\n" + fidelityDate + "X-Request-Id: r1\r\n\r\n"},
	"204-length":    {raw: "HTTP/1.1 204 No Content\r\n" + fidelityDate + "Content-Length: 0\r\n\r\n"},
	"304":           {raw: "HTTP/1.1 304 Not Modified\r\n" + fidelityDate + "ETag: \"v1\"\r\n\r\n"},
	"304-length":    {raw: "HTTP/1.1 304 Not Modified\r\n" + fidelityDate + "ETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n"},
	"hints":         {raw: "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200 OK\r\n" + fidelityDate + "Content-Length: 3\r\n\r\nok\n"},
	"continue":      {raw: "HTTP/1.1 201 Created\r\n" + fidelityDate + "Content-Length: 3\r\n\r\nok\n"},
	"refused":       {raw: "HTTP/1.1 403 Forbidden\r\n" + fidelityDate + "Content-Length: 3\r\nConnection: close\r\n\r\nno\n", close: true},
	"gzip":          {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "Content-Type: text/plain\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\nContent-Length: " + strconv.Itoa(len(gzipped)) + "\r\n\r\n" + gzipped},
	"range":         {raw: "HTTP/1.1 206 Partial Content\r\n" + fidelityDate + "Accept-Ranges: bytes\r\nContent-Range: bytes 0-3/10\r\nContent-Length: 4\r\n\r\n0123"},
	"cookies":       {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "Set-Cookie: a=1; Path=/; HttpOnly\r\nSet-Cookie: b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT\r\nSet-Cookie: c=3\r\nContent-Length: 3\r\n\r\nok\n"},
	"case-order":    {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "zeta-lower: z\r\nALPHA-UPPER: a\r\nX-Dup: 1\r\nContent-Length: 3\r\nX-Dup: 2\r\nx-dup: 3\r\n\r\nok\n"},
	"no-type":       {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "Content-Length: 15\r\n\r\n<html>hi</html>"},
	"no-date":       {raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"},
	"big-headers":   {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + bigFields + "Content-Length: 3\r\n\r\nok\n"},
	"empty-reason":  {raw: "HTTP/1.1 200 \r\n" + fidelityDate + "Content-Length: 3\r\n\r\nok\n"},
	"custom-reason": {raw: "HTTP/1.1 200 Fine Thanks\r\n" + fidelityDate + "Content-Length: 3\r\n\r\nok\n"},
	"299":           {raw: "HTTP/1.1 299 Odd Success\r\n" + fidelityDate + "Content-Length: 3\r\n\r\nok\n"},
	"418":           {raw: "HTTP/1.1 418 I'm a teapot\r\n" + fidelityDate + "Content-Length: 7\r\n\r\nteapot\n"},
	"599":           {raw: "HTTP/1.1 599 Network Connect Timeout\r\n" + fidelityDate + "Content-Length: 4\r\n\r\n599\n"},
	"echo":          {raw: "HTTP/1.1 200 OK\r\n" + fidelityDate + "Content-Length: 3\r\n\r\nok\n"},
}

// originExchange is one request as the fidelity origin read it off the
// wire, and whether anything followed a refusal.
type originExchange struct {
	RequestLine string
	Fields      []string // header lines as received, in order
	Body        string
	Trailers    []string
	// AfterRefusal is what arrived after the origin refused an
	// Expect: 100-continue request (the body must not).
	AfterRefusal string
}

// fidelityOrigin serves fidelityResponses over TLS (HTTP/1.1 only) and
// plain TCP, recording each request's raw head, body and trailers.
type fidelityOrigin struct {
	tlsAddr, plainAddr string

	mu   sync.Mutex
	seen []originExchange
	// busy counts requests read but not yet recorded.
	busy int
}

func startFidelityOrigin(t *testing.T) *fidelityOrigin {
	t.Helper()
	o := &fidelityOrigin{}
	tlsLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{originLeaf}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.tlsAddr, o.plainAddr = tlsLn.Addr().String(), plainLn.Addr().String()
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	conns := map[net.Conn]bool{}
	for _, ln := range []net.Listener{tlsLn, plainLn} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				connsMu.Lock()
				conns[c] = true
				connsMu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					o.serveConn(c)
					connsMu.Lock()
					delete(conns, c)
					connsMu.Unlock()
				}()
			}
		}()
	}
	t.Cleanup(func() {
		tlsLn.Close()
		plainLn.Close()
		connsMu.Lock()
		for c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	return o
}

// take returns the requests recorded since the last take, once none is
// being read.
func (o *fidelityOrigin) take(t *testing.T) []originExchange {
	t.Helper()
	waitFor(t, 10*time.Second, "the origin to finish reading", func() error {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.busy > 0 {
			return fmt.Errorf("%d requests being read", o.busy)
		}
		return nil
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.seen
	o.seen = nil
	return out
}

func (o *fidelityOrigin) setBusy(d int) {
	o.mu.Lock()
	o.busy += d
	o.mu.Unlock()
}

func (o *fidelityOrigin) record(ex originExchange) {
	o.mu.Lock()
	o.seen = append(o.seen, ex)
	o.mu.Unlock()
}

// readLines reads CRLF-terminated lines up to an empty one.
func readLines(br *bufio.Reader) ([]string, error) {
	var out []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return out, err
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			return out, nil
		}
		out = append(out, l)
	}
}

func (o *fidelityOrigin) serveConn(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := br.Peek(1); err != nil {
			return
		}
		if !o.serveOne(c, br) {
			return
		}
	}
}

// serveOne reads one request and answers it; false when the connection
// is done.
func (o *fidelityOrigin) serveOne(c net.Conn, br *bufio.Reader) bool {
	o.setBusy(1)
	defer o.setBusy(-1)
	line, err := br.ReadString('\n')
	if err != nil {
		return false
	}
	ex := originExchange{RequestLine: strings.TrimRight(line, "\r\n")}
	if ex.Fields, err = readLines(br); err != nil {
		return false
	}
	h := http.Header{}
	for _, f := range ex.Fields {
		k, v, _ := strings.Cut(f, ":")
		h.Add(k, strings.TrimSpace(v))
	}
	parts := strings.Fields(ex.RequestLine)
	if len(parts) != 3 {
		return false
	}
	target, _, _ := strings.Cut(parts[1], "?")
	if u, err := url.Parse(target); err == nil && u.Path != "" {
		target = u.Path
	}
	name := target[strings.LastIndex(target, "/")+1:]
	resp, ok := fidelityResponses[name]
	if !ok {
		resp = fidelityResponses["echo"]
	}
	if strings.EqualFold(h.Get("Expect"), "100-continue") {
		if name == "refused" {
			// A final answer without 100 Continue: the body must not
			// follow. Whatever arrives in the next moments is kept.
			_, _ = io.WriteString(c, resp.raw)
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			rest, _ := io.ReadAll(br)
			ex.AfterRefusal = string(rest)
			o.record(ex)
			return false
		}
		_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
	}
	switch {
	case strings.EqualFold(h.Get("Transfer-Encoding"), "chunked"):
		b, err := io.ReadAll(httputil.NewChunkedReader(br))
		if err != nil {
			return false
		}
		ex.Body = string(b)
		if ex.Trailers, err = readLines(br); err != nil {
			return false
		}
	case h.Get("Content-Length") != "":
		n, err := strconv.Atoi(h.Get("Content-Length"))
		if err != nil {
			return false
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return false
		}
		ex.Body = string(b)
	}
	o.record(ex)
	if _, err := io.WriteString(c, resp.raw); err != nil || resp.close {
		return false
	}
	return parts[2] != "HTTP/1.0" || strings.EqualFold(h.Get("Connection"), "keep-alive")
}

// fidelityRequest is what a client is asked to send.
type fidelityRequest struct {
	Method string
	Path   string // path and query, from the first "/"
	Header [][2]string
	Body   string
	// Proto is "1.0", "1.1" (default) or "2" (curl and Go only).
	Proto string
}

// fidelityTarget says where a client sends the request.
type fidelityTarget struct {
	BaseURL string // scheme://host[:port]
	Proxy   string // "" for a direct request
	CAFile  string
}

// clientView is what one client showed of one exchange, as lines in a
// stable form. Clients show different things: curl the raw header
// section of every response (1xx included) and trailers; Go the parsed
// response, its 1xx, framing and trailers; Python the status, reason
// and fields in order.
type clientView []string

type fidelityClient interface {
	Name() string
	// Supports reports whether the client can make the request at all.
	Supports(r fidelityRequest) bool
	Do(t *testing.T, to fidelityTarget, r fidelityRequest) clientView
}

// fidelityEnv is the environment of a client process: proxy settings and
// CA variables removed, then proxy (when set) and extra added.
func fidelityEnv(proxy string, extra ...string) []string {
	if proxy != "" {
		return clientEnv(proxy, extra...)
	}
	var out []string
	for _, kv := range clientEnv("x") {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(strings.ToUpper(k), "_PROXY") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

type fidelityCurl struct{}

func (fidelityCurl) Name() string                  { return "curl" }
func (fidelityCurl) Supports(fidelityRequest) bool { return true }

func (fidelityCurl) Do(t *testing.T, to fidelityTarget, r fidelityRequest) clientView {
	t.Helper()
	dir := t.TempDir()
	hdrFile, bodyFile := filepath.Join(dir, "headers"), filepath.Join(dir, "body")
	args := []string{"-sS", "--max-time", "10", "--cacert", to.CAFile, "-D", hdrFile, "-o", bodyFile}
	switch r.Proto {
	case "1.0":
		args = append(args, "--http1.0")
	case "2":
		args = append(args, "--http2")
	default:
		args = append(args, "--http1.1")
	}
	if to.Proxy == "" {
		args = append(args, "--noproxy", "*")
	}
	switch r.Method {
	case "", http.MethodGet:
		if r.Body != "" {
			args = append(args, "-X", "GET")
		}
	case http.MethodHead:
		args = append(args, "-I") // -I writes the head to -o too: not a body
	default:
		args = append(args, "-X", r.Method)
	}
	if r.Body != "" {
		f := filepath.Join(dir, "request-body")
		if err := os.WriteFile(f, []byte(r.Body), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--data-binary", "@"+f)
	}
	for _, kv := range r.Header {
		args = append(args, "-H", kv[0]+": "+kv[1])
	}
	args = append(args, to.BaseURL+r.Path)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", args...)
	cmd.Env = fidelityEnv(to.Proxy)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var v clientView
	if err := cmd.Run(); err != nil {
		v = append(v, "error: "+strings.TrimSpace(stderr.String()))
	}
	dump, _ := os.ReadFile(hdrFile)
	blocks := strings.Split(strings.ReplaceAll(string(dump), "\r\n", "\n"), "\n\n")
	if to.Proxy != "" && strings.HasPrefix(to.BaseURL, "https:") && len(blocks) > 0 {
		blocks = blocks[1:] // the proxy's answer to CONNECT
	}
	for _, b := range blocks {
		if b = strings.TrimSpace(b); b != "" {
			v = append(v, strings.Split(b, "\n")...)
			v = append(v, "--")
		}
	}
	body, _ := os.ReadFile(bodyFile)
	if r.Method == http.MethodHead {
		body = nil
	}
	return append(v, "body: "+strconv.Quote(string(body)))
}

type fidelityGo struct{ h2 bool }

func (c fidelityGo) Name() string {
	if c.h2 {
		return "go-h2"
	}
	return "go"
}

func (c fidelityGo) Supports(r fidelityRequest) bool {
	return c.h2 == (r.Proto == "2") && r.Proto != "1.0"
}

func (c fidelityGo) Do(t *testing.T, to fidelityTarget, r fidelityRequest) clientView {
	t.Helper()
	pool, err := loadPool(to.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2:     c.h2,
		ExpectContinueTimeout: 5 * time.Second,
	}
	if to.Proxy != "" {
		pf := (&httpproxy.Config{HTTPSProxy: to.Proxy, HTTPProxy: to.Proxy}).ProxyFunc()
		tr.Proxy = func(req *http.Request) (*url.URL, error) { return pf(req.URL) }
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequest(method, to.BaseURL+r.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range r.Header {
		req.Header.Add(kv[0], kv[1])
	}
	var v clientView
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			v = append(v, strconv.Itoa(code))
			v = append(v, headerLines(http.Header(h))...)
			v = append(v, "--")
			return nil
		},
	}))
	resp, err := hc.Do(req)
	if err != nil {
		return append(v, "error: "+err.Error())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	v = append(v, resp.Proto+" "+resp.Status)
	v = append(v, headerLines(resp.Header)...)
	v = append(v, fmt.Sprintf("length %d, transfer-encoding %q, uncompressed %v", resp.ContentLength, resp.TransferEncoding, resp.Uncompressed))
	v = append(v, "body: "+strconv.Quote(string(b)))
	if err != nil {
		v = append(v, "body error: "+err.Error())
	}
	if len(resp.Trailer) > 0 {
		v = append(v, "trailers:")
		v = append(v, headerLines(resp.Trailer)...)
	}
	return v
}

// headerLines is h as sorted "Name: value" lines.
func headerLines(h http.Header) []string {
	var out []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}) {
		for _, v := range h[k] {
			out = append(out, k+": "+v)
		}
	}
	return out
}

type fidelityPython struct{}

func (fidelityPython) Name() string                    { return "python" }
func (fidelityPython) Supports(r fidelityRequest) bool { return r.Proto != "1.0" && r.Proto != "2" }

// fidelityPythonScript makes one request with urllib's default opener and
// prints status, reason, the fields in order and the body.
const fidelityPythonScript = `
import json, sys, urllib.request, urllib.error
spec = json.loads(sys.argv[1])
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener = urllib.request.build_opener(NoRedirect)
data = spec["body"].encode("latin-1") if spec["body"] else None
req = urllib.request.Request(spec["url"], data=data, method=spec["method"])
for k, v in spec["headers"] or []:
    req.add_header(k, v)
def view(r):
    out = ["%d %s" % (r.status if hasattr(r, "status") else r.code, r.reason)]
    out += ["%s: %s" % kv for kv in r.headers.items()]
    out.append("body: " + json.dumps(r.read().decode("latin-1")))
    return out
try:
    with opener.open(req, timeout=10) as r:
        out = view(r)
except urllib.error.HTTPError as e:
    out = view(e)
except Exception as e:
    out = ["error: %s: %s" % (type(e).__name__, e)]
print(json.dumps(out))
`

func (fidelityPython) Do(t *testing.T, to fidelityTarget, r fidelityRequest) clientView {
	t.Helper()
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	spec, err := json.Marshal(map[string]any{"url": to.BaseURL + r.Path, "method": method, "headers": r.Header, "body": r.Body})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "-c", fidelityPythonScript, string(spec))
	cmd.Env = fidelityEnv(to.Proxy, "SSL_CERT_FILE="+to.CAFile, "PYTHONDONTWRITEBYTECODE=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	var v clientView
	if err := json.Unmarshal(stdout.Bytes(), &v); err != nil {
		t.Fatalf("python3 output %q: %v", stdout.String(), err)
	}
	return v
}

// fidelityCell is one row of the differential.
type fidelityCell struct {
	name string
	req  fidelityRequest
	// plain sends the request as plain http:// (absolute-form through the
	// proxy) instead of https:// (CONNECT and interception).
	plain bool
}

func fidelityCells() []fidelityCell {
	get := func(name string) fidelityRequest { return fidelityRequest{Path: "/c/" + name} }
	cells := []fidelityCell{}
	for _, name := range []string{"length", "chunked", "close", "trailers", "204", "204-length", "hints",
		"cookies", "case-order", "no-type", "no-date", "big-headers", "empty-reason", "custom-reason", "299", "418", "599"} {
		cells = append(cells, fidelityCell{name: name, req: get(name)})
	}
	cells = append(cells,
		fidelityCell{name: "head", req: fidelityRequest{Method: "HEAD", Path: "/c/head"}},
		fidelityCell{name: "head-chunked", req: fidelityRequest{Method: "HEAD", Path: "/c/head-chunked"}},
		fidelityCell{name: "304", req: fidelityRequest{Path: "/c/304", Header: [][2]string{{"If-None-Match", `"v1"`}}}},
		fidelityCell{name: "304-length", req: fidelityRequest{Path: "/c/304-length", Header: [][2]string{{"If-None-Match", `"v1"`}}}},
		fidelityCell{name: "gzip-asked", req: fidelityRequest{Path: "/c/gzip", Header: [][2]string{{"Accept-Encoding", "gzip"}}}},
		fidelityCell{name: "gzip-unasked", req: get("gzip")},
		fidelityCell{name: "range", req: fidelityRequest{Path: "/c/range", Header: [][2]string{{"Range", "bytes=0-3"}}}},
		fidelityCell{name: "expect-continue", req: fidelityRequest{Method: "POST", Path: "/c/continue",
			Header: [][2]string{{"Expect", "100-continue"}, {"Content-Type", "text/plain"}}, Body: strings.Repeat("x", 2048)}},
		fidelityCell{name: "expect-refused", req: fidelityRequest{Method: "POST", Path: "/c/refused",
			Header: [][2]string{{"Expect", "100-continue"}, {"Content-Type", "text/plain"}}, Body: strings.Repeat("y", 2048)}},
		fidelityCell{name: "hop-by-hop", req: fidelityRequest{Path: "/c/echo", Header: [][2]string{
			{"Connection", "X-Hop, Keep-Alive"}, {"X-Hop", "1"}, {"Keep-Alive", "timeout=5"}, {"X-Kept", "2"},
			{"Proxy-Connection", "keep-alive"}, {"TE", "trailers"}}}},
		fidelityCell{name: "field-case-order", req: fidelityRequest{Path: "/c/echo", Header: [][2]string{
			{"zeta-lower", "z"}, {"ALPHA-UPPER", "a"}, {"X-Dup", "1"}, {"x-dup", "2"}, {"Via", "1.1 client-side"}}}},
		fidelityCell{name: "query-bytes", req: get("echo?z=1&a=1&b=%2F%3F&c=~!$'()*,:@/?&d=&=e&f=%zz+%20&&a=0")},
		fidelityCell{name: "query-semicolon", req: get("echo?z=1&a=1&c=~!$'()*,;:@/?&f=%zz+%20&x;y=1&a=0")},
		fidelityCell{name: "get-body", req: fidelityRequest{Path: "/c/echo", Header: [][2]string{{"Content-Type", "text/plain"}}, Body: "get body"}},
		fidelityCell{name: "delete-body", req: fidelityRequest{Method: "DELETE", Path: "/c/echo", Header: [][2]string{{"Content-Type", "text/plain"}}, Body: "delete body"}},
		fidelityCell{name: "options-max-forwards", req: fidelityRequest{Method: "OPTIONS", Path: "/c/echo", Header: [][2]string{{"Max-Forwards", "0"}}}},
		fidelityCell{name: "trace-max-forwards", req: fidelityRequest{Method: "TRACE", Path: "/c/echo", Header: [][2]string{{"Max-Forwards", "1"}}}},
		fidelityCell{name: "http1.0", req: fidelityRequest{Path: "/c/length", Proto: "1.0"}},
		fidelityCell{name: "http1.0-keep-alive", req: fidelityRequest{Path: "/c/length", Proto: "1.0", Header: [][2]string{{"Connection", "keep-alive"}}}},
		fidelityCell{name: "http1.0-chunked", req: fidelityRequest{Path: "/c/chunked", Proto: "1.0"}},
	)
	var out []fidelityCell
	for _, c := range cells {
		out = append(out, c)
		switch c.name {
		case "length", "chunked", "close", "trailers", "204", "304", "304-length", "hints", "head", "cookies", "case-order",
			"no-type", "no-date", "big-headers", "299", "599", "gzip-asked", "range", "query-bytes", "get-body", "expect-continue", "expect-refused":
			// HTTP/2 from the client to the gateway (HTTP/1.1 to the
			// origin, which offers nothing else); straight to the origin
			// the client falls back to HTTP/1.1.
			p := c
			p.name, p.req.Proto = "h2/"+c.name, "2"
			out = append(out, p)
		}
		switch c.name {
		case "length", "chunked", "close", "trailers", "204", "304", "hints", "head", "custom-reason", "599",
			"hop-by-hop", "field-case-order", "query-bytes", "get-body", "options-max-forwards", "trace-max-forwards",
			"expect-continue", "expect-refused", "http1.0", "http1.0-keep-alive":
			p := c
			p.name, p.plain = "plain/"+c.name, true
			out = append(out, p)
		}
	}
	return out
}

// hopByHopFields are the fields RFC 9110 §7.6.1 and RFC 9112 have each
// hop set for itself; a proxy removes or replaces them. TE is the
// exception the gateway keeps as "trailers" (gRPC needs it).
var hopByHopFields = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Transfer-Encoding": true, "Upgrade": true, "Te": true,
}

// fieldLine is one "Name: value" line with its name in canonical case.
type fieldLine struct{ name, value string }

func (f fieldLine) String() string { return f.name + ": " + f.value }

// normaliseFields applies the documented differences every header
// section may show (docs/clients.md, "What the gateway changes on the
// wire"): names in canonical case, and fields of different names in any
// order (RFC 9110 §5.3: only the order of same-name lines matters, and
// that is kept).
func normaliseFields(lines []string) []fieldLine {
	var out []fieldLine
	for _, l := range lines {
		k, v, _ := strings.Cut(l, ":")
		out = append(out, fieldLine{textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)), strings.TrimSpace(v)})
	}
	slices.SortStableFunc(out, func(a, b fieldLine) int { return strings.Compare(a.name, b.name) })
	return out
}

// normaliseOrigin renders what the origin received, taking away what the
// docs say differs there: the Host field (the origin's name, not
// 127.0.0.1:PORT), the injected credential, the HTTP version of the
// request line (a proxy sends its own, RFC 9110 §6.2), and field case
// and order. On the direct side (direct), the hop-by-hop fields and those
// Connection names are taken away too, and TE becomes "trailers" when it
// holds it, as a proxy forwards it: the gateway's side must then show
// none of them but that.
func normaliseOrigin(exs []originExchange, token string, direct bool) []string {
	var out []string
	for _, ex := range exs {
		rl := ex.RequestLine
		if i := strings.LastIndex(rl, " HTTP/"); i >= 0 {
			rl = rl[:i]
		}
		if path, query, ok := strings.Cut(rl, "?"); ok && direct {
			// The pairs holding a ';' are not forwarded (docs/clients.md).
			var kept []string
			for pair := range strings.SplitSeq(query, "&") {
				if !strings.Contains(pair, ";") {
					kept = append(kept, pair)
				}
			}
			rl = path
			if len(kept) > 0 {
				rl += "?" + strings.Join(kept, "&")
			}
		}
		out = append(out, "request: "+rl)
		fields := normaliseFields(ex.Fields)
		named := map[string]bool{}
		for _, f := range fields {
			if f.name == "Connection" {
				for _, n := range strings.Split(f.value, ",") {
					named[textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(n))] = true
				}
			}
		}
		for _, f := range fields {
			switch {
			case f.name == "Host":
				f.value = "HOST"
			case f.name == "Authorization" && f.value == "Bearer "+token:
				continue
			case f.name == "User-Agent" && f.value == "Go-http-client/2.0":
				// Go's client names the protocol it speaks: HTTP/2 to
				// the gateway, HTTP/1.1 straight to the origin.
				f.value = "Go-http-client/1.1"
			case direct && f.name == "Te":
				if !slices.ContainsFunc(strings.Split(f.value, ","), func(s string) bool { return strings.EqualFold(strings.TrimSpace(s), "trailers") }) {
					continue
				}
				f.value = "trailers"
			case direct && (hopByHopFields[f.name] || named[f.name]):
				continue
			}
			out = append(out, f.String())
		}
		out = append(out, "body: "+strconv.Quote(ex.Body))
		for _, tr := range ex.Trailers {
			out = append(out, "trailer: "+tr)
		}
		// A client may send the body without waiting for 100 Continue
		// (Python does); the gateway must not forward it once the origin
		// refused: the direct side's bytes are no expectation.
		if ex.AfterRefusal != "" && !direct {
			out = append(out, "after refusal: "+strconv.Quote(ex.AfterRefusal))
		}
	}
	return out
}

// normaliseViews takes away, from both client views, what the docs say
// may differ in an answer: each response's hop-by-hop fields and framing
// (the gateway may re-frame a body, RFC 9112 §6.1), the reason phrase
// (RFC 9110 §15.1: intermediaries may rewrite it, clients ignore it), a
// Date the gateway added where the origin sent none (RFC 9110 §6.6.1
// requires it), a Content-Length on a 204 (RFC 9110 §8.6: never sent
// there) nor, to an HTTP/2 client, on a 304, and field case and order.
func normaliseViews(direct, gw clientView, h2 bool) (clientView, clientView) {
	hasDate := slices.ContainsFunc(direct, func(l string) bool { return strings.HasPrefix(strings.ToLower(l), "date:") })
	norm := func(v clientView) clientView {
		var out clientView
		var block []string
		status := ""
		flush := func() {
			for _, f := range normaliseFields(block) {
				if hopByHopFields[f.name] || (f.name == "Date" && !hasDate) || (f.name == "Content-Length" && (status == "204" || h2 && status == "304")) {
					continue
				}
				out = append(out, f.String())
			}
			block = nil
		}
		for i, l := range v {
			switch {
			case strings.HasPrefix(l, "HTTP/") || (i == 0 || v[i-1] == "--") && !strings.Contains(l, ":"):
				flush()
				// "HTTP/1.1 200 OK", "200 OK" (Python) or "103" (Go's 1xx).
				f := strings.Fields(l)
				if len(f) > 0 && strings.HasPrefix(f[0], "HTTP/") {
					f = f[1:]
				}
				if len(f) > 0 {
					status = f[0]
				}
				out = append(out, "status "+status)
			case l == "--" || strings.HasPrefix(l, "body") || strings.HasPrefix(l, "length ") || strings.HasPrefix(l, "error:") || l == "trailers:":
				flush()
				if strings.HasPrefix(l, "length ") {
					l, _, _ = strings.Cut(l, ", transfer-encoding")
				}
				out = append(out, l)
			default:
				block = append(block, l)
			}
		}
		flush()
		return out
	}
	return norm(direct), norm(gw)
}

// TestFidelityDifferential: see the comment at the top of the file.
func TestFidelityDifferential(t *testing.T) {
	t.Parallel()
	o := startFidelityOrigin(t)
	e := startEnv(t, envOptions{Policy: fidelityPolicy, Resolve: map[string]string{
		apiHost + ":443":  o.tlsAddr,
		plainHost + ":80": o.plainAddr,
	}})
	// The origin's leaf names 127.0.0.1: direct clients reach it there.
	direct := map[bool]fidelityTarget{
		false: {BaseURL: "https://" + o.tlsAddr, CAFile: originCACert},
		true:  {BaseURL: "http://" + o.plainAddr, CAFile: originCACert},
	}
	proxied := map[bool]fidelityTarget{
		false: {BaseURL: "https://" + apiHost, Proxy: e.proxyURL, CAFile: gwCACert},
		true:  {BaseURL: "http://" + plainHost, Proxy: e.proxyURL, CAFile: gwCACert},
	}
	fidelityClients := []fidelityClient{fidelityCurl{}, fidelityGo{}, fidelityGo{h2: true}, fidelityPython{}}
	total, failed := 0, 0
	for _, cell := range fidelityCells() {
		for _, c := range fidelityClients {
			if !c.Supports(cell.req) {
				continue
			}
			total++
			t.Run(cell.name+"/"+c.Name(), func(t *testing.T) {
				o.take(t)
				wantView := c.Do(t, direct[cell.plain], cell.req)
				wantOrigin := o.take(t)
				gotView := c.Do(t, proxied[cell.plain], cell.req)
				gotOrigin := o.take(t)
				wantView, gotView = normaliseViews(wantView, gotView, cell.req.Proto == "2")
				wantLines, gotLines := normaliseOrigin(wantOrigin, e.token, true), normaliseOrigin(gotOrigin, e.token, false)
				bad := false
				if d := diffLines(wantView, gotView); d != "" {
					bad = true
					t.Errorf("the client saw a different answer through the gateway (-direct +gateway):\n%s", d)
				}
				if d := diffLines(wantLines, gotLines); d != "" {
					bad = true
					t.Errorf("the origin received a different request through the gateway (-direct +gateway):\n%s", d)
				}
				if bad {
					failed++
				}
			})
		}
	}
	t.Logf("%d of %d cells differ", failed, total)
}

// diffLines is a line diff of want and got, "" when equal.
func diffLines(want, got []string) string {
	if slices.Equal(want, got) {
		return ""
	}
	var b strings.Builder
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case i < len(want) && j < len(got) && want[i] == got[j]:
			fmt.Fprintf(&b, "  %.200s\n", want[i])
			i, j = i+1, j+1
		case i < len(want) && !slices.Contains(got[j:], want[i]):
			fmt.Fprintf(&b, "- %.200s\n", want[i])
			i++
		case j < len(got):
			fmt.Fprintf(&b, "+ %.200s\n", got[j])
			j++
		default:
			fmt.Fprintf(&b, "- %.200s\n", want[i])
			i++
		}
	}
	return b.String()
}
