package gateway

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Raw is an HTTP/2 connection inside an intercepted tunnel whose frames
// the test writes by hand: Go's client would refuse to send what these
// tests send (malformed pseudo-header fields, connection-specific fields)
// and would retry a reset stream.
type h2Raw struct {
	t    *testing.T
	c    net.Conn // the TLS connection inside the tunnel
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	dec  *hpack.Decoder
}

// h2RawTunnel opens an intercepted tunnel to host, negotiates h2 and
// sends the preface and SETTINGS.
func h2RawTunnel(t *testing.T, tg *testGateway, host string) *h2Raw {
	t.Helper()
	tc := h2TLSTunnel(t, tg, host)
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	h := &h2Raw{t: t, c: tc, fr: http2.NewFramer(tc, tc)}
	h.enc = hpack.NewEncoder(&h.hbuf)
	h.dec = hpack.NewDecoder(4096, nil)
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// h2TLSTunnel opens an intercepted tunnel to host and negotiates h2: what
// is sent next is the client's.
func h2TLSTunnel(t *testing.T, tg *testGateway, host string) *tls.Conn {
	t.Helper()
	return h2TLSTunnelAs(t, tg, host, "")
}

// h2TLSTunnelAs is h2TLSTunnel with the CONNECT's Proxy-Authorization
// ("" for none).
func h2TLSTunnelAs(t *testing.T, tg *testGateway, host, proxyAuth string) *tls.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	auth := ""
	if proxyAuth != "" {
		auth = "Proxy-Authorization: " + proxyAuth + "\r\n"
	}
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n%s\r\n", host, host, auth)
	// The 200 to CONNECT, read byte by byte so that nothing after it is
	// taken from the TLS stream.
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		b := make([]byte, 1)
		if _, err := io.ReadFull(conn, b); err != nil {
			t.Fatalf("CONNECT: %v after %q", err, head)
		}
		head = append(head, b[0])
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		t.Fatalf("CONNECT: %q", head)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: host, RootCAs: tg.caPool, NextProtos: []string{"h2"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	return tc
}

// headers sends one HEADERS frame on stream with fields in order (names
// as given, pseudo-header fields included).
func (h *h2Raw) headers(stream uint32, fields [][2]string, endStream bool) {
	h.t.Helper()
	h.hbuf.Reset()
	for _, f := range fields {
		if err := h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: h.hbuf.Bytes(), EndStream: endStream, EndHeaders: true}); err != nil {
		h.t.Fatal(err)
	}
}

// h2Answer is what came back on one stream.
type h2Answer struct {
	Status  string
	Header  []hpack.HeaderField
	Body    []byte
	Reset   bool
	ErrCode http2.ErrCode
}

// read reads frames until every stream in want has ended (END_STREAM or
// RST_STREAM) and returns what each got; a GOAWAY fails the test.
func (h *h2Raw) read(want ...uint32) map[uint32]*h2Answer {
	h.t.Helper()
	got := map[uint32]*h2Answer{}
	open := map[uint32]bool{}
	for _, s := range want {
		open[s] = true
		got[s] = &h2Answer{}
	}
	for len(open) > 0 {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.t.Fatalf("reading frames: %v (still open %v)", err, open)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if a := got[f.StreamID]; a != nil {
				a.Reset, a.ErrCode = true, f.ErrCode
			}
			delete(open, f.StreamID)
		case *http2.HeadersFrame:
			fields, err := h.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				h.t.Fatal(err)
			}
			if a := got[f.StreamID]; a != nil {
				for _, hf := range fields {
					if hf.Name == ":status" && a.Status == "" {
						a.Status = hf.Value
					}
				}
				a.Header = append(a.Header, fields...)
			}
			if f.StreamEnded() {
				delete(open, f.StreamID)
			}
		case *http2.DataFrame:
			if a := got[f.StreamID]; a != nil {
				a.Body = append(a.Body, f.Data()...)
			}
			if f.StreamEnded() {
				delete(open, f.StreamID)
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			h.t.Fatalf("GOAWAY %v: the connection ended", f.ErrCode)
		}
	}
	return got
}

// Field returns the value of the answer's first field named name (any
// case), or "".
func (a *h2Answer) Field(name string) string {
	for _, f := range a.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}
