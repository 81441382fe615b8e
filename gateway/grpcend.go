package gateway

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// A gRPC client's deadline travels with its call as the grpc-timeout
// header (PROTOCOL-HTTP2.md: "Timeout → grpc-timeout TimeoutValue
// TimeoutUnit", at most 8 ASCII digits and one of H M S m u n). The
// gateway holds a call to it as the client does: when the deadline,
// counted from the call's arrival at the gateway, passes before the call
// ended, its upstream request is cancelled (the kill switch's way:
// inflight.go) and the client gets grpc-status 4 DEADLINE_EXCEEDED,
// grpc_deadline_exceeded, as a refusal before the response began and as
// trailers after it. The same answer is given when the upstream ends the
// call by a reset or a timeout once the deadline has passed (grpc-go's
// server resets the stream with CANCEL when it enforces the deadline
// itself): without it the client saw UNAVAILABLE upstream_error where a
// direct call gives DEADLINE_EXCEEDED. The header itself is forwarded
// unchanged, as the policy matched it.

// codeGRPCDeadline is the code of a gRPC call whose grpc-timeout passed
// before it ended; 504, which gRPC clients get as DEADLINE_EXCEEDED.
const codeGRPCDeadline = "grpc_deadline_exceeded"

// errGRPCDeadline is the cause of a gRPC call's cancellation when its
// grpc-timeout passed at the gateway.
var errGRPCDeadline = errors.New("the gRPC call's deadline (grpc-timeout) passed")

// maxGRPCTimeoutDigits is the most digits a TimeoutValue has.
const maxGRPCTimeoutDigits = 8

// parseGRPCTimeout parses a grpc-timeout value: 1 to 8 ASCII digits and
// a unit, H (hours), M (minutes), S (seconds), m (milliseconds), u
// (microseconds) or n (nanoseconds). It reports false for anything else
// (an empty value, a sign, spaces, a ninth digit, another unit), which
// the gateway treats as no deadline. 99999999H is more than a Duration
// holds: it is capped at the largest one.
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > maxGRPCTimeoutDigits+1 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0') // at most 8 digits: no overflow
	}
	if n > int64(math.MaxInt64/unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}

// grpcDeadline returns when r, a gRPC call that arrived at the gateway at
// start, must have ended by its grpc-timeout, and whether it has one. A
// request that is not a gRPC call, or whose grpc-timeout is missing,
// repeated or malformed, has none.
func grpcDeadline(r *http.Request, start time.Time) (time.Time, time.Duration, bool) {
	vv := r.Header["Grpc-Timeout"]
	if len(vv) != 1 || !isGRPC(r) {
		return time.Time{}, 0, false
	}
	d, ok := parseGRPCTimeout(vv[0])
	if !ok {
		return time.Time{}, 0, false
	}
	return start.Add(d), d, true // Add saturates
}

// grpcDeadlineRefusal is the answer to a gRPC call to dest whose
// grpc-timeout (d, raw as sent) passed before it ended.
func grpcDeadlineRefusal(raw string, d time.Duration, dest, rule string) refusal {
	return newRefusal(http.StatusGatewayTimeout, codeGRPCDeadline,
		fmt.Sprintf("the call's deadline (grpc-timeout %s: %s after it reached the gateway) passed before the call to %s ended, and the gateway ended it (the upstream may have acted on it, if it had been sent); give the call a longer deadline if it needs one", quoteToken(raw), d, dest), rule)
}

// grpcDeadlineTimer cancels a gRPC call in flight when its grpc-timeout
// passes (grpcDeadline): armed by handle once the call is registered,
// stopped when it ends.
type grpcDeadlineTimer struct {
	t *time.Timer
}

// armGRPCDeadline arms, for the gRPC call r registered as f, the cut of
// f with errGRPCDeadline when its grpc-timeout passes (counted from
// start), and returns the timer to stop when the call ends (nil when r
// has no deadline).
func (g *Gateway) armGRPCDeadline(r *http.Request, f *inFlight, start time.Time, dest target) *grpcDeadlineTimer {
	at, d, ok := grpcDeadline(r, start)
	if !ok {
		return nil
	}
	raw := r.Header.Get("Grpc-Timeout")
	s := &g.flights
	s.mu.Lock()
	seq := f.seq
	s.mu.Unlock()
	cut := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if f.listed && f.seq == seq {
			f.cutWith(grpcDeadlineRefusal(raw, d, dest.hostPort(), f.rule), errGRPCDeadline)
		}
	}
	return &grpcDeadlineTimer{t: time.AfterFunc(time.Until(at), cut)}
}

// stop stops t (nil: nothing to stop).
func (t *grpcDeadlineTimer) stop() {
	if t != nil {
		t.t.Stop()
	}
}

// grpcDeadlinePassed returns the refusal of a gRPC call (r, outbound,
// which arrived at start) that the upstream ended by a reset or a timeout
// (err) after its grpc-timeout had passed, and whether it is one: the
// upstream enforcing the deadline it was sent, which the client must see
// as DEADLINE_EXCEEDED as it would calling directly.
func grpcDeadlinePassed(r *http.Request, start time.Time, err error, rule string) (refusal, bool) {
	at, d, ok := grpcDeadline(r, start)
	if !ok || time.Now().Before(at) || err == nil {
		return refusal{}, false
	}
	if code, reset := upstreamResetCode(err); !(reset && code == "CANCEL") && !timedOut(err) {
		return refusal{}, false
	}
	return grpcDeadlineRefusal(r.Header.Get("Grpc-Timeout"), d, r.URL.Host, rule), true
}

// upstreamResetCode returns the HTTP/2 error code with which the upstream
// reset the stream of err (RST_STREAM: "CANCEL", "REFUSED_STREAM", ...),
// and whether err is such a reset. Go's HTTP/2 client exports no error
// type for it (net/http's bundled copy is unexported): its text is
// matched, "stream error: stream ID N; CODE; received from peer".
func upstreamResetCode(err error) (string, bool) {
	msg := err.Error()
	const pre = "stream error: stream ID "
	i := strings.Index(msg, pre)
	if i < 0 {
		return "", false
	}
	rest := msg[i+len(pre):]
	parts := strings.SplitN(rest, "; ", 3)
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "received from peer") {
		return "", false
	}
	return parts[1], true
}

// timedOut reports whether err is a timeout (a deadline or a net.Error
// that says so).
func timedOut(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, errGRPCDeadline) || errors.As(err, &te) && te.Timeout()
}

// grpcResetCode is the status a gRPC client reports for a call whose
// server reset its stream with the HTTP/2 error code code
// (PROTOCOL-HTTP2.md, "Errors"): REFUSED_STREAM UNAVAILABLE (not
// processed: retried), CANCEL CANCELLED, ENHANCE_YOUR_CALM
// RESOURCE_EXHAUSTED, INADEQUATE_SECURITY PERMISSION_DENIED, any other
// INTERNAL. The gateway answers an upstream's reset with it, so that the
// client sees what it would calling the upstream directly.
func grpcResetCode(code string) grpcStatus {
	switch code {
	case "REFUSED_STREAM":
		return grpcUnavailable
	case "CANCEL":
		return grpcCanceled
	case "ENHANCE_YOUR_CALM":
		return grpcResourceExhausted
	case "INADEQUATE_SECURITY":
		return grpcPermissionDenied
	}
	return grpcInternal
}

// upstreamResetRefusal is the answer to a gRPC call whose upstream dest
// reset its stream with the HTTP/2 error code code, before its response
// began (begun false) or after: upstream_error, with the grpc-status a
// direct call reports (grpcResetCode).
func upstreamResetRefusal(dest, code string, begun bool) refusal {
	when := "before it answered"
	if begun {
		when = "while its response was relayed; the rest of the response did not come"
	}
	f := newRefusal(http.StatusBadGateway, codeUpstreamError,
		fmt.Sprintf("%s reset the call's stream (HTTP/2 RST_STREAM %s) %s", dest, quoteToken(code), when), "")
	f.GRPC = grpcResetCode(code)
	return f
}

// grpcEnding returns the refusal with whose trailers forward ends a gRPC
// call over HTTP/2 (r) whose response began and then broke off (err;
// abortCode says why, cut is what cut it in flight, if anything), and
// whether there is one: every ending of the upstream's or the gateway's
// doing — the kill switch, the loss of the identity, a reload, the
// call's deadline, a stalled upstream or client body, a message the
// scrubber cannot read, the upstream's reset or broken connection —
// ends with trailers naming it, which gRPC clients report as a status
// (a reset stream is INTERNAL "stream terminated by RST_STREAM"). A
// client that went away or does not read is not there to read trailers:
// its stream is reset.
func (g *Gateway) grpcEnding(r *http.Request, st *reqState, err error, abortCode string, cut *refusal) (refusal, bool) {
	dest := r.URL.Host
	switch abortCode {
	case codeClientStalled, codeRequestBodyAborted, codeShuttingDown:
		return refusal{}, false
	case codeUpstreamIdle:
		return g.upstreamIdleRefusal(""), true
	case codeBodyTimeout:
		return g.bodyTimeoutRefusal(), true
	case codeBadRequest:
		return clientBodyRefusal(st.in, st.body, "the upstream request was cancelled", "")
	case codeResponseNotScrubbable:
		f := newRefusal(http.StatusBadGateway, codeResponseNotScrubbable,
			fmt.Sprintf("a response message from %s could not be scrubbed (%v); the rest of the call was not passed on", dest, err), "")
		f.GRPC = grpcInternal // as a client reports a message it cannot read
		return f, true
	case codeUpstreamError:
	default:
		if cut != nil && abortCode == cut.Code {
			return *cut, true
		}
		return refusal{}, false
	}
	if clientGone(r, st) != nil {
		return refusal{}, false
	}
	if f, ok := grpcDeadlinePassed(r, st.x.start, err, ""); ok {
		return f, true
	}
	if code, reset := upstreamResetCode(err); reset {
		return upstreamResetRefusal(dest, code, true), true
	}
	return newRefusal(http.StatusBadGateway, codeUpstreamError,
		fmt.Sprintf("the connection to %s broke while the response was relayed; the rest of the response did not come", dest), ""), true
}

// grpcSent returns the grpc-status of the upstream's complete response
// resp to the gRPC call r, as the client got it: from its trailers, or
// from its header (a Trailers-Only answer); "" when r is not a gRPC call
// or the value is not 1 to 3 digits (the audit line writes it as a
// number, and nothing else of the upstream's).
func grpcSent(r *http.Request, resp *http.Response) string {
	v, ok := resp.Trailer["Grpc-Status"]
	if !ok {
		v = resp.Header["Grpc-Status"]
	}
	if len(v) != 1 || len(v[0]) == 0 || len(v[0]) > 3 || !isGRPC(r) {
		return ""
	}
	for i := 0; i < len(v[0]); i++ {
		if v[0][i] < '0' || v[0][i] > '9' {
			return ""
		}
	}
	return v[0]
}
