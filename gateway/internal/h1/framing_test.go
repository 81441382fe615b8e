package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// TestBothLengthsClose is the class "a request with both Content-Length
// and Transfer-Encoding" (RFC 9112 §6.1): the body is framed by the
// chunks and the connection closes after the response, whatever the
// fields' order, case, or how the header block arrives (whole, byte by
// byte, or held behind a pipelined request); with one of the fields, or
// Content-Length twice with one value, the connection stays open.
// http.ReadRequest leaves no trace of the pair (it deletes
// Content-Length), so before framingScan the connection stayed open.
func TestBothLengthsClose(t *testing.T) {
	addr := startServer(t, &Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s body=%q err=%v cl=%d te=%v", r.URL.Path, b, err, r.ContentLength, r.TransferEncoding)
	}))
	const chunked = "5\r\nhello\r\n0\r\n\r\n"
	tests := []struct {
		name   string
		fields string
		body   string
		status int    // 200 unless set
		want   string // what the handler read, for 200
		closes bool
	}{
		{"Content-Length then Transfer-Encoding", "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", chunked, 0, `body="hello" err=<nil> cl=-1 te=[chunked]`, true},
		{"Transfer-Encoding then Content-Length", "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", chunked, 0, `body="hello" err=<nil> cl=-1 te=[chunked]`, true},
		{"lower case, no space", "transfer-encoding:chunked\r\ncontent-length:3\r\n", chunked, 0, `body="hello" err=<nil> cl=-1 te=[chunked]`, true},
		{"upper case, fields apart", "CONTENT-LENGTH: 3\r\nX-A: b\r\nTRANSFER-ENCODING: chunked\r\n", chunked, 0, `body="hello" err=<nil> cl=-1 te=[chunked]`, true},
		{"Content-Length 0 and chunked", "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", chunked, 0, `body="hello" err=<nil> cl=-1 te=[chunked]`, true},
		{"bare LF line ends", "Content-Length: 3\nTransfer-Encoding: chunked\n", chunked, 0, `body="hello" err=<nil> cl=-1 te=[chunked]`, true},
		{"chunked, identity and Content-Length", "Content-Length: 3\r\nTransfer-Encoding: chunked, identity\r\n", chunked, http.StatusBadRequest, "", true},
		{"Content-Length twice, one value", "Content-Length: 5\r\nContent-Length: 5\r\n", "hello", 0, `body="hello" err=<nil> cl=5 te=[]`, false},
		{"only Transfer-Encoding", "Transfer-Encoding: chunked\r\n", chunked, 0, `body="hello" err=<nil> cl=-1 te=[chunked]`, false},
		{"only Content-Length", "Content-Length: 5\r\n", "hello", 0, `body="hello" err=<nil> cl=5 te=[]`, false},
		{"the names inside values", "X-Note: content-length: 3\r\nX-Te: transfer-encoding: chunked\r\nContent-Length: 5\r\n", "hello", 0, `body="hello" err=<nil> cl=5 te=[]`, false},
		{"field names that only start alike", "Content-Lengthy: 3\r\nTransfer-Encodings: x\r\nContent-Length: 5\r\n", "hello", 0, `body="hello" err=<nil> cl=5 te=[]`, false},
	}
	for _, tt := range tests {
		if tt.status == 0 {
			tt.status = http.StatusOK
		}
		for _, how := range []string{"whole", "byte by byte", "behind a pipelined request"} {
			t.Run(tt.name+"/"+how, func(t *testing.T) {
				c, br := dial(t, addr)
				req := "POST /p HTTP/1.1\r\nHost: x\r\n" + tt.fields + "\r\n" + tt.body
				switch how {
				case "whole":
					_, _ = io.WriteString(c, req)
				case "byte by byte":
					// Each byte its own segment, so the header block
					// reaches the server in many reads.
					_ = c.(*net.TCPConn).SetNoDelay(true)
					for i := range len(req) {
						if _, err := c.Write([]byte{req[i]}); err != nil {
							t.Fatal(err)
						}
					}
				default:
					_, _ = io.WriteString(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n"+req)
					if resp, body := readResp(t, br, "GET"); resp.StatusCode != http.StatusOK || resp.Close {
						t.Fatalf("the first request: %s close=%v %q", resp.Status, resp.Close, body)
					}
				}
				resp, body := readResp(t, br, "POST")
				if resp.StatusCode != tt.status {
					t.Fatalf("%s %q, want %d", resp.Status, body, tt.status)
				}
				if tt.status == http.StatusOK && body != "/p "+tt.want {
					t.Errorf("the handler read %q, want %q", body, "/p "+tt.want)
				}
				if resp.Close != tt.closes {
					t.Errorf("Connection: close %v, want %v", resp.Close, tt.closes)
				}
				if tt.closes {
					expectClosed(t, c, br, 5*time.Second)
					return
				}
				_, _ = io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
				if resp, body := readResp(t, br, "GET"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "/next ") {
					t.Fatalf("the next request on the kept connection: %s %q", resp.Status, body)
				}
			})
		}
	}
}

// FuzzFramingScan holds framingScan to Go's own header parser: for any
// request http.ReadRequest accepts, fed in any two pieces, the scan finds
// Content-Length and Transfer-Encoding exactly when textproto reads them
// from the header block (before ReadRequest deletes them).
func FuzzFramingScan(f *testing.F) {
	for _, s := range []string{
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n content-length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\nHost: a\nContent-Length: 3\n\nabc",
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nContent-Length: 3\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Lengt: 1\r\nTransfer-Encodin: x\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nHosts: a\r\nhost : b\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nX: y\r\nhOsT:\r\n\r\n",
	} {
		f.Add([]byte(s), uint16(17))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		if _, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data))); err != nil {
			return
		}
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
		if _, err := tp.ReadLine(); err != nil {
			t.Fatalf("ReadRequest read %q, textproto not its request line: %v", data, err)
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			t.Fatalf("ReadRequest read %q, textproto not its header: %v", data, err)
		}
		_, cl := h["Content-Length"]
		_, te := h["Transfer-Encoding"]
		_, host := h["Host"]
		var s framingScan
		i := int(cut) % (len(data) + 1)
		s.feed(data[:i])
		s.feed(data[i:])
		if s.cl != cl || s.te != te || s.host != host {
			t.Fatalf("%q cut at %d: scanned Content-Length %v, Transfer-Encoding %v, Host %v; textproto read %v, %v, %v", data, i, s.cl, s.te, s.host, cl, te, host)
		}
	})
}

// TestBrokenBodyAnnouncesClose is the class "a request body whose framing
// breaks while it is read" (a chunk size that is no hex number or
// overflows, a chunk's data not followed by CRLF, a bare LF after a chunk
// size): the handler's answer to the failed read says Connection: close,
// and the connection closes after it, so a client never sends a next
// request, nor takes the rest of the broken body for one. Before, the
// answer said nothing of the close that followed (the connection was
// closed all the same).
func TestBrokenBodyAnnouncesClose(t *testing.T) {
	addr := startServer(t, &Server{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "broken body", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "whole")
	}))
	for _, tt := range []struct{ name, body string }{
		{"size not hex", "zz\r\nhello\r\n0\r\n\r\n"},
		{"size overflows", "10000000000000005\r\nhello\r\n0\r\n\r\n"},
		{"data without CRLF", "5\r\nhelloXX0\r\n\r\n"},
		{"bare LF line ends", "5\nhello\n0\n\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, br := dial(t, addr)
			_, _ = io.WriteString(c, "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+tt.body+"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != http.StatusBadRequest || !resp.Close {
				t.Fatalf("%s %q, Connection: close %v; want 400 and close", resp.Status, body, resp.Close)
			}
			expectClosed(t, c, br, 5*time.Second)
		})
	}
}
