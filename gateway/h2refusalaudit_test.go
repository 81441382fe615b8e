package gateway

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Refusal is one thing an HTTP/2 client can send that the gateway's
// HTTP/2 server refuses before a handler runs (TestEveryHTTP2RefusalAuditedOnce).
type h2Refusal struct {
	name string
	send func(h *h2Raw, marker string)
	// class is the audit line's http2_error (docs/audit-and-metrics.md).
	class string
}

// h2Refusals are the HTTP/2 refusal kinds, each sent with a raw framer on
// a fresh tunnel: malformed pseudo-header fields and header blocks,
// frames the protocol forbids, flow-control and SETTINGS violations,
// HPACK and framing errors, connection-specific fields and a header list
// over limits.max_header_bytes.
func h2Refusals() []h2Refusal {
	get := func(path string, extra ...[2]string) [][2]string {
		return append([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", apiHost}, {":path", path}}, extra...)
	}
	fields := func(fs ...[2]string) func(h *h2Raw, _ string) {
		return func(h *h2Raw, _ string) { h.headers(1, fs, true) }
	}
	// raw sends a HEADERS frame whose block is blk, as is.
	raw := func(blk []byte) func(h *h2Raw, _ string) {
		return func(h *h2Raw, _ string) {
			_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true, EndHeaders: true})
		}
	}
	enc := func(fs [][2]string) []byte {
		var buf strings.Builder
		e := hpack.NewEncoder(&buf)
		for _, f := range fs {
			_ = e.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		return []byte(buf.String())
	}
	// secret is a credential-like value the client sends: it must not
	// reach the audit line (TestEveryHTTP2RefusalAuditedOnce).
	secret := [2]string{"authorization", "Bearer " + h2ClientSecret}
	return []h2Refusal{
		// Pseudo-header fields the server will not serve.
		{"scheme other than http(s)", func(h *h2Raw, m string) {
			h.headers(1, [][2]string{{":method", "GET"}, {":scheme", "ftp"}, {":authority", apiHost}, {":path", "/v1/" + m}}, true)
		}, "stream_PROTOCOL_ERROR_bad_path_method"},
		{"extended CONNECT", func(h *h2Raw, m string) {
			h.headers(1, [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":authority", apiHost}, {":path", "/v1/" + m}}, true)
		}, "stream_PROTOCOL_ERROR_bad_connect"},
		{"CONNECT with a :path", func(h *h2Raw, m string) {
			h.headers(1, [][2]string{{":method", "CONNECT"}, {":authority", apiHost}, {":path", "/v1/" + m}}, true)
		}, "stream_PROTOCOL_ERROR_bad_connect"},
		{"no :path", fields([2]string{":method", "GET"}, [2]string{":scheme", "https"}, [2]string{":authority", apiHost}), "stream_PROTOCOL_ERROR_bad_path_method"},
		{":path that does not parse", func(h *h2Raw, m string) { h.headers(1, get("/v1/"+m+"%x"), true) }, "stream_PROTOCOL_ERROR_bad_path"},
		{":authority and Host that differ", func(h *h2Raw, m string) { h.headers(1, get("/v1/"+m, [2]string{"host", "other.test"}), true) }, "stream_PROTOCOL_ERROR_authority_host_mismatch"},
		{"two Host fields", func(h *h2Raw, m string) {
			h.headers(1, get("/v1/"+m, [2]string{"host", apiHost}, [2]string{"host", apiHost}), true)
		}, "stream_PROTOCOL_ERROR_multiple_host_headers"},
		{"userinfo in :authority", func(h *h2Raw, m string) {
			h.headers(1, [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "user:" + h2ClientSecret + "@" + apiHost}, {":path", "/v1/" + m}}, true)
		}, "stream_PROTOCOL_ERROR_userinfo_in_authority"},
		{":authority that is no host", func(h *h2Raw, m string) {
			h.headers(1, [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a b"}, {":path", "/v1/" + m}}, true)
		}, "stream_PROTOCOL_ERROR_invalid_authority"},
		{"pseudo-header field after a regular one", fields([2]string{":method", "GET"}, [2]string{":scheme", "https"}, [2]string{"x-a", "1"}, [2]string{":authority", apiHost}, [2]string{":path", "/v1/x"}), "stream_PROTOCOL_ERROR"},
		{"unknown pseudo-header field", func(h *h2Raw, m string) { h.headers(1, append([][2]string{{":foo", "1"}}, get("/v1/"+m)...), true) }, "stream_PROTOCOL_ERROR"},
		{"two :path fields", func(h *h2Raw, m string) { h.headers(1, get("/v1/"+m, [2]string{":path", "/v1/y"}), true) }, "stream_PROTOCOL_ERROR"},
		// Field names and values the framer refuses.
		{"upper-case field name", func(h *h2Raw, m string) { h.headers(1, get("/v1/"+m, [2]string{"X-Upper", "1"}), true) }, "stream_PROTOCOL_ERROR"},
		{"control byte in a field value", func(h *h2Raw, m string) { h.headers(1, get("/v1/"+m, [2]string{"x-a", "a\x01b"}, secret), true) }, "stream_PROTOCOL_ERROR"},
		{"header list over max_header_bytes in CONTINUATION frames", func(h *h2Raw, m string) {
			h.writeBlock(1, enc(bigList(get("/v1/"+m))))
		}, "conn_PROTOCOL_ERROR"},
		{"field value over max_header_bytes", func(h *h2Raw, m string) {
			h.writeBlock(1, enc(get("/v1/"+m, [2]string{"x-big", strings.Repeat("a", 70<<10)})))
		}, "conn_COMPRESSION_ERROR"},
		// Fields the server answers itself (400, 431) with a handler
		// of its own: seen by h2Mirror.
		{"header list over max_header_bytes in one frame", func(h *h2Raw, m string) {
			_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.encode(bigList(get("/v1/"+m, secret))), EndStream: true, EndHeaders: true})
		}, h2ClassHeaderListTooLong},
		{"connection-specific field Connection", func(h *h2Raw, m string) { h.headers(1, get("/v1/"+m, secret, [2]string{"connection", "close"}), true) }, h2ClassConnectionField},
		{"connection-specific field Keep-Alive", func(h *h2Raw, m string) { h.headers(1, get("/v1/"+m, [2]string{"keep-alive", "1"}), true) }, h2ClassConnectionField},
		{"connection-specific field Proxy-Connection", func(h *h2Raw, m string) {
			h.headers(1, get("/v1/"+m, [2]string{"proxy-connection", "keep-alive"}), true)
		}, h2ClassConnectionField},
		{"connection-specific field Transfer-Encoding", func(h *h2Raw, m string) {
			h.headers(1, get("/v1/"+m, [2]string{"transfer-encoding", "chunked"}), true)
		}, h2ClassConnectionField},
		{"connection-specific field Upgrade", func(h *h2Raw, m string) { h.headers(1, get("/v1/"+m, [2]string{"upgrade", "websocket"}), true) }, h2ClassConnectionField},
		{"TE other than trailers", func(h *h2Raw, m string) { h.headers(1, get("/v1/"+m, [2]string{"te", "gzip"}, secret), true) }, h2ClassTE},
		{"two TE fields", func(h *h2Raw, m string) {
			h.headers(1, get("/v1/"+m, [2]string{"te", "trailers"}, [2]string{"te", "trailers"}), true)
		}, h2ClassTE},
		// Header blocks and frames the protocol forbids.
		{"HPACK block that does not decode", raw([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), "conn_COMPRESSION_ERROR"},
		{"CONTINUATION without HEADERS", func(h *h2Raw, _ string) { _ = h.fr.WriteContinuation(1, true, []byte{0x82}) }, "conn_PROTOCOL_ERROR"},
		{"frame larger than SETTINGS_MAX_FRAME_SIZE", func(h *h2Raw, _ string) {
			// A DATA frame header announcing 16 MiB - 1 on stream 1.
			_, _ = h.c.Write([]byte{0xff, 0xff, 0xff, byte(http2.FrameData), 0, 0, 0, 0, 1})
		}, "conn_FRAME_SIZE_ERROR"},
		{"HEADERS on an even stream", func(h *h2Raw, m string) { h.headers(2, get("/v1/"+m), true) }, "conn_PROTOCOL_ERROR_headers_even"},
		{"HEADERS depending on itself", func(h *h2Raw, m string) {
			_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.encode(get("/v1/" + m)), EndStream: true, EndHeaders: true,
				Priority: http2.PriorityParam{StreamDep: 1, Weight: 1}})
		}, "stream_PROTOCOL_ERROR_priority"},
		{"PRIORITY depending on itself", func(h *h2Raw, _ string) {
			_ = h.fr.WritePriority(3, http2.PriorityParam{StreamDep: 3, Weight: 1})
		}, "stream_PROTOCOL_ERROR_priority"},
		{"DATA on an idle stream", func(h *h2Raw, _ string) { _ = h.fr.WriteData(5, true, []byte("x")) }, "conn_PROTOCOL_ERROR_data_on_idle"},
		{"RST_STREAM on an idle stream", func(h *h2Raw, _ string) { _ = h.fr.WriteRSTStream(5, http2.ErrCodeCancel) }, "conn_PROTOCOL_ERROR_reset_idle_stream"},
		{"PING on a stream", func(h *h2Raw, _ string) {
			_ = h.fr.WriteRawFrame(http2.FramePing, 0, 1, make([]byte, 8))
		}, "frame_ping_has_stream"},
		{"PUSH_PROMISE from the client", func(h *h2Raw, _ string) {
			_ = h.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: []byte{0x82}, EndHeaders: true})
		}, "conn_PROTOCOL_ERROR_push_promise"},
		{"WINDOW_UPDATE of zero on the connection", func(h *h2Raw, _ string) {
			_ = h.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 0, 0})
		}, "frame_windowupdate_zero_inc_conn"},
		{"WINDOW_UPDATE overflowing the window", func(h *h2Raw, _ string) {
			_ = h.fr.WriteWindowUpdate(0, 1<<31-1)
		}, "conn_FLOW_CONTROL_ERROR"},
		{"SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1", func(h *h2Raw, _ string) {
			_ = h.fr.WriteRawFrame(http2.FrameSettings, 0, 0, []byte{0, byte(http2.SettingInitialWindowSize), 0x80, 0, 0, 0})
		}, "frame_settings_window_size_too_big"},
		{"SETTINGS with a setting twice", func(h *h2Raw, _ string) {
			_ = h.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15})
		}, "conn_PROTOCOL_ERROR_settings_big_or_dups"},
		{"SETTINGS ACK for nothing sent", func(h *h2Raw, _ string) {
			for range 3 {
				_ = h.fr.WriteSettingsAck()
			}
		}, "conn_PROTOCOL_ERROR_ack_mystery"},
		{"DATA padding longer than the frame", func(h *h2Raw, _ string) {
			// Both frames in one write: the server reads the DATA frame
			// right after the HEADERS it started the handler for, long
			// before that handler could have answered (written apart,
			// the origin's 200 sometimes came first under load).
			fr, bw := h.flood()
			blk := h.encode([][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", apiHost}, {":path", "/v1/pad"}})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndHeaders: true})
			_ = fr.WriteRawFrame(http2.FrameData, http2.FlagDataPadded|http2.FlagDataEndStream, 1, []byte{9, 'x'})
			_ = bw.Flush()
		}, "frame_data_pad_too_big"},
	}
}

// h2RefusalsBesideARequest are HTTP/2 refusals that follow a request
// the gateway serves (its own audit line) on the same connection.
func h2RefusalsBesideARequest() []h2Refusal {
	get := func(path string) [][2]string {
		return [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", apiHost}, {":path", path}}
	}
	// A request whose answer waits for its whole body (the origin's
	// /echo reads it first): the refusal in its body always comes before
	// the answer. (An answer first would close the stream, and the frame
	// would be refused as one on a closed stream instead.)
	body := func(h *h2Raw, extra ...[2]string) {
		h.headers(1, append([][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", apiHost}, {":path", "/echo"}}, extra...), false)
	}
	return []h2Refusal{
		{"HEADERS on a lower stream than the last", func(h *h2Raw, m string) {
			h.headers(5, get("/v1/"+m), true)
			h.headers(3, get("/v1/"+m), true)
		}, "conn_PROTOCOL_ERROR_stream_went_down"},
		{"DATA over the declared Content-Length", func(h *h2Raw, _ string) {
			body(h, [2]string{"content-length", "1"})
			_ = h.fr.WriteData(1, true, []byte("xy"))
		}, "stream_PROTOCOL_ERROR_send_too_much"},
		{"trailers without END_STREAM", func(h *h2Raw, m string) {
			body(h)
			h.headers(1, [][2]string{{"x-trailer", m}}, false)
		}, "stream_PROTOCOL_ERROR_trailers_not_ended"},
		{"trailers with a pseudo-header field", func(h *h2Raw, m string) {
			body(h)
			_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.encode([][2]string{{":path", "/" + m}}), EndStream: true, EndHeaders: true})
		}, "stream_PROTOCOL_ERROR_trailers_pseudo"},
	}
}

// h2ClientSecret is a credential-like value some h2Refusals send: no
// audit line or log line may hold it.
const h2ClientSecret = "sk_live_h2refused_9c4e1a7f"

// bigList is fields and header fields of 1 KiB each past
// limits.max_header_bytes (64 KiB here).
func bigList(fields [][2]string) [][2]string {
	for i := range 80 {
		fields = append(fields, [2]string{fmt.Sprintf("x-big-%d", i), strings.Repeat("a", 1<<10)})
	}
	return fields
}

// TestEveryHTTP2RefusalAuditedOnce is TestEveryRefusalAuditedOnce for
// what the HTTP/2 server inside an intercepted tunnel refuses before a
// handler runs (h2Refusals, each on its own tunnel): each leaves exactly
// one audit line, code http2_refused with the library's class of it in
// http2_error, naming the tunnel's workload and destination.
func TestEveryHTTP2RefusalAuditedOnce(t *testing.T) {
	tg := startGateway(t)
	// classes are the cases' http2_error, in order.
	classes := []string{"conn_closed"}
	cases := []refusalCase{
		{name: "a preface that is not HTTP/2", code: codeHTTP2Refused, send: func(t *testing.T, _ string) {
			c := h2TLSTunnel(t, tg, apiHost)
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
			_, _ = io.Copy(io.Discard, c)
			_ = c.Close()
		}},
	}
	for _, r := range h2Refusals() {
		cases = append(cases, refusalCase{name: r.name, code: codeHTTP2Refused, send: func(t *testing.T, marker string) {
			h := h2RawTunnel(t, tg, apiHost)
			r.send(h, marker)
			t.Logf("the gateway answered: %s", h.answer())
			_ = h.c.Close()
		}})
		classes = append(classes, r.class)
	}
	checkOneAuditLineEach(t, tg, cases)
	if t.Failed() {
		return
	}
	// One line each, in the cases' order: each names the tunnel and its
	// workload, the case's class, a denial and no status, method or path.
	i := 0
	for l := range strings.SplitSeq(strings.TrimSpace(tg.audit.String()), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(l), &ev) != nil || ev["code"] != codeHTTP2Refused {
			continue
		}
		if i >= len(cases) {
			t.Fatalf("more lines than cases: %s", l)
		}
		if ev["http2_error"] != classes[i] {
			t.Errorf("%s: http2_error %v, want %s", cases[i].name, ev["http2_error"], classes[i])
		}
		status := float64(h2ClassStatus(classes[i]))
		if ev["host"] != apiHost || ev["workload"] == "anonymous" || ev["decision"] != "deny" || ev["status"] != status || ev["method"] != "" || ev["path"] != "" {
			t.Errorf("%s: line %s: want host %s, a workload, deny, status %v and no method or path", cases[i].name, l, apiHost, status)
		}
		i++
	}
	for _, out := range []string{tg.audit.String(), tg.logs.String()} {
		if strings.Contains(out, h2ClientSecret) || strings.Contains(out, tg.token) {
			t.Errorf("a secret value in the audit or the logs")
		}
	}
}

// answer reads h's frames until the gateway resets a stream, sends a
// GOAWAY or a final response, or closes the connection (or 5 s pass).
func (h *h2Raw) answer() string {
	_ = h.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return "nothing"
			}
			return "closed"
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			return "RST_STREAM " + f.ErrCode.String()
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String()
		case *http2.HeadersFrame:
			fields, _ := h.dec.DecodeFull(f.HeaderBlockFragment())
			for _, hf := range fields {
				if hf.Name == ":status" && hf.Value[0] != '1' {
					return hf.Value
				}
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		}
	}
}

// TestHTTP2ShutdownGraceful: with one HTTP/2 server value per tunnel
// (configureHTTP2), a shutdown still reaches every HTTP/2 connection: it
// gets GOAWAY NO_ERROR, its stream in flight finishes, then it closes;
// no refusal is audited.
func TestHTTP2ShutdownGraceful(t *testing.T) {
	tg := startGateway(t)
	h := h2RawTunnel(t, tg, apiHost)
	h.headers(1, reqFields("/stream"), true)
	var body []byte
	goAway, ended := false, false
	next := func() {
		t.Helper()
		_ = h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v (body %q, GOAWAY %v)", err, body, goAway)
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			ended = ended || f.StreamEnded()
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeNo {
				t.Fatalf("GOAWAY %v, want NO_ERROR", f.ErrCode)
			}
			goAway = true
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset: %v", f.ErrCode)
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		}
	}
	for !strings.Contains(string(body), "first\n") {
		next()
	}
	stopped := make(chan error, 1)
	go func() { stopped <- tg.stop() }()
	for !goAway {
		next()
	}
	// The stream in flight may finish: release the origin directly.
	origin := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tg.pki.pool, ServerName: apiHost}}}
	ack, err := origin.Get("https://" + tg.origin.addr + "/stream-ack")
	if err != nil {
		t.Fatal(err)
	}
	ack.Body.Close()
	for !ended {
		next()
	}
	if string(body) != "first\nsecond\n" {
		t.Errorf("body %q, want the whole stream", body)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	if strings.Contains(tg.audit.String(), codeHTTP2Refused) {
		t.Errorf("a graceful shutdown was audited as a refusal:\n%s", tg.audit.String())
	}
}

// h2LinesOf runs send and returns the audit lines it left (up to a
// sentinel request's, as checkOneAuditLineEach does).
func h2LinesOf(t *testing.T, tg *testGateway, sentinel string, send func()) []map[string]any {
	t.Helper()
	from := len(tg.audit.String())
	send()
	// The server may audit when the connection ends, after send
	// returned: wait (boundedly) for a refusal's line.
	_ = poll.Within(5*time.Second, func() bool { return strings.Contains(tg.audit.String()[from:], codeHTTP2Refused) })
	sendRaw(t, tg, "GET http://"+sentinel+".test/x HTTP/1.1\r\nHost: "+sentinel+".test\r\n\r\n")
	var got []map[string]any
	waitFor(t, 10*time.Second, "the sentinel's audit line", func() bool {
		got = got[:0]
		for l := range strings.SplitSeq(strings.TrimSpace(tg.audit.String()[from:]), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(l), &ev) != nil {
				continue
			}
			if ev["host"] == sentinel+".test" {
				return true
			}
			got = append(got, ev)
		}
		return false
	})
	return got
}

// TestHTTP2RefusalsBesideRequests: a refusal on a connection where the
// gateway serves requests too — before it (h2RefusalsBesideARequest) or
// after it, when the protocol lets the connection go on (a stream
// refusal: RST_STREAM, or the library's own 400 or 431) — is audited
// once, with its class, beside the requests' own lines; after a stream
// refusal the next stream is served (200).
func TestHTTP2RefusalsBesideRequests(t *testing.T) {
	tg := startGateway(t)
	type tc struct {
		r     h2Refusal
		after bool // a request follows on stream 7
	}
	var cases []tc
	for _, r := range h2RefusalsBesideARequest() {
		cases = append(cases, tc{r, false})
	}
	for _, r := range h2Refusals() {
		if strings.HasPrefix(r.class, "stream_") {
			cases = append(cases, tc{r, true})
		}
	}
	for i, c := range cases {
		t.Run(c.r.name, func(t *testing.T) {
			marker := fmt.Sprintf("beside-%d", i)
			lines := h2LinesOf(t, tg, "sentinel-"+marker, func() {
				h := h2RawTunnel(t, tg, apiHost)
				c.r.send(h, marker)
				if c.after {
					h.headers(7, reqFields("/v1/after-"+marker), true)
					if a := h.read(7)[7]; a.Reset || a.Status != "200" {
						t.Errorf("the stream after the refusal: reset %v %v, status %q; want 200", a.Reset, a.ErrCode, a.Status)
					}
				} else {
					// Past the request's answer, to the refusal.
					a := h.answer()
					for i := 0; i < 3 && !strings.HasPrefix(a, "RST") && !strings.HasPrefix(a, "GOAWAY"); i++ {
						a = h.answer()
					}
					t.Logf("the gateway answered: %s", a)
				}
				_ = h.c.Close()
			})
			var refused []any
			for _, ev := range lines {
				if ev["code"] == codeHTTP2Refused {
					refused = append(refused, ev["http2_error"])
				}
			}
			if len(refused) != 1 || refused[0] != c.r.class {
				t.Errorf("http2_refused lines of classes %v, want one of %s; all lines: %v", refused, c.r.class, lines)
			}
			if c.after && len(lines) != 2 {
				t.Errorf("%d audit lines, want 2 (the refusal, the request after it): %v", len(lines), lines)
			}
		})
	}
}
