package gateway

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Origin is an HTTP/2 origin on 127.0.0.1 whose frames a test writes by
// hand (golang.org/x/net/http2's Framer): what a hostile or broken server
// could send that Go's server never would. It speaks h2 alone (ALPN), so
// the gateway reaches it over HTTP/2 whatever its client speaks. Every
// request block it reads is counted, and those carrying want (the
// credential) apart.
type h2Origin struct {
	addr string
	// settings are sent first on every connection (set with
	// setSettings once serving).
	settings []http2.Setting
	// onHeaders answers one request block; it runs on the connection's
	// read loop and may start goroutines of its own, which must end when
	// c.done is closed.
	onHeaders func(c *h2OriginConn, f *http2.MetaHeadersFrame)
	want      string

	conns    atomic.Int32 // connections accepted
	requests atomic.Int32 // request header blocks read
	withCred atomic.Int32 // of which carried want

	mu   sync.Mutex
	open map[*h2OriginConn]bool
}

// setSettings sets what new connections are sent first.
func (o *h2Origin) setSettings(s ...http2.Setting) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.settings = s
}

// h2OriginConn is one connection of an h2Origin.
type h2OriginConn struct {
	o    *h2Origin
	c    net.Conn
	wmu  sync.Mutex
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	done chan struct{}
}

// startH2Origin serves o on 127.0.0.1 with pki's leaf until the test ends.
func startH2Origin(t testing.TB, pki *testPKI, o *h2Origin) *h2Origin {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pki.leaf}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	o.addr = ln.Addr().String()
	o.open = map[*h2OriginConn]bool{}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		o.mu.Lock()
		for c := range o.open {
			_ = c.c.Close()
		}
		o.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.conns.Add(1)
			wg.Go(func() { o.serve(c) })
		}
	})
	return o
}

func (o *h2Origin) serve(nc net.Conn) {
	c := &h2OriginConn{o: o, c: nc, done: make(chan struct{})}
	o.mu.Lock()
	o.open[c] = true
	o.mu.Unlock()
	defer func() {
		close(c.done)
		_ = nc.Close()
		o.mu.Lock()
		delete(o.open, c)
		o.mu.Unlock()
	}()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(nc, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	c.fr = http2.NewFramer(nc, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	o.mu.Lock()
	settings := o.settings
	o.mu.Unlock()
	c.write(func(fr *http2.Framer) error { return fr.WriteSettings(settings...) })
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.write(func(fr *http2.Framer) error { return fr.WritePing(true, f.Data) })
			}
		case *http2.MetaHeadersFrame:
			o.requests.Add(1)
			for _, hf := range f.Fields {
				if o.want != "" && strings.Contains(hf.Value, o.want) {
					o.withCred.Add(1)
					break
				}
			}
			if o.onHeaders != nil {
				o.onHeaders(c, f)
			}
		}
	}
}

// write runs fn with the connection's framer, one writer at a time; a
// failed write closes the connection.
func (c *h2OriginConn) write(fn func(fr *http2.Framer) error) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := fn(c.fr); err != nil {
		_ = c.c.Close()
		return false
	}
	return true
}

// block encodes fields (in order, names as given) as a header block.
func (c *h2OriginConn) block(fields ...[2]string) []byte {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hbuf.Reset()
	for _, f := range fields {
		_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// respond sends a complete response: status, fields, body.
func (c *h2OriginConn) respond(stream uint32, status string, body string, fields ...[2]string) {
	blk := c.block(append([][2]string{{":status", status}}, fields...)...)
	c.write(func(fr *http2.Framer) error {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: blk, EndHeaders: true, EndStream: body == ""}); err != nil {
			return err
		}
		if body == "" {
			return nil
		}
		return fr.WriteData(stream, true, []byte(body))
	})
}

// writeBlock sends a header block in frames of at most 16000 bytes
// (HEADERS, then CONTINUATION).
func (c *h2OriginConn) writeBlock(stream uint32, endStream bool, blk []byte) {
	c.write(func(fr *http2.Framer) error {
		n := min(len(blk), 16000)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: blk[:n], EndHeaders: n == len(blk), EndStream: endStream}); err != nil {
			return err
		}
		for rest := blk[n:]; len(rest) > 0; rest = rest[n:] {
			n = min(len(rest), 16000)
			if err := fr.WriteContinuation(stream, n == len(rest), rest[:n]); err != nil {
				return err
			}
		}
		return nil
	})
}
