package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// auditFor returns the audit line of the request to path, nil before it
// is written.
func auditFor(tg *testGateway, path string) map[string]any {
	for line := range strings.SplitSeq(tg.audit.String(), "\n") {
		if !strings.Contains(line, `"path":"`+path+`"`) {
			continue
		}
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil && ev["path"] == path {
			return ev
		}
	}
	return nil
}

// wantAudited waits for the audit line of the request to path and checks
// its status and code.
func wantAudited(t *testing.T, tg *testGateway, path string, status int, code string) {
	t.Helper()
	var ev map[string]any
	waitFor(t, 10*time.Second, "the audit line of "+path, func() bool {
		ev = auditFor(tg, path)
		return ev != nil
	})
	if ev["status"] != float64(status) || ev["code"] != code {
		t.Errorf("%s audited with status %v code %v, want %d %s", path, ev["status"], ev["code"], status, code)
	}
}

// TestClientLeavesMidBody is the class of "the client went away while
// sending its request body": whichever reader of the body met the end (an
// injector reading it to sign, placeholder substitution, the upstream
// client sending a small body whole or streaming a large one), however
// the body was framed and however the connection ended (FIN, RST, or a
// half-close of a client still reading, which is told so), the request is
// audited as the client's doing, 499 client_aborted, never as an upstream
// or injection failure. A body whose framing is malformed, with the
// client still there, is answered 400 bad_request. Before, the first were
// audited 502 upstream_error or inject_failed, or 400.
func TestClientLeavesMidBody(t *testing.T) {
	tg, _ := startPlaceholderGateway(t, false)
	type reader struct {
		name, host, prefix string
	}
	readers := []reader{
		{"signs the body (hmac)", apiHost, "/signed/"},
		{"placeholder substitution", apiHost, "/ph/"},
		{"upstream client (bearer)", secondHost, "/plain/"},
	}
	type framing struct {
		name string
		head string // after the request line
		sent string // the part of the body sent before leaving
	}
	framings := []framing{
		{"small length", "Content-Length: 100\r\n", strings.Repeat("a", 10)},
		{"large length", "Content-Length: 1048576\r\n", strings.Repeat("b", 40<<10)},
		{"chunked", "Transfer-Encoding: chunked\r\n", "a\r\n0123456789\r\n40\r\n0123456789"},
	}
	n := 0
	for _, rd := range readers {
		for _, fr := range framings {
			for _, how := range []string{"close", "reset", "half-close"} {
				n++
				path := fmt.Sprintf("%sleave-%d", rd.prefix, n)
				arrived := make(chan struct{}, 1)
				tg.origin.route(path, func(w http.ResponseWriter, r *http.Request) {
					select {
					case arrived <- struct{}{}:
					default:
					}
					_, _ = io.Copy(io.Discard, r.Body)
				})
				t.Run(fmt.Sprintf("%s/%s/%s", rd.name, fr.name, how), func(t *testing.T) {
					c, br := h1TunnelTo(t, tg, rd.host)
					fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\n%s\r\n%s", path, rd.host, fr.head, fr.sent)
					if fr.name == "large length" && rd.prefix == "/plain/" {
						// The streamed body: leave once the upstream request is under way.
						select {
						case <-arrived:
						case <-time.After(5 * time.Second):
							t.Fatal("the streamed request did not reach the origin")
						}
					}
					switch how {
					case "reset":
						// An abortive close: RST, not FIN (SO_LINGER 0).
						_ = c.NetConn().(*net.TCPConn).SetLinger(0)
						_ = c.NetConn().Close()
					case "half-close":
						// close_notify and FIN, still reading: the answer
						// must say what happened, never a made-up 200.
						if err := c.CloseWrite(); err != nil {
							t.Fatal(err)
						}
						resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
						if err != nil {
							t.Fatalf("reading the answer: %v", err)
						}
						b, _ := io.ReadAll(resp.Body)
						if resp.StatusCode != statusClientClosed || resp.Header.Get(ReasonHeader) != codeRequestBodyAborted {
							t.Errorf("answer %d %q, want %d %s", resp.StatusCode, b, statusClientClosed, codeRequestBodyAborted)
						}
					default:
						_ = c.Close()
					}
					wantAudited(t, tg, path, statusClientClosed, codeRequestBodyAborted)
				})
			}
		}
	}

	// The client is still there but the body's chunked framing is
	// malformed: its fault, said to it.
	for _, rd := range readers {
		n++
		path := fmt.Sprintf("%smalformed-%d", rd.prefix, n)
		tg.origin.route(path, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
		})
		t.Run(rd.name+"/malformed chunked", func(t *testing.T) {
			c, br := h1TunnelTo(t, tg, rd.host)
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\nzz\r\n", path, rd.host)
			resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), codeBadRequest) {
				t.Errorf("answer %d %q, want 400 %s", resp.StatusCode, b, codeBadRequest)
			}
			wantAudited(t, tg, path, http.StatusBadRequest, codeBadRequest)
		})
	}

	// HTTP/2: the client cancels the stream mid-body (RST_STREAM).
	t.Run("http2 stream cancelled", func(t *testing.T) {
		path := "/plain/leave-h2"
		arrived := make(chan struct{}, 1)
		tg.origin.route(path, func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			_, _ = io.Copy(io.Discard, r.Body)
		})
		pr, pw := io.Pipe()
		defer pw.Close()
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+secondHost+path, pr)
		req.ContentLength = 1 << 20
		done := make(chan error, 1)
		go func() {
			resp, err := tg.client(t, true).Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		_, _ = pw.Write(make([]byte, 20<<10))
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("the streamed request did not reach the origin")
		}
		cancel()
		<-done
		wantAudited(t, tg, path, statusClientClosed, codeRequestBodyAborted)
	})
}

// FuzzClientBodyBlame is the class behind TestClientLeavesMidBody, for any
// body on the wire: a request body of either framing (Content-Length, or
// raw bytes sent as a chunked body), sent whole or cut anywhere, the client
// then waiting, closing or half-closing, through each reader of the body
// (an injector signing it, placeholder substitution, the upstream client).
// The origin is healthy and reads every body whole, so the outcome is
// never blamed on it or on the injector (upstream_*, inject_failed): a
// body cut short is client_aborted (499) and never answered 200, a
// malformed chunked one bad_request (400), a whole one reaches the origin.
func FuzzClientBodyBlame(f *testing.F) {
	f.Add(uint8(0), false, []byte("0123456789"), uint16(10), uint8(0))
	f.Add(uint8(1), false, []byte("0123456789"), uint16(4), uint8(1))
	f.Add(uint8(2), false, []byte("0123456789"), uint16(0), uint8(2))
	f.Add(uint8(2), true, []byte("a\r\n0123456789\r\n0\r\n\r\n"), uint16(999), uint8(2))
	f.Add(uint8(0), true, []byte("a\r\n0123456789\r\nzz\r\n"), uint16(999), uint8(2))
	f.Add(uint8(1), true, []byte("5\r\n012"), uint16(999), uint8(1))
	tg, _ := startPlaceholderGateway(f, false)
	type reader struct{ host, prefix string }
	readers := []reader{{apiHost, "/signed/"}, {apiHost, "/ph/"}, {secondHost, "/plain/"}}
	var n atomic.Int64
	blamed := []string{codeUpstreamError, codeUpstreamTimeout, codeUpstreamUnreach, codeInjectFailed}
	f.Fuzz(func(t *testing.T, which uint8, chunked bool, body []byte, cut uint16, how uint8) {
		rd := readers[int(which)%len(readers)]
		path := fmt.Sprintf("%sfuzz-%d", rd.prefix, n.Add(1))
		tg.origin.route(path, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
		})
		sent := body[:min(int(cut), len(body))]
		whole := len(sent) == len(body)
		mode := how % 3 // 0: wait for the answer, 1: close, 2: half-close
		if (chunked || !whole) && mode == 0 {
			// A client that stalls mid-body is limits.body_idle_timeout's
			// case (TestBodyIdleTimeout), and a chunked body may never
			// end: here the client says it is done.
			mode = 2
		}
		framing := fmt.Sprintf("Content-Length: %d\r\n", len(body))
		if chunked {
			framing = "Transfer-Encoding: chunked\r\n"
		}
		c, br := h1TunnelTo(t, tg, rd.host)
		if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\n%s\r\n%s", path, rd.host, framing, sent); err != nil {
			t.Fatal(err)
		}
		answered := 0
		switch mode {
		case 1:
			_ = c.Close()
		case 2:
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			fallthrough
		default:
			if resp, err := http.ReadResponse(br, &http.Request{Method: "POST"}); err == nil {
				answered = resp.StatusCode
				_, _ = io.Copy(io.Discard, resp.Body)
			}
		}
		var ev map[string]any
		waitFor(t, 10*time.Second, "the audit line of "+path, func() bool {
			ev = auditFor(tg, path)
			return ev != nil
		})
		code, _ := ev["code"].(string)
		if slices.Contains(blamed, code) {
			t.Fatalf("%q (chunked %v, %d of %d bytes sent, mode %d): audited %v %s, blaming a healthy origin or the injector", path, chunked, len(sent), len(body), mode, ev["status"], code)
		}
		if !chunked && !whole && (code != codeRequestBodyAborted || answered == http.StatusOK) {
			t.Fatalf("%q: %d of %d bytes sent, then mode %d: audited %v %q, answered %d; want %d %s", path, len(sent), len(body), mode, ev["status"], code, answered, statusClientClosed, codeRequestBodyAborted)
		}
		if !chunked && whole && mode == 0 && ev["status"] != float64(http.StatusOK) && !strings.HasPrefix(code, "placeholder_") {
			t.Fatalf("%q: the whole body sent: audited %v %q, want 200", path, ev["status"], code)
		}
	})
}

// TestClientLeavesMidBodyPlain is TestClientLeavesMidBody on the plain
// proxy listener (absolute-form requests served by net/http's server, not
// the tunnel's): the same blame, whatever the server under the body.
func TestClientLeavesMidBodyPlain(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	})
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	const plainHost = "plain.origin.test"
	port := portOf(plain.Listener.Addr())
	pol := strings.Replace(testPolicy, "\ncredentials:\n", fmt.Sprintf("\n  plain:\n    hosts: [%s]\n    ports: [%s]\n    allow_private: true\ncredentials:\n", plainHost, port), 1)
	pol = strings.Replace(pol, "\nrules:\n", "\nrules:\n  - {name: plain, from: local, to: plain, inject: {credential: token, as: bearer}, plaintext: true}\n", 1)
	tg := startEdgeGatewayPolicy(t, h, nil, pol, fmt.Sprintf("%q: %q", plainHost+":"+port, plain.Listener.Addr().String()))
	n := 0
	for _, fr := range []struct{ name, head, sent string }{
		{"small length", "Content-Length: 100\r\n", strings.Repeat("a", 10)},
		{"large length", "Content-Length: 1048576\r\n", strings.Repeat("b", 40<<10)},
		{"chunked", "Transfer-Encoding: chunked\r\n", "a\r\n0123456789\r\n40\r\n0123456789"},
	} {
		for _, how := range []string{"close", "reset", "half-close"} {
			n++
			path := fmt.Sprintf("/leave-%d", n)
			t.Run(fr.name+"/"+how, func(t *testing.T) {
				c, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(15 * time.Second))
				fmt.Fprintf(c, "POST http://%s:%s%s HTTP/1.1\r\nHost: %s:%s\r\n%s\r\n%s", plainHost, port, path, plainHost, port, fr.head, fr.sent)
				switch how {
				case "reset":
					_ = c.(*net.TCPConn).SetLinger(0)
					_ = c.Close()
				case "half-close":
					_ = c.(*net.TCPConn).CloseWrite()
					if resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"}); err == nil && resp.StatusCode == http.StatusOK {
						t.Errorf("answered 200 to a body cut short")
					}
				default:
					_ = c.Close()
				}
				wantAudited(t, tg, path, statusClientClosed, codeRequestBodyAborted)
			})
		}
	}
	t.Run("malformed chunked", func(t *testing.T) {
		c, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		fmt.Fprintf(c, "POST http://%s:%s/malformed HTTP/1.1\r\nHost: %s:%s\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\nzz\r\n", plainHost, port, plainHost, port)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("answer %d, want 400", resp.StatusCode)
		}
		wantAudited(t, tg, "/malformed", http.StatusBadRequest, codeBadRequest)
	})
}
