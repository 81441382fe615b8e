package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// clientRequest is one request a client makes through the gateway.
type clientRequest struct {
	Method string // GET when empty
	URL    string
	Header http.Header
	// CAFile is the only CA the client trusts; the gateway CA when empty.
	CAFile string
	// Follow makes the client follow redirects.
	Follow bool
	// ProxyUserinfo, when set, goes into the proxy URL ("user:password").
	ProxyUserinfo string
	// PathAsIs asks curl not to squash /../ and /./ in the URL (Go and
	// Python send the path as written anyway).
	PathAsIs bool
	// HTTP1 asks curl for HTTP/1.1 inside the tunnel.
	HTTP1 bool
}

// clientResponse is what the client saw.
type clientResponse struct {
	// Status is the final HTTP status, 0 when there was none.
	Status int
	Header http.Header
	Body   string
	// Err is the client's own failure report (tunnel refused, TLS
	// verification failed, ...), "" on success.
	Err string
	// ConnectStatus is the status of a refused CONNECT when the client
	// reports it, 0 otherwise.
	ConnectStatus int
	// ConnectHeader holds the refused CONNECT response's headers when the
	// client exposes them (curl does).
	ConnectHeader http.Header
}

// client is a real HTTP client configured only through the environment.
type client interface {
	Name() string
	Do(t *testing.T, e *env, r clientRequest) clientResponse
}

var clients = []client{curlClient{}, goClient{}, pythonClient{}}

func (r clientRequest) method() string {
	if r.Method == "" {
		return http.MethodGet
	}
	return r.Method
}

func (r clientRequest) caFile() string {
	if r.CAFile == "" {
		return gwCACert
	}
	return r.CAFile
}

func (r clientRequest) proxyURL(e *env) string {
	if r.ProxyUserinfo == "" {
		return e.proxyURL
	}
	return "http://" + r.ProxyUserinfo + "@" + e.proxyAddr
}

// clientEnv is the process environment for an external client: the
// inherited one without any proxy settings, plus HTTPS_PROXY/HTTP_PROXY in
// both spellings (curl reads only the lower-case http_proxy).
func clientEnv(proxy string, extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR",
			"CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CREDGATE_E2E_TOKEN":
			continue
		}
		out = append(out, kv)
	}
	out = append(out, "HTTPS_PROXY="+proxy, "https_proxy="+proxy, "HTTP_PROXY="+proxy, "http_proxy="+proxy)
	return append(out, extra...)
}

var statusInError = regexp.MustCompile(`\b([45]\d\d)\b`)

// ---------------------------------------------------------------------------
// curl

type curlClient struct{}

func (curlClient) Name() string { return "curl" }

func (curlClient) Do(t *testing.T, e *env, r clientRequest) clientResponse {
	t.Helper()
	dir := t.TempDir()
	hdrFile, bodyFile := filepath.Join(dir, "headers"), filepath.Join(dir, "body")
	args := []string{"-sS", "--max-time", "20", "--cacert", r.caFile(),
		"-X", r.method(), "-D", hdrFile, "-o", bodyFile,
		"-w", "%{http_code} %{http_connect}"}
	if r.Follow {
		args = append(args, "-L")
	}
	if r.PathAsIs {
		args = append(args, "--path-as-is")
	}
	if r.HTTP1 {
		args = append(args, "--http1.1")
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			args = append(args, "-H", k+": "+v)
		}
	}
	args = append(args, r.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", args...)
	cmd.Env = clientEnv(r.proxyURL(e))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()

	var resp clientResponse
	var code, connect int
	fmt.Sscanf(stdout.String(), "%d %d", &code, &connect)
	blocks := headerBlocks(t, hdrFile)
	if runErr != nil {
		resp.Err = fmt.Sprintf("curl: %v: %s", runErr, strings.TrimSpace(stderr.String()))
		if connect >= 300 {
			resp.ConnectStatus = connect
			if len(blocks) > 0 {
				resp.ConnectHeader = blocks[len(blocks)-1].header
			}
		}
		return resp
	}
	resp.Status = code
	if len(blocks) > 0 {
		resp.Header = blocks[len(blocks)-1].header
	}
	body, _ := os.ReadFile(bodyFile)
	resp.Body = string(body)
	return resp
}

type headerBlock struct {
	status int
	header http.Header
}

// headerBlocks parses curl's -D dump: one block per response (proxy
// CONNECT answers included), in order.
func headerBlocks(t *testing.T, path string) []headerBlock {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []headerBlock
	for _, raw := range strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n\n") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		tp := textproto.NewReader(bufio.NewReader(strings.NewReader(raw + "\n\n")))
		first, err := tp.ReadLine()
		if err != nil {
			continue
		}
		f := strings.Fields(first)
		if len(f) < 2 {
			continue
		}
		status, _ := strconv.Atoi(f[1])
		h, _ := tp.ReadMIMEHeader()
		out = append(out, headerBlock{status: status, header: http.Header(h)})
	}
	return out
}

// ---------------------------------------------------------------------------
// Go net/http

type goClient struct{}

func (goClient) Name() string { return "go" }

// newGoClient returns a client whose proxy comes from the HTTPS_PROXY/
// HTTP_PROXY values (the http.ProxyFromEnvironment logic, without reading
// this process's environment, which parallel tests share) and which trusts
// only caFile.
func newGoClient(t *testing.T, proxy, caFile string, follow bool) *http.Client {
	t.Helper()
	pool, err := loadPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	proxyFunc := (&httpproxy.Config{HTTPSProxy: proxy, HTTPProxy: proxy}).ProxyFunc()
	tr := &http.Transport{
		Proxy:             func(req *http.Request) (*url.URL, error) { return proxyFunc(req.URL) },
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
		MaxIdleConns:      16,
		IdleConnTimeout:   30 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

func (goClient) Do(t *testing.T, e *env, r clientRequest) clientResponse {
	t.Helper()
	c := newGoClient(t, r.proxyURL(e), r.caFile(), r.Follow)
	// Go reports a refused CONNECT only as the status text; keep the
	// proxy's answer itself.
	var connectStatus int
	var connectHeader http.Header
	c.Transport.(*http.Transport).OnProxyConnectResponse = func(_ context.Context, _ *url.URL, _ *http.Request, res *http.Response) error {
		if res.StatusCode != http.StatusOK {
			connectStatus, connectHeader = res.StatusCode, res.Header.Clone()
		}
		return nil
	}
	req, err := http.NewRequest(r.method(), r.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if h := r.Header.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := c.Do(req)
	if err != nil {
		return clientResponse{Err: "go: " + err.Error(), ConnectStatus: connectStatus, ConnectHeader: connectHeader}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return clientResponse{Err: "go: read body: " + err.Error(), Status: resp.StatusCode}
	}
	return clientResponse{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// ---------------------------------------------------------------------------
// Python urllib

type pythonClient struct{}

func (pythonClient) Name() string { return "python" }

// pythonScript makes one request with urllib's default opener (which reads
// the proxy from the environment and, through ssl's default context,
// trusts SSL_CERT_FILE) and prints the result as JSON.
const pythonScript = `
import json, sys, urllib.request, urllib.error
spec = json.loads(sys.argv[1])
handlers = []
if not spec["follow"]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    handlers.append(NoRedirect)
opener = urllib.request.build_opener(*handlers)
req = urllib.request.Request(spec["url"], method=spec["method"])
for k, vs in (spec["headers"] or {}).items():
    for v in vs:
        req.add_header(k, v)
def headers(msg):
    out = {}
    for k, v in msg.items():
        out.setdefault(k, []).append(v)
    return out
try:
    with opener.open(req, timeout=20) as r:
        out = {"status": r.status, "headers": headers(r.headers), "body": r.read().decode("latin-1")}
except urllib.error.HTTPError as e:
    out = {"status": e.code, "headers": headers(e.headers), "body": e.read().decode("latin-1")}
except Exception as e:
    out = {"error": "%s: %s" % (type(e).__name__, e)}
print(json.dumps(out))
`

func (pythonClient) Do(t *testing.T, e *env, r clientRequest) clientResponse {
	t.Helper()
	spec, err := json.Marshal(map[string]any{
		"url": r.URL, "method": r.method(), "headers": r.Header, "follow": r.Follow,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "-c", pythonScript, string(spec))
	cmd.Env = clientEnv(r.proxyURL(e), "SSL_CERT_FILE="+r.caFile(), "PYTHONDONTWRITEBYTECODE=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	var out struct {
		Status  int
		Headers map[string][]string
		Body    string
		Error   string
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("python3 output %q: %v\n%s", stdout.String(), err, stderr.String())
	}
	resp := clientResponse{Status: out.Status, Body: out.Body}
	if out.Error != "" {
		resp.Err = "python: " + out.Error
		if m := statusInError.FindStringSubmatch(out.Error); m != nil {
			resp.ConnectStatus, _ = strconv.Atoi(m[1])
		}
		return resp
	}
	resp.Header = http.Header{}
	for k, vs := range out.Headers {
		for _, v := range vs {
			resp.Header.Add(k, v)
		}
	}
	return resp
}

// ---------------------------------------------------------------------------
// Raw proxy conversations, for what real clients cannot express.

// dialProxy opens a TCP connection to the gateway's proxy listener.
func dialProxy(t *testing.T, e *env) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConnect sends CONNECT target and returns the connection and the
// proxy's answer. The connection is ready for TLS when the status is 200.
func rawConnect(t *testing.T, e *env, target string, extra ...string) (net.Conn, *http.Response) {
	t.Helper()
	c := dialProxy(t, e)
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("read CONNECT response: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return c, resp
	}
	if br.Buffered() > 0 {
		t.Fatalf("proxy sent %d bytes after the CONNECT response before the client spoke", br.Buffered())
	}
	// A 2xx CONNECT answer has no body: what follows is the tunnel.
	resp.Body = http.NoBody
	return c, resp
}

// tunnelRequest does CONNECT target, TLS with sni trusting pool, and sends
// req inside. It returns the CONNECT answer when that is not 200, else the
// inner answer; handshakeErr is set when TLS failed.
func tunnelRequest(t *testing.T, e *env, target, sni string, pool *x509.CertPool, req *http.Request) (resp *http.Response, handshakeErr error) {
	t.Helper()
	c, cresp := rawConnect(t, e, target)
	if cresp.StatusCode != http.StatusOK {
		return cresp, nil
	}
	tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	if err := req.Write(tc); err != nil {
		t.Fatalf("write request in tunnel: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil {
		t.Fatalf("read response in tunnel: %v", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// denial is the JSON body of a gateway refusal.
type denial struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
	Rule   string `json:"rule"`
}

// checkDenial checks a refusal: status, X-Credgate-Reason and the JSON body
// agree on code. It returns the parsed body.
func checkDenial(t *testing.T, status int, header http.Header, body string, wantStatus int, wantCode, wantRule string) denial {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status = %d, want %d (body %q)", status, wantStatus, body)
	}
	if got := header.Get("X-Credgate-Reason"); got != wantCode {
		t.Errorf("X-Credgate-Reason = %q, want %q", got, wantCode)
	}
	var d denial
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Errorf("denial body is not JSON: %v: %q", err, body)
		return d
	}
	if d.Error != "forbidden" && wantStatus == http.StatusForbidden {
		t.Errorf("body error = %q, want forbidden", d.Error)
	}
	if d.Code != wantCode {
		t.Errorf("body code = %q, want %q", d.Code, wantCode)
	}
	if wantRule != "*" && d.Rule != wantRule {
		t.Errorf("body rule = %q, want %q", d.Rule, wantRule)
	}
	if d.Reason == "" {
		t.Errorf("body reason is empty")
	}
	return d
}

func isTLSVerifyError(err string) bool {
	for _, s := range []string{"certificate", "CERTIFICATE", "SSL", "x509", "verify"} {
		if strings.Contains(err, s) {
			return true
		}
	}
	return false
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

func readResponse(r io.Reader, req *http.Request) (*http.Response, error) {
	resp, err := http.ReadResponse(bufio.NewReader(r), req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
