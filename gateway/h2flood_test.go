package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2End is how an HTTP/2 connection the test drained ended.
type h2End struct {
	goAway  *http2.GoAwayFrame // the GOAWAY the gateway sent, if any
	closed  bool               // the connection ended (EOF or a reset)
	resets  map[http2.ErrCode]int
	status  map[string]int // final statuses of the streams answered
	frames  int
	elapsed time.Duration
}

// drain reads h's frames until the gateway closes the connection or
// within passes with nothing more to read, acknowledging SETTINGS.
func (h *h2Raw) drain(within time.Duration) h2End {
	e := h2End{resets: map[http2.ErrCode]int{}, status: map[string]int{}}
	t0 := time.Now()
	for {
		_ = h.c.SetReadDeadline(time.Now().Add(within))
		f, err := h.fr.ReadFrame()
		if err != nil {
			var ne interface{ Timeout() bool }
			e.closed = !(errors.As(err, &ne) && ne.Timeout())
			e.elapsed = time.Since(t0)
			return e
		}
		e.frames++
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			e.goAway = f
		case *http2.RSTStreamFrame:
			e.resets[f.ErrCode]++
		case *http2.HeadersFrame:
			fields, _ := h.dec.DecodeFull(f.HeaderBlockFragment())
			for _, hf := range fields {
				if hf.Name == ":status" && hf.Value[0] != '1' {
					e.status[hf.Value]++
				}
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		}
	}
}

func (e h2End) String() string {
	ga := "none"
	if e.goAway != nil {
		ga = e.goAway.ErrCode.String()
	}
	return fmt.Sprintf("GOAWAY %s, closed %v, resets %v, statuses %v, %d frames in %v", ga, e.closed, e.resets, e.status, e.frames, e.elapsed.Round(time.Millisecond))
}

// flood returns a framer writing to h's connection through a buffer, for
// many frames at once; flush sends what it holds.
func (h *h2Raw) flood() (*http2.Framer, *bufio.Writer) {
	bw := bufio.NewWriterSize(h.c, 64<<10)
	return http2.NewFramer(bw, nil), bw
}

// reqFields are the fields of a GET of path on apiHost.
func reqFields(path string, extra ...[2]string) [][2]string {
	return append([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", apiHost}, {":path", path}}, extra...)
}

// encode returns the HPACK block of fields with h's encoder.
func (h *h2Raw) encode(fields [][2]string) []byte {
	h.hbuf.Reset()
	for _, f := range fields {
		_ = h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return bytes.Clone(h.hbuf.Bytes())
}

// h2FloodCase is one abuse of the gateway's HTTP/2 server by a client
// (TestHTTP2ClientAbuse). run sends it on h and checks what it must;
// maxOrigin bounds the requests that may reach the origin.
type h2FloodCase struct {
	name      string
	maxOrigin int
	run       func(t *testing.T, h *h2Raw)
}

func h2FloodCases() []h2FloodCase {
	wantClosed := func(t *testing.T, e h2End, code http2.ErrCode) {
		t.Helper()
		if !e.closed || (e.goAway != nil && e.goAway.ErrCode != code) {
			t.Errorf("the connection: %s; want it closed (GOAWAY %s)", e, code)
		}
	}
	// wantEnded: the connection ended, by the flood or by
	// limits.idle_timeout (2s here): nothing holds it open.
	wantEnded := func(t *testing.T, e h2End) {
		t.Helper()
		t.Logf("%s", e)
		if !e.closed {
			t.Errorf("the connection is still open: %s", e)
		}
	}
	return []h2FloodCase{
		{name: "rapid_reset", maxOrigin: 5000, run: func(t *testing.T, h *h2Raw) {
			// CVE-2023-44487: HEADERS and RST_STREAM at once, without end.
			fr, bw := h.flood()
			blk := h.encode(reqFields("/v1/rapid"))
			for i := range 5000 {
				id := uint32(1 + 2*i)
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
				_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
			if err := bw.Flush(); err != nil {
				t.Logf("flood write: %v", err)
			}
			t.Logf("%s", h.drain(3*time.Second))
		}},
		{name: "continuation_flood", run: func(t *testing.T, h *h2Raw) {
			// CVE-2024-27316: a header block that never ends, in 1 KiB
			// fields, past limits.max_header_bytes.
			fr, bw := h.flood()
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.encode(reqFields("/v1/cont"))})
			for i := range 2000 {
				_ = fr.WriteContinuation(1, false, h.encode([][2]string{{fmt.Sprintf("x-c%d", i), strings.Repeat("c", 1024)}}))
			}
			_ = bw.Flush()
			wantClosed(t, h.drain(5*time.Second), http2.ErrCodeProtocol)
		}},
		{name: "continuation_empty_endless", run: func(t *testing.T, h *h2Raw) {
			// Empty CONTINUATION frames, as fast as they go for 2 s:
			// nothing counts against the header size.
			fr, bw := h.flood()
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.encode(reqFields("/v1/cont-empty"))})
			n := 0
			for t0 := time.Now(); time.Since(t0) < 2*time.Second; n++ {
				if fr.WriteContinuation(1, false, nil) != nil {
					break
				}
			}
			_ = bw.Flush()
			e := h.drain(5 * time.Second)
			t.Logf("%d empty CONTINUATION frames", n)
			wantEnded(t, e)
		}},
		{name: "hpack_bomb", run: func(t *testing.T, h *h2Raw) {
			// One 4 KiB field in the dynamic table, then a block of 4000
			// one-byte references to it: 16 MiB decoded from 4 KB.
			var blk bytes.Buffer
			enc := hpack.NewEncoder(&blk)
			for _, f := range reqFields("/v1/bomb") {
				_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			_ = enc.WriteField(hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 4000)})
			b := blk.Bytes()
			for range 4000 {
				b = append(b, 0x80|62) // indexed: the newest dynamic entry
			}
			h.writeBlock(1, b)
			e := h.drain(3 * time.Second)
			if e.status["200"] != 0 {
				t.Errorf("a 16 MiB header block was answered 200: %s", e)
			}
			t.Logf("%s", e)
		}},
		{name: "hpack_table_size_update_over_settings", run: func(t *testing.T, h *h2Raw) {
			// A dynamic table size update larger than the server allows
			// (4096): COMPRESSION_ERROR.
			b := []byte{0x3f, 0xe1, 0xff, 0x03} // a size update to 65536
			b = append(b, h.encode(reqFields("/v1/tsu"))...)
			h.writeBlock(1, b)
			wantClosed(t, h.drain(3*time.Second), http2.ErrCodeCompression)
		}},
		{name: "settings_extremes", maxOrigin: 1, run: func(t *testing.T, h *h2Raw) {
			// The largest header table, frames and window a client may
			// announce, and a header list limit of one byte; then a
			// request. The server's encoder keeps its own table limit.
			_ = h.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 1<<32 - 1}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1<<24 - 1},
				http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}, http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: 1})
			h.headers(1, reqFields("/v1/extremes"), true)
			t.Logf("%s", h.drain(3*time.Second))
		}},
		{name: "settings_flood", run: func(t *testing.T, h *h2Raw) {
			// SETTINGS without reading the acknowledgements.
			fr, bw := h.flood()
			for range 50000 {
				if fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535}) != nil {
					break
				}
			}
			_ = bw.Flush()
			wantEnded(t, h.drain(5*time.Second))
		}},
		{name: "ping_flood", run: func(t *testing.T, h *h2Raw) {
			fr, bw := h.flood()
			for range 50000 {
				if fr.WritePing(false, [8]byte{1}) != nil {
					break
				}
			}
			_ = bw.Flush()
			wantEnded(t, h.drain(5*time.Second))
		}},
		{name: "window_update_flood_overflow", run: func(t *testing.T, h *h2Raw) {
			fr, bw := h.flood()
			for range 20000 {
				_ = fr.WriteWindowUpdate(0, 1)
			}
			_ = fr.WriteWindowUpdate(0, 1<<31-1)
			_ = bw.Flush()
			wantClosed(t, h.drain(3*time.Second), http2.ErrCodeFlowControl)
		}},
		{name: "priority_flood", maxOrigin: 1, run: func(t *testing.T, h *h2Raw) {
			// PRIORITY frames for 50,000 idle streams, each depending on
			// the one before; then a request on the connection.
			fr, bw := h.flood()
			for i := range 50000 {
				id := uint32(3 + 2*i)
				_ = fr.WritePriority(id, http2.PriorityParam{StreamDep: id - 2, Weight: 255})
			}
			_ = bw.Flush()
			h.headers(1, reqFields("/v1/after-priorities"), true)
			e := h.drain(2 * time.Second)
			if e.status["200"] != 1 {
				t.Errorf("the request after the PRIORITY frames: %s", e)
			}
		}},
		{name: "exceed_max_concurrent_streams", maxOrigin: 250, run: func(t *testing.T, h *h2Raw) {
			// 300 streams to a path whose origin holds its answer open
			// (10 s, past the drain): those past
			// SETTINGS_MAX_CONCURRENT_STREAMS (250) are refused. (Streams
			// whose bodies never came ended after body_idle_timeout, 1 s
			// here, and a loaded machine then admitted later ones.)
			fr, bw := h.flood()
			blk := h.encode(reqFields("/stream"))
			for i := range 300 {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(1 + 2*i), BlockFragment: blk, EndStream: true, EndHeaders: true})
			}
			_ = bw.Flush()
			e := h.drain(3 * time.Second)
			// RFC 9113 §5.1.2: REFUSED_STREAM or PROTOCOL_ERROR. Go's
			// server sends the first while our SETTINGS are unacknowledged
			// and the second after: which one depends on when the
			// client's ACK is read, so under load either comes.
			if n := e.resets[http2.ErrCodeRefusedStream] + e.resets[http2.ErrCodeProtocol]; n < 50 {
				t.Errorf("the streams past 250: %s; want 50 refused", e)
			}
			t.Logf("%s", e)
		}},
		{name: "stream_never_finished", maxOrigin: 1, run: func(t *testing.T, h *h2Raw) {
			// A body announced and never sent: limits.body_idle_timeout.
			h.headers(1, append(reqFields("/echo"), [2]string{"content-length", "10"}), false)
			e := h.drain(5 * time.Second)
			if e.status["408"] != 1 && e.resets[http2.ErrCodeCancel]+e.resets[http2.ErrCodeInternal] == 0 {
				t.Errorf("a body that never comes: %s; want 408 or a reset", e)
			}
			t.Logf("%s", e)
		}},
		{name: "data_after_end_stream", maxOrigin: 2, run: func(t *testing.T, h *h2Raw) {
			h.headers(1, reqFields("/v1/ended"), true)
			_ = h.fr.WriteData(1, false, []byte("after the end"))
			h.headers(3, reqFields("/v1/next"), true)
			e := h.drain(2 * time.Second)
			if e.goAway == nil && e.status["200"] == 0 {
				t.Errorf("data after END_STREAM: %s", e)
			}
			t.Logf("%s", e)
		}},
		{name: "header_list_over_max_header_bytes", run: func(t *testing.T, h *h2Raw) {
			// 100 KiB of fields against limits.max_header_bytes (64 KiB).
			fields := reqFields("/v1/big")
			for i := range 100 {
				fields = append(fields, [2]string{fmt.Sprintf("x-big%d", i), strings.Repeat("h", 1024)})
			}
			h.writeBlock(1, h.encode(fields))
			e := h.drain(3 * time.Second)
			if e.status["200"] != 0 {
				t.Errorf("100 KiB of header fields: %s; want 431 or a reset", e)
			}
			t.Logf("%s", e)
		}},
		{name: "trailers_forbidden_fields", maxOrigin: 1, run: func(t *testing.T, h *h2Raw) {
			// Trailers naming pseudo-header, framing and credential
			// fields.
			h.headers(1, [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", apiHost}, {":path", "/v1/trailers"}}, false)
			_ = h.fr.WriteData(1, false, []byte("body"))
			h.hbuf.Reset()
			for _, f := range [][2]string{{"authorization", "Bearer client-chosen"}, {"content-length", "1"}, {"host", "other.example"}, {"transfer-encoding", "chunked"}} {
				_ = h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.hbuf.Bytes(), EndStream: true, EndHeaders: true})
			t.Logf("%s", h.drain(2*time.Second))
		}},
	}
}

// writeBlock sends a header block on stream in frames of 16 KB (HEADERS
// with END_STREAM, then CONTINUATION).
func (h *h2Raw) writeBlock(stream uint32, blk []byte) {
	fr, bw := h.flood()
	n := min(len(blk), 16000)
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: blk[:n], EndHeaders: n == len(blk), EndStream: true})
	for rest := blk[n:]; len(rest) > 0; rest = rest[n:] {
		n = min(len(rest), 16000)
		_ = fr.WriteContinuation(stream, n == len(rest), rest[:n])
	}
	_ = bw.Flush()
}

// TestHTTP2ClientAbuse: what an HTTP/2 client can do to the gateway's
// HTTP/2 server inside an intercepted tunnel (rapid reset, CONTINUATION
// floods, HPACK bombs and table games, SETTINGS, PING, WINDOW_UPDATE and
// PRIORITY floods, more streams than allowed, a body that never comes,
// DATA after the end, oversized header lists, forbidden trailers) costs
// it bounded time, memory and goroutines: after each, its goroutines and
// heap return to what they were, other clients are served, and no more
// requests reach the origin than the client sent whole.
func TestHTTP2ClientAbuse(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("limits: {idle_timeout: 2s, read_header_timeout: 2s, body_idle_timeout: 1s}\nresolve: {%q: %q}\n", apiHost+":443", tg.origin.addr))
	good := func() error {
		c := tg.client(t, true)
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + apiHost + "/v1/good")
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := good(); err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	settled := func(n int) bool {
		tg.gw.pools.Load().closeIdle()
		return runtime.NumGoroutine() <= n
	}
	waitFor(t, 10*time.Second, "the warm-up's connections closed", func() bool { return settled(40) })
	base, baseHeap := runtime.NumGoroutine(), heap()
	for _, tc := range h2FloodCases() {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tg.origin.all())
			auditFrom := len(tg.audit.String())
			h := h2RawTunnel(t, tg, apiHost)
			t0 := time.Now()
			tc.run(t, h)
			if err := good(); err != nil {
				t.Errorf("another client, after: %v", err)
			}
			_ = h.c.Close()
			if !poll.Within(10*time.Second, func() bool { return settled(base + 5) }) {
				t.Errorf("goroutines %d, base %d, 10 s after the connection closed", runtime.NumGoroutine(), base)
			}
			hp := heap()
			// Less the good one, and less rapid_reset's requests in other
			// cases: of its 5,000, those the server had started may reach
			// the origin after its connection closed.
			reached := -1
			for _, r := range tg.origin.all()[before:] {
				if r.Path != "/v1/rapid" || tc.name == "rapid_reset" {
					reached++
				}
			}
			t.Logf("%v; origin received %d; heap in use %d KiB (base %d KiB)", time.Since(t0).Round(time.Millisecond), reached, hp>>10, baseHeap>>10)
			if hp > baseHeap+32<<20 {
				t.Errorf("heap in use %d MiB after, base %d MiB", hp>>20, baseHeap>>20)
			}
			// What the server refused is audited (TestEveryHTTP2RefusalAuditedOnce).
			refused := map[string]int{}
			for l := range strings.SplitSeq(tg.audit.String()[auditFrom:], "\n") {
				var ev struct {
					Code       string
					HTTP2Error string `json:"http2_error"`
				}
				if json.Unmarshal([]byte(l), &ev) == nil && ev.Code == codeHTTP2Refused {
					refused[ev.HTTP2Error]++
				}
			}
			t.Logf("audited refusals: %v", refused)
			if reached > tc.maxOrigin {
				t.Errorf("the origin received %d requests, want at most %d", reached, tc.maxOrigin)
			}
		})
	}
}
