package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// ReasonHeader carries the machine-readable reason of every answer the
// gateway itself gives (refusals and upstream failures). It is a gateway
// header: a client copy of it is never forwarded upstream.
const ReasonHeader = "X-Credgate-Reason"

// Reason codes the gateway itself produces, beside the policy's
// (no_rule, denied_by_rule, method_not_allowed, path_not_allowed,
// plaintext_not_allowed).
const (
	codePrivateAddress     = "private_address"
	codeHostMismatch       = "host_mismatch"
	codeSNIMismatch        = "sni_mismatch"
	codeBadPath            = "bad_path"
	codeBadRequest         = "bad_request"
	codeNotProxyRequest    = "not_a_proxy_request"
	codeBadConnectTarget   = "bad_connect_target"
	codeIdentityInvalid    = "identity_invalid"
	codeIdentityUnavail    = "identity_unavailable"
	codeFactorConflict     = "factor_conflict"
	codeCredentialUnavail  = "credential_unavailable"
	codeCredentialError    = "credential_error"
	codeInjectFailed       = "inject_failed"
	codeBodyTooLarge       = "body_too_large"
	codeUnsupportedRequest = "unsupported_request"
	codeDNSError           = "dns_error"
	codeUpstreamUnreach    = "upstream_unreachable"
	codeUpstreamTLS        = "upstream_tls_error"
	codeUpstreamTimeout    = "upstream_timeout"
	codeUpstreamError      = "upstream_error"
	codeShuttingDown       = "shutting_down"
	codeRequestBodyAborted = "client_aborted"
	codeRateLimited        = "rate_limited"
	codeMalformedRequest   = "malformed_request"
	// codeHeaderTimeout: the client started a request and did not finish
	// its header block within limits.read_header_timeout (h1.CutTimeout);
	// audited, nothing answered.
	codeHeaderTimeout  = "header_timeout"
	codeClientTLSError = "client_tls_error"
	// codeHTTP2Refused: the HTTP/2 server refused a stream or a
	// connection inside an intercepted tunnel before a handler ran (a
	// malformed frame or header block, a pseudo-header field it will not
	// serve, more streams than allowed, a frame flood, a bad preface);
	// the audit line's http2_error names the class (h2Conn).
	codeHTTP2Refused = "http2_refused"
)

// statusClientClosed is the status of a request whose client went away
// before it was answered (code client_aborted, nginx's 499). The answer is
// written anyway, for a client that only half-closed its connection; it
// mostly reaches nobody.
const statusClientClosed = 499

// codeCANotPermitted: the interception CA's name constraints (`credgate
// ca init --permit`) do not cover the CONNECT target; 403.
const codeCANotPermitted = "ca_not_permitted"

// codeInterceptionUnavailable: no leaf certificate could be made for the
// CONNECT target (the interception CA is expired, or signs nothing that
// verifies); 502.
const codeInterceptionUnavailable = "interception_unavailable"

// codeCopySourceNotAllowed: an inject rule's request names a second
// object in a copy or rename field (canonical.SourceHeaders) and the rule
// does not set allow_copy_source; 403.
const codeCopySourceNotAllowed = "copy_source_not_allowed"

// codeCredentialHostMismatch: the credential is valid only on other hosts
// (providers.Credential.Hosts) than the request's destination; 403.
const codeCredentialHostMismatch = "credential_host_mismatch"

// codeCredentialNotConfigured: the credential's source is missing from the
// gateway's environment or config (providers.ErrNotConfigured); 502
// without Retry-After, since waiting will not help.
const codeCredentialNotConfigured = "credential_not_configured"

// refusal is a gateway answer: status, reason code, human sentence and the
// rule that decided, if any. Its JSON body is what clients parse.
type refusal struct {
	Status int    `json:"-"`
	Error  string `json:"error"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
	Rule   string `json:"rule,omitempty"`
	// RetryAfter, in seconds, is sent as Retry-After when positive.
	RetryAfter int `json:"-"`
	// Switch is the kill switch that refused ("rule:NAME"), for the
	// audit line.
	Switch string `json:"-"`
	// GRPC, when not zero, is the grpc-status a gRPC call gets in place
	// of grpcCode(Status): an upstream's reset of the call's stream is
	// reported as a direct call would report it (grpcResetCode).
	GRPC grpcStatus `json:"-"`
}

// grpcStatus is the grpc-status of f's answer to a gRPC call.
func (f refusal) grpcStatus() grpcStatus {
	if f.GRPC != 0 {
		return f.GRPC
	}
	return grpcCode(f.Status)
}

// errorWord is the body's "error" field for a status.
func errorWord(status int) string {
	switch status {
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusRequestTimeout:
		return "request_timeout"
	case http.StatusMisdirectedRequest:
		return "misdirected_request"
	case http.StatusRequestEntityTooLarge:
		return "content_too_large"
	case http.StatusBadGateway:
		return "bad_gateway"
	case http.StatusServiceUnavailable:
		return "service_unavailable"
	case http.StatusGatewayTimeout:
		return "gateway_timeout"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case statusClientClosed:
		return "client_closed_request"
	}
	return "error"
}

func newRefusal(status int, code, reason, rule string) refusal {
	return refusal{Status: status, Error: errorWord(status), Code: code, Reason: reason, Rule: rule}
}

func (f refusal) body() []byte {
	b, _ := json.Marshal(f) // strings only: cannot fail
	return append(b, '\n')
}

// setHeader sets the header fields of f's answer but Content-Length.
func (f refusal) setHeader(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(ReasonHeader, f.Code)
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
}

// write sends f on a ResponseWriter as the answer to r: for a gRPC
// request (grpcMediaType) a gRPC one (writeGRPC), else f.Status with the
// JSON body.
func (f refusal) write(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if mt, ok := grpcMediaType(r); ok {
		f.writeGRPC(w, mt)
		return
	}
	f.setHeader(h)
	b := f.body()
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(f.Status)
	_, _ = w.Write(b)
}

// writeGRPC sends f as a gRPC call's refusal, which gRPC clients report
// as a status with a message (as Envoy's ext_authz answers gRPC calls):
// a Trailers-Only response, status 200 with grpc-status (grpcCode of
// f.Status), grpc-message ("credgate CODE: REASON", percent-encoded) and
// no body, in the request's media type mt, with the gateway's reason
// header, Cache-Control and Retry-After as every refusal has. Over
// HTTP/2 the header block ends the stream, since nothing is written
// after it; over HTTP/1.1 (gRPC-Web) the body is empty. The audit line
// and metrics keep f.Status, the refusal's class.
func (f refusal) writeGRPC(w http.ResponseWriter, mt string) {
	h := w.Header()
	h.Set("Content-Type", mt)
	h.Set("Cache-Control", "no-store")
	h.Set(ReasonHeader, f.Code)
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	h.Set("Grpc-Status", strconv.Itoa(int(f.grpcStatus())))
	h.Set("Grpc-Message", grpcPercentEncode("credgate "+f.Code+": "+f.Reason))
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// setGRPCTrailers sets, in h, the trailers that end a gRPC call f cut
// after its response began: grpc-status, grpc-message and the reason
// header as writeGRPC sends them in a refusal's header block
// (http.TrailerPrefix: the header block went without announcing them).
func (f refusal) setGRPCTrailers(h http.Header) {
	h.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(int(f.grpcStatus())))
	h.Set(http.TrailerPrefix+"Grpc-Message", grpcPercentEncode("credgate "+f.Code+": "+f.Reason))
	h.Set(http.TrailerPrefix+ReasonHeader, f.Code)
}

// grpcResponse reports whether a response with header h carries gRPC
// messages (application/grpc, with or without a +suffix).
func grpcResponse(h http.Header) bool {
	mt, ok := grpcMediaTypeOf(h.Get("Content-Type"))
	return ok && (mt == "application/grpc" || strings.HasPrefix(mt, "application/grpc+"))
}

// grpcMediaType reports whether r is a gRPC or gRPC-Web call, by its
// Content-Type (application/grpc, application/grpc-web and
// application/grpc-web-text, each also with a +suffix such as +proto),
// and returns its media type, which the refusal's answer carries.
func grpcMediaType(r *http.Request) (string, bool) {
	if r == nil {
		return "", false
	}
	return grpcMediaTypeOf(r.Header.Get("Content-Type"))
}

// grpcMediaTypeOf is grpcMediaType of a Content-Type value.
func grpcMediaTypeOf(ct string) (string, bool) {
	if len(ct) < len("application/grpc") || !strings.EqualFold(ct[:len("application/grpc")], "application/grpc") {
		return "", false // not one: told apart before the parse
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", false
	}
	for _, base := range []string{"application/grpc", "application/grpc-web", "application/grpc-web-text"} {
		if mt == base || strings.HasPrefix(mt, base+"+") {
			return mt, true
		}
	}
	return "", false
}

// isGRPC reports whether r is a gRPC or gRPC-Web call (grpcMediaType).
func isGRPC(r *http.Request) bool {
	_, ok := grpcMediaType(r)
	return ok
}

// grpcNeedsHTTP2 reports whether r is a gRPC call of the kind that only
// HTTP/2 carries (application/grpc, not gRPC-Web).
func grpcNeedsHTTP2(r *http.Request) bool {
	mt, ok := grpcMediaType(r)
	return ok && (mt == "application/grpc" || strings.HasPrefix(mt, "application/grpc+"))
}

// grpcStatus is a gRPC status code (google.golang.org/grpc/codes).
type grpcStatus int

// The gRPC status codes a refusal maps to.
const (
	grpcCanceled          grpcStatus = 1
	grpcUnknown           grpcStatus = 2
	grpcInvalidArgument   grpcStatus = 3
	grpcDeadlineExceeded  grpcStatus = 4
	grpcPermissionDenied  grpcStatus = 7
	grpcResourceExhausted grpcStatus = 8
	grpcInternal          grpcStatus = 13
	grpcUnavailable       grpcStatus = 14
	grpcUnauthenticated   grpcStatus = 16
)

// grpcCode is the gRPC status of a refusal answered with HTTP status
// status (docs/policy.md, "Refusals to gRPC calls"): the code Google's
// API design pairs with that status, so that a gRPC client's retry
// policy (which retries UNAVAILABLE) treats a refusal as it would the
// HTTP client its status.
func grpcCode(status int) grpcStatus {
	switch status {
	case http.StatusBadRequest, http.StatusMisdirectedRequest, http.StatusExpectationFailed:
		return grpcInvalidArgument
	case http.StatusUnauthorized, http.StatusProxyAuthRequired:
		return grpcUnauthenticated
	case http.StatusForbidden:
		return grpcPermissionDenied
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return grpcDeadlineExceeded
	case http.StatusRequestEntityTooLarge, http.StatusRequestHeaderFieldsTooLarge, http.StatusTooManyRequests:
		return grpcResourceExhausted
	case statusClientClosed:
		return grpcCanceled
	case http.StatusInternalServerError:
		return grpcInternal
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return grpcUnavailable
	}
	return grpcUnknown
}

// grpcPercentEncode encodes a grpc-message value as the gRPC protocol
// asks (PROTOCOL-HTTP2.md): every byte outside printable ASCII, and '%',
// as %XX.
func grpcPercentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// response builds f as an *http.Response, for goproxy's CONNECT rejection
// and for raw writes on hijacked connections. The connection is closed
// after it.
func (f refusal) response(req *http.Request) *http.Response {
	b := f.body()
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set(ReasonHeader, f.Code)
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	return &http.Response{
		Status:        strconv.Itoa(f.Status) + " " + http.StatusText(f.Status),
		StatusCode:    f.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)),
		Close:         true,
		Request:       req,
	}
}
