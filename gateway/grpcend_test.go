package gateway

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestParseGRPCTimeout: grpc-timeout as PROTOCOL-HTTP2.md spells it (1 to
// 8 digits, a unit of H M S m u n); anything else is no deadline.
func TestParseGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"30S", 30 * time.Second, true},
		{"500m", 500 * time.Millisecond, true},
		{"250u", 250 * time.Microsecond, true},
		{"7n", 7, true},
		{"0m", 0, true},
		{"00000001S", time.Second, true},
		{"99999999n", 99999999, true},
		{"99999999S", 99999999 * time.Second, true},
		{"99999999H", math.MaxInt64, true}, // more than a Duration holds
		{"99999999M", 99999999 * time.Minute, true},
		{"", 0, false},
		{"m", 0, false},
		{"5", 0, false},
		{"100000000n", 0, false}, // nine digits
		{"-1S", 0, false},
		{"+1S", 0, false},
		{" 1S", 0, false},
		{"1S ", 0, false},
		{"1 S", 0, false},
		{"1s", 0, false},
		{"1h", 0, false},
		{"1ms", 0, false},
		{"1.5S", 0, false},
		{"0x1S", 0, false},
		{"１S", 0, false}, // a full-width digit
		{"1Ｓ", 0, false},
	} {
		got, ok := parseGRPCTimeout(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseGRPCTimeout: never a panic or a negative duration; a value is
// accepted exactly when it is 1 to 8 ASCII digits and a unit, and then
// means digits × unit (capped at the largest Duration).
func FuzzParseGRPCTimeout(f *testing.F) {
	for _, s := range []string{"1H", "500m", "99999999H", "", "1", "100000000n", "-1S", "1.5S", "\xff\xfeS"} {
		f.Add(s)
	}
	units := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second, 'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseGRPCTimeout(s)
		digits := len(s) - 1
		valid := digits >= 1 && digits <= 8 && units[s[len(s)-1]] != 0
		for i := 0; valid && i < digits; i++ {
			valid = s[i] >= '0' && s[i] <= '9'
		}
		if ok != valid {
			t.Fatalf("parseGRPCTimeout(%q) ok = %v, want %v", s, ok, valid)
		}
		if !ok {
			if got != 0 {
				t.Fatalf("parseGRPCTimeout(%q) = %v with ok false", s, got)
			}
			return
		}
		n, _ := strconv.ParseInt(s[:digits], 10, 64)
		want := time.Duration(n) * units[s[digits]]
		if float64(n)*float64(units[s[digits]]) > math.MaxInt64 {
			want = math.MaxInt64
		}
		if got != want || got < 0 {
			t.Fatalf("parseGRPCTimeout(%q) = %v, want %v", s, got, want)
		}
	})
}

// TestUpstreamResetCode: the HTTP/2 error code of an upstream's reset is
// read from the text of Go's HTTP/2 client's error (it exports no type);
// other errors are no reset. TestGRPCCallEndings checks the text against
// the real client's.
func TestUpstreamResetCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
		ok   bool
	}{
		{errors.New("stream error: stream ID 3; CANCEL; received from peer"), "CANCEL", true},
		{fmt.Errorf("read: %w", errors.New("stream error: stream ID 1; ENHANCE_YOUR_CALM; received from peer")), "ENHANCE_YOUR_CALM", true},
		{errors.New("stream error: stream ID 3; PROTOCOL_ERROR; invalid header"), "", false}, // the client's own
		{errors.New("stream error: stream ID 3; CANCEL"), "", false},
		{errors.New("unexpected EOF"), "", false},
		{errors.New("stream error: "), "", false},
	} {
		code, ok := upstreamResetCode(tc.err)
		if code != tc.code || ok != tc.ok {
			t.Errorf("upstreamResetCode(%q) = %q, %v; want %q, %v", tc.err, code, ok, tc.code, tc.ok)
		}
	}
}

// grpcEndingCase is one way a gRPC call through the gateway can end, and
// what the client must see.
type grpcEndingCase struct {
	name string
	// timeout is the call's grpc-timeout ("": none).
	timeout string
	// origin answers the call (the raw HTTP/2 origin's stream).
	origin func(c *h2OriginConn, stream uint32)
	// status is the HTTP status the client gets; grpcStatus its
	// grpc-status ("": none, the upstream's answer relayed) and
	// inTrailers whether it comes in trailers after a response that
	// began; code the grpc-message's and the audit line's code.
	status     int
	grpcStatus string
	inTrailers bool
	code       string
	// auditStatus is the audit line's status.
	auditStatus int
	// stallBody: the client sends its first message and then nothing,
	// without ending the body.
	stallBody bool
}

// grpcEndingCases: every way the upstream or the gateway ends a gRPC call
// over HTTP/2, before and after its response began.
func grpcEndingCases() []grpcEndingCase {
	headers := func(c *h2OriginConn, stream uint32) {
		blk := c.block([2]string{":status", "200"}, [2]string{"content-type", "application/grpc"})
		c.writeBlock(stream, false, blk)
		c.write(func(fr *http2.Framer) error { return fr.WriteData(stream, false, grpcFrame("first")) })
	}
	reset := func(code http2.ErrCode) func(c *h2OriginConn, stream uint32) {
		return func(c *h2OriginConn, stream uint32) {
			c.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(stream, code) })
		}
	}
	resetAfter := func(code http2.ErrCode) func(c *h2OriginConn, stream uint32) {
		return func(c *h2OriginConn, stream uint32) {
			headers(c, stream)
			reset(code)(c, stream)
		}
	}
	hold := func(*h2OriginConn, uint32) {}
	return []grpcEndingCase{
		{name: "ok", origin: func(c *h2OriginConn, stream uint32) {
			headers(c, stream)
			c.writeBlock(stream, true, c.block([2]string{"grpc-status", "0"}))
		}, status: 200, grpcStatus: "0", inTrailers: true, auditStatus: 200},
		// The call's deadline passes at the gateway: before the
		// upstream answered, after, and before it was sent.
		{name: "deadline-waiting", timeout: "300m", origin: hold,
			status: 200, grpcStatus: "4", code: codeGRPCDeadline, auditStatus: 504},
		{name: "deadline-streaming", timeout: "300m", origin: headers,
			status: 200, grpcStatus: "4", inTrailers: true, code: codeGRPCDeadline, auditStatus: 200},
		{name: "deadline-passed", timeout: "1n", origin: hold,
			status: 200, grpcStatus: "4", code: codeGRPCDeadline, auditStatus: 504},
		// The upstream resets the stream: the status a direct call
		// reports for that reset.
		{name: "reset-cancel", origin: reset(http2.ErrCodeCancel),
			status: 200, grpcStatus: "1", code: codeUpstreamError, auditStatus: 502},
		{name: "reset-internal", origin: reset(http2.ErrCodeInternal),
			status: 200, grpcStatus: "13", code: codeUpstreamError, auditStatus: 502},
		{name: "reset-calm", origin: reset(http2.ErrCodeEnhanceYourCalm),
			status: 200, grpcStatus: "8", code: codeUpstreamError, auditStatus: 502},
		{name: "streaming-reset-cancel", origin: resetAfter(http2.ErrCodeCancel),
			status: 200, grpcStatus: "1", inTrailers: true, code: codeUpstreamError, auditStatus: 200},
		{name: "streaming-reset-internal", origin: resetAfter(http2.ErrCodeInternal),
			status: 200, grpcStatus: "13", inTrailers: true, code: codeUpstreamError, auditStatus: 200},
		// The upstream stalls the response (upstream.response_idle_timeout).
		{name: "streaming-idle", origin: headers,
			status: 200, grpcStatus: "4", inTrailers: true, code: codeUpstreamIdle, auditStatus: 200},
		// The client stalls its stream (limits.body_idle_timeout).
		{name: "streaming-body-stalled", origin: headers, stallBody: true,
			status: 200, grpcStatus: "4", inTrailers: true, code: codeBodyTimeout, auditStatus: 200},
		// A compressed message, which the scrubber cannot read.
		{name: "streaming-compressed", origin: func(c *h2OriginConn, stream uint32) {
			headers(c, stream)
			zipped := grpcFrame("not readable")
			zipped[0] = 1
			c.write(func(fr *http2.Framer) error { return fr.WriteData(stream, false, zipped) })
		}, status: 200, grpcStatus: "13", inTrailers: true, code: codeResponseNotScrubbable, auditStatus: 200},
		// A load balancer's HTML error page: relayed as it came, which
		// is what the client gets calling directly (grpc-go reports
		// UNAVAILABLE for a 502 itself).
		{name: "lb-502", origin: func(c *h2OriginConn, stream uint32) {
			c.respond(stream, "502", "<html>bad gateway</html>", [2]string{"content-type", "text/html"})
		}, status: 502, auditStatus: 502},
		// The upstream's connection breaks mid-response. Last: a call
		// after it could be sent on the connection before the gateway
		// sees it closed.
		{name: "streaming-conn-broken", origin: func(c *h2OriginConn, stream uint32) {
			headers(c, stream)
			_ = c.c.Close()
		}, status: 200, grpcStatus: "14", inTrailers: true, code: codeUpstreamError, auditStatus: 200},
	}
}

// TestGRPCCallEndings: every way a gRPC call over HTTP/2 ends, by the
// upstream or by the gateway, before or after its response began
// (grpcEndingCases), reaches the client as a grpc-status — in a
// Trailers-Only answer, or in trailers that end a response that began —
// never as a reset stream (which grpc-go reports as INTERNAL "stream
// terminated by RST_STREAM"), with grpc-message "credgate CODE: ..." and
// an audit line with the same code and that grpc_status. A call whose grpc-timeout passes is
// ended by the gateway with DEADLINE_EXCEEDED, also when the upstream
// never enforces it; an upstream's reset is reported as a direct call
// reports it (CANCEL as CANCELLED, ...), not as UNAVAILABLE.
func TestGRPCCallEndings(t *testing.T) {
	pki := newTestPKI(t, apiHost, evilHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	cases := grpcEndingCases()
	byPath := map[string]grpcEndingCase{}
	for _, tc := range cases {
		byPath["/grpc.Test/"+tc.name] = tc
	}
	evil := startH2Origin(t, pki, &h2Origin{onHeaders: func(c *h2OriginConn, f *http2.MetaHeadersFrame) {
		if tc, ok := byPath[f.PseudoValue("path")]; ok {
			tc.origin(c, f.StreamID)
			return
		}
		c.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream) })
	}})
	writeFile(t, tg.dir, "policy.yaml", []byte(hostilePolicy))
	tg.upstreamExtra = ", response_idle_timeout: 1s"
	tg.run(t, fmt.Sprintf("resolve: {%q: %q, %q: %q}\nlimits: {body_idle_timeout: 300ms}\n", apiHost+":443", tg.origin.addr, evilHost+":443", evil.addr))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := "/grpc.Test/" + tc.name
			var reqBody io.Reader = strings.NewReader(string(grpcFrame("hi")))
			if tc.stallBody {
				pr, pw := io.Pipe()
				go func() { _, _ = pw.Write(grpcFrame("hi")) }()
				t.Cleanup(func() { _ = pw.Close() })
				reqBody = pr
			}
			req, _ := http.NewRequest(http.MethodPost, "https://"+evilHost+path, reqBody)
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
			if tc.timeout != "" {
				req.Header.Set("Grpc-Timeout", tc.timeout)
			}
			c := tg.client(t, true)
			n := len(auditLines(tg))
			t0 := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(t0)
			if err != nil {
				t.Fatalf("the response body ended with %v after %q: want an end with trailers, not a reset", err, body)
			}
			where := resp.Header
			if tc.inTrailers {
				where = resp.Trailer
			}
			msg, _ := url.PathUnescape(where.Get("Grpc-Message"))
			t.Logf("%d %s grpc-status %q grpc-message %q, trailers %v, in %v", resp.StatusCode, resp.Header.Get("Content-Type"), where.Get("Grpc-Status"), msg, resp.Trailer, took.Round(time.Millisecond))
			if resp.StatusCode != tc.status || where.Get("Grpc-Status") != tc.grpcStatus {
				t.Errorf("status %d grpc-status %q (in trailers: %v), want %d %q", resp.StatusCode, where.Get("Grpc-Status"), tc.inTrailers, tc.status, tc.grpcStatus)
			}
			if tc.code != "" && (!strings.HasPrefix(msg, "credgate "+tc.code+": ") || where.Get(ReasonHeader) != tc.code) {
				t.Errorf("grpc-message %q, %s %q; want the code %s", msg, ReasonHeader, where.Get(ReasonHeader), tc.code)
			}
			if tc.status == 502 && (resp.Header.Get("Content-Type") != "text/html" || string(body) != "<html>bad gateway</html>") {
				t.Errorf("the load balancer's page: %s %q, want it as it came", resp.Header.Get("Content-Type"), body)
			}
			if tc.code == codeGRPCDeadline && took > 5*time.Second {
				t.Errorf("the deadline of %s ended the call after %v", tc.timeout, took)
			}
			var line map[string]any
			waitFor(t, 10*time.Second, "the call's audit line", func() bool {
				for _, l := range auditLines(tg)[n:] {
					if l["path"] == path {
						line = l
						return true
					}
				}
				return false
			})
			if got := fmt.Sprint(line["code"]); tc.code != "" && got != tc.code || fmt.Sprint(line["status"]) != strconv.Itoa(tc.auditStatus) {
				t.Errorf("audit line: code %v status %v, want %q %d", line["code"], line["status"], tc.code, tc.auditStatus)
			}
			// The line says the grpc-status the client got, whoever
			// sent it; none where it got none.
			if g, ok := line["grpc_status"]; tc.grpcStatus == "" && ok || tc.grpcStatus != "" && fmt.Sprint(g) != tc.grpcStatus {
				t.Errorf("audit line: grpc_status %v, want %q", g, tc.grpcStatus)
			}
		})
	}
}

// TestGRPCDeadlinePassed: an upstream's CANCEL reset or a timeout of a
// gRPC call whose grpc-timeout has passed is the deadline's doing
// (grpc-go's server resets the stream when it enforces the deadline it
// was sent); before the deadline, another reset, a call without a valid
// grpc-timeout or one that is not gRPC, it is not.
func TestGRPCDeadlinePassed(t *testing.T) {
	cancel := errors.New("stream error: stream ID 5; CANCEL; received from peer")
	internal := errors.New("stream error: stream ID 5; INTERNAL_ERROR; received from peer")
	past := time.Now().Add(-time.Second)
	for _, tc := range []struct {
		name, ct, timeout string
		start             time.Time
		err               error
		want              bool
	}{
		{"cancel after the deadline", "application/grpc", "500m", past, cancel, true},
		{"timeout after the deadline", "application/grpc+proto", "500m", past, os.ErrDeadlineExceeded, true},
		{"grpc-web", "application/grpc-web", "500m", past, cancel, true},
		{"cancel before the deadline", "application/grpc", "5S", past, cancel, false},
		{"another reset", "application/grpc", "500m", past, internal, false},
		{"no grpc-timeout", "application/grpc", "", past, cancel, false},
		{"malformed grpc-timeout", "application/grpc", "500ms", past, cancel, false},
		{"not gRPC", "application/json", "500m", past, cancel, false},
	} {
		r, _ := http.NewRequest(http.MethodPost, "https://"+apiHost+"/grpc.Test/Call", nil)
		r.Header.Set("Content-Type", tc.ct)
		if tc.timeout != "" {
			r.Header.Set("Grpc-Timeout", tc.timeout)
		}
		f, ok := grpcDeadlinePassed(r, tc.start, tc.err, "")
		if ok != tc.want || ok && (f.Code != codeGRPCDeadline || f.grpcStatus() != grpcDeadlineExceeded) {
			t.Errorf("%s: %v %+v, want %v", tc.name, ok, f, tc.want)
		}
	}
}
