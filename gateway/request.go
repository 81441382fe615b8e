package gateway

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/credgate/credgate/gateway/internal/h1"
	"github.com/credgate/credgate/gateway/internal/h1client"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/internal/headerset"
	"github.com/credgate/credgate/internal/tracing"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/transform"
)

// gatewayHeaders are request headers scoped to the client-to-gateway hop
// or asserting a client identity. They never reach an upstream, whatever
// the decision (invariants 3 and 7): the destination sees the gateway as
// its client, and internal addresses and certificates do not leak to a
// SaaS: headerset.ProxyScoped and the gateway's own reason header. The
// forwarder removes the other hop-by-hop headers.
var gatewayHeaders = headerset.NewRemover(headerset.ProxyScoped, []string{ReasonHeader})

// reqState follows one request through the gateway; the upstream
// round trip and the response hooks fill it in.
type reqState struct {
	addrs []netip.AddrPort
	// pool holds the upstream connections this request may use: those
	// to the class of address its decision allows (pool.go).
	pool *upstreamPool
	// cert, when set, is the TLS client certificate to present.
	cert *tls.Certificate

	upStart  time.Time
	upDur    time.Duration
	refusal  *refusal
	upstatus int

	// reissue, when set, says how to react to a 401 from the upstream:
	// the request carried a cached credential whose binding asks for that.
	reissue *reissuePlan
	// reissued is set when the request was sent again with a new
	// credential, reissuedCred.
	reissued     bool
	reissuedCred *providers.Credential
	// rc controls the client's response (forward).
	rc http.ResponseController
	// whole is set when forward relayed a response of declared length to
	// its end, with no trailers: over HTTP/1.x the client has all of it
	// once the server's write buffer is flushed, which handle does before
	// writing the audit line (sendWhole).
	whole bool
	// abortCode says why a response broke off after its headers.
	abortCode string
	// resp, when set, scrubs the response and keeps custody of values
	// in it (scrub.go, custody.go).
	resp *responseHooks
	// http1: send the request upstream over HTTP/1.1 (upstream.http2).
	http1 bool
	// grpcEnded: forward ended a gRPC call it cut with trailers naming
	// the refusal (refusal.setGRPCTrailers), so handle returns rather
	// than abort the stream.
	grpcEnded bool
	// grpcStatus is the grpc-status the client of a gRPC call got, for
	// the audit line ("": none seen; grpcSent).
	grpcStatus string
	// long, set for a WebSocket upgrade checkUpgrade accepted, is the
	// long-lived connection it becomes when the upstream switches.
	long *longConn
	// body watches the request body (limits.body_idle_timeout); nil
	// without a body.
	body *idleBody
	// upBody is the upstream response's body under the
	// upstream.response_idle_timeout watchdog (bodytimeout.go); part of
	// reqState, so no allocation of its own. Its watch is nil when the
	// response is not watched, or no longer.
	upBody upstreamBody
	// in is the client's body as its connection delivers it (how a read
	// of it failed); its failure() is bodyReadOK without a body.
	in *clientBody
	// w1xx, when set, is where the upstream's 1xx responses are relayed
	// (informational).
	w1xx http.ResponseWriter
	// n1xx and bytes1xx count the 1xx responses the upstream sent and
	// their fields' size (relay1xx bounds them).
	n1xx, bytes1xx int
	// ph is what placeholder substitution did (placeholder.go), and x the
	// exchange, for a tripwire met while the body streams; nil without.
	ph *phState
	x  *exchange
	// sw and reqBody are the request's statusWriter and countingBody,
	// part of reqState so that they cost no allocation of their own.
	sw      statusWriter
	reqBody countingBody
	// hooks is what resp points to when set (newHooks), and ae the
	// Accept-Encoding value prepareResponse sets: part of reqState, so no
	// allocation of their own.
	hooks responseHooks
	ae    [1]string
	// key is keyOf(keyCred) (credKey).
	key     credKey
	keyCred *providers.Credential
	// cred is the credential injected into the request, whatever the
	// rule's scrub setting: what logText redacts from the texts of the
	// exchange's errors.
	cred *providers.Credential
	// flight registers the request with the kill switch while it is
	// forwarded (inflight.go); part of reqState, so no allocation of its
	// own.
	flight inFlight
	// tries bounds how often the transports send the request again,
	// and upload how long the upstream may leave its body untaken
	// (retries.go).
	tries  upstreamTries
	upload uploadWatch
	// h2 counts the request against the HTTP/2 upstream connections it
	// was handed, and its host, in the pool's h2Conns (h2conns.go).
	h2 h2Use
	// ctx is the outbound request's context (stateCtx): part of
	// reqState, so no allocation of its own.
	ctx stateCtx
	// space is where the h1client reads the upstream's response (the
	// first one it reads itself), and slot where a built-in injector
	// sets its value (the first one): part of reqState, which is this
	// request's alone.
	space h1client.ResponseSpace
	slot  injectors.ValueSlot
}

// stateCtx is the outbound request's context: its parent (the flight's)
// with the request's reqState under stateKey, for the transport, the
// dialler and the response hooks, and as the h1client's Informational
// (the 1xx relay), Attempts (the count of upstreamTries), Cancellation
// (the flight's, inflight.go) and ResponseSpace, and the injectors'
// ValueSlot. It is context.WithValue(parent,
// stateKey, st) without the allocation: a field of the reqState it
// names. Done, Err, Deadline and every other key are the parent's, so
// the context package still finds the parent's cancellation (Cause, and
// AfterFunc's and WithCancel's registration on it without a goroutine).
type stateCtx struct {
	context.Context
	st *reqState
}

// Value implements context.Context.
func (c *stateCtx) Value(key any) any {
	switch key {
	case stateKey:
		return c.st
	case h1client.InformationalKey{}:
		if c.st.w1xx != nil {
			return c.st // relay1xx, through Got1xxResponse
		}
	case h1client.AttemptsKey{}:
		return c.st // upstreamTries, through GotConn (retries.go)
	case h1client.ResponseSpaceKey{}:
		return &c.st.space
	case injectors.ValueSlotKey{}:
		return &c.st.slot
	case h1client.CancellationKey{}:
		if f := &c.st.flight; f.ctx != nil && c.Context == f.ctx {
			return c.st // the flight's cancellation (inflight.go)
		}
	}
	return c.Context.Value(key)
}

// credKey returns keyOf(cred), made once per request for the credential
// it injects (the Scrubber's and the audit line's caches both look it up).
func (st *reqState) credKey(cred *providers.Credential) credKey {
	if cred != st.keyCred || cred == nil {
		st.keyCred, st.key = cred, keyOf(cred)
	}
	return st.key
}

// newHooks returns st's response hooks, zeroed, for st.resp to point to
// when it is nil.
func (st *reqState) newHooks() *responseHooks {
	st.hooks = responseHooks{}
	return &st.hooks
}

// refusalCode is the code of the refusal or abort the round trip ended
// in, "" for none.
func (st *reqState) refusalCode() string {
	if st.refusal != nil {
		return st.refusal.Code
	}
	return st.abortCode
}

// reissuePlan is what the round trip needs to drop a credential an
// upstream rejected and, for a replayable request, send it once more with
// a new one.
type reissuePlan struct {
	// bind is the credential's binding to the caller (its key, fetch and
	// cache holder).
	bind providers.Binding
	used *providers.Credential
	// inj re-injects (injectors.ApplyFor removes the names it sets first, so
	// nothing of the rejected credential is sent again).
	inj injectors.Injector
	// wl is the caller, for injectors whose values depend on it.
	wl identity.Workload
	// replay: the request is idempotent and has no body, so sending it
	// again is safe (a consumed body is never resent).
	replay bool
}

// idempotent are the methods RFC 9110 §9.2.2 calls idempotent. A request
// with one of them and no body can be sent again after a 401.
var idempotent = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true,
	http.MethodTrace: true, http.MethodPut: true, http.MethodDelete: true,
}

// serveProxy handles requests on the proxy listeners: CONNECT goes to
// goproxy, absolute-URI requests are forwarded, anything else is refused.
func (g *Gateway) serveProxy(w http.ResponseWriter, r *http.Request) {
	if g.refuseAuditStalled(w, r) {
		return
	}
	if r.Method == http.MethodConnect {
		if _, ok := w.(http.Hijacker); ok {
			w = connectWriter{w}
		}
		g.connect.ServeHTTP(w, r)
		return
	}
	x := &exchange{w: w, r: r, start: time.Now(), ev: evidence(r), scheme: "http"}
	x.ev.Via = g.viaOf(r.Context())
	if !r.URL.IsAbs() {
		g.refuse(x, newRefusal(http.StatusBadRequest, codeNotProxyRequest,
			"this is a proxy: send absolute-URI requests (http://host/path) or CONNECT host:port", ""))
		return
	}
	dest, f := proxyTarget(r.URL)
	if f != nil {
		g.refuse(x, *f)
		return
	}
	// For an absolute-form request the URI is authoritative: net/http has
	// already replaced the Host header with the URI's host (RFC 9112
	// §3.2.2), so Host and destination agree by construction.
	x.dest = dest
	g.handle(x, pinnedAddrs{})
}

// proxyTarget is the destination of an absolute-URI request on a proxy
// listener, or its refusal.
func proxyTarget(u *url.URL) (target, *refusal) {
	if u.Scheme != "http" {
		f := newRefusal(http.StatusBadRequest, codeBadRequest,
			fmt.Sprintf("scheme %q is not proxied as an absolute URI; use CONNECT for https", u.Scheme), "")
		return target{}, &f
	}
	dest, err := parseTarget(u.Host, 80)
	if err != nil {
		f := newRefusal(http.StatusBadRequest, codeBadRequest, "request target "+err.Error(), "")
		return target{}, &f
	}
	return dest, nil
}

// serveIntercepted handles requests inside an intercepted tunnel.
func (g *Gateway) serveIntercepted(w http.ResponseWriter, r *http.Request) {
	if g.refuseAuditStalled(w, r) {
		return
	}
	start := time.Now()
	tc, _ := r.Context().Value(tunnelKey).(*tunnelConn)
	if tc == nil {
		// Cannot happen: only tunnels are handed to this server.
		http.Error(w, "not a tunnel", http.StatusInternalServerError)
		return
	}
	x := &exchange{w: w, r: r, start: start, ev: tc.ev, scheme: "https", dest: tc.dest, tunnel: tc}
	// r.Host is the Host header (HTTP/1.1) or :authority (HTTP/2; the
	// Host field without one); an HTTP/1.1 absolute-form request line's
	// authority replaces the Host field (RFC 9112 §3.2.2), and the Host
	// fields of an HTTP/2 request must agree with it (hostFields).
	if h, err := parseTarget(r.Host, 443); err != nil || h != tc.dest {
		g.refuse(x, newRefusal(http.StatusMisdirectedRequest, codeHostMismatch,
			fmt.Sprintf("the Host header %q does not name the tunnel's destination %s", r.Host, tc.dest.hostPort()), ""))
		return
	}
	if f := hostFields(r, tc.dest); f != nil {
		g.refuse(x, *f)
		return
	}
	g.handle(x, pinnedAddrs{addrs: tc.addrs, private: tc.allowPrivate})
}

// hostFields checks the Host fields an HTTP/2 request carries beside its
// :authority and removes them. Go's HTTP/2 server takes the authority
// from :authority (from Host only without one) and leaves every Host
// field in the header map, where conditions and injectors would see a
// field the upstream never receives (both upstream clients send r.Host);
// HTTP/1.1's server moves its one Host field into r.Host and out of the
// map, and refuses a second. So a request arrives at the decision with
// no Host field on either protocol, and one whose Host fields name
// another destination than the tunnel's, or that has more than one, is
// refused (RFC 9113 §8.3.1: such a request is malformed).
func hostFields(r *http.Request, dest target) *refusal {
	hosts, ok := r.Header["Host"]
	if !ok {
		return nil
	}
	delete(r.Header, "Host")
	if len(hosts) > 1 {
		f := newRefusal(http.StatusMisdirectedRequest, codeHostMismatch,
			fmt.Sprintf("the request has %d Host fields; send one, naming the tunnel's destination %s, or none beside :authority", len(hosts), dest.hostPort()), "")
		return &f
	}
	if h, err := parseTarget(hosts[0], 443); err != nil || h != dest {
		f := newRefusal(http.StatusMisdirectedRequest, codeHostMismatch,
			fmt.Sprintf("the Host field %q does not name the tunnel's destination %s named by :authority; send a Host field that agrees with :authority, or none", hosts[0], dest.hostPort()), "")
		return &f
	}
	return nil
}

// canonicalRequest checks the request's method and path once, before
// identity and policy, and returns the path in the forms the rest of the
// request uses (invariant 11): the policy and conditions match Decoded,
// the audit line and the upstream get Raw. A refusal names the spelling
// that was refused and what to send instead.
func canonicalRequest(r *http.Request) (canonical.Path, *refusal) {
	if err := canonical.Method(r.Method); err != nil {
		f := newRefusal(http.StatusBadRequest, policy.CodeBadMethod,
			"the method is not an upper-case token; send it in upper case (GET, POST, ...): methods are case-sensitive and servers route other spellings differently", "")
		return canonical.Path{}, &f
	}
	if r.Method == http.MethodConnect {
		// Only reachable inside an intercepted connection: the proxy
		// listener hands CONNECT to the tunnel code.
		f := newRefusal(http.StatusBadRequest, policy.CodeBadMethod,
			"CONNECT opens a tunnel to the gateway; it is not forwarded inside one", "")
		return canonical.Path{}, &f
	}
	if o, ok := canonical.MethodOverride(r.Method, r.Header, r.URL.RawQuery); ok {
		f := newRefusal(http.StatusBadRequest, policy.CodeBadMethod, overrideReason(r.Method, o), "")
		return canonical.Path{}, &f
	}
	if r.URL.Opaque != "" || r.URL.User != nil {
		f := newRefusal(http.StatusBadRequest, codeBadPath,
			"the request target is not an absolute path (or has userinfo); send /path or http://host/path without user@", "")
		return canonical.Path{}, &f
	}
	// The path as the client sent it: url.URL's EscapedPath would
	// re-encode it from the decoded form when the wire form holds a
	// character net/url encodes, turning a %2F into '/' on the way.
	wire := r.URL.EscapedPath()
	if r.RequestURI != "" {
		wire = canonical.TargetPath(r.RequestURI)
	}
	p, err := canonical.ParsePath(wire)
	if err != nil {
		var pe *canonical.PathError
		problem := "is not canonical"
		if errors.As(err, &pe) {
			problem = pe.Problem
		}
		f := newRefusal(http.StatusBadRequest, codeBadPath,
			"the request path "+problem+"; servers route such spellings differently, so send the normalised path", "")
		return canonical.Path{}, &f
	}
	if !targetQuery(r.URL.RawQuery) {
		f := newRefusal(http.StatusBadRequest, codeBadPath,
			"the request query holds a space or control character, which a request target cannot hold: sent on in an HTTP/1.1 request line it would end the target there; percent-encode it (%20)", "")
		return canonical.Path{}, &f
	}
	return p, nil
}

// targetQuery reports whether q, a request's raw query, can be sent in an
// HTTP/1.1 request line as it is: no space, HTAB or other control byte
// (RFC 9112 §3.2). HTTP/1.1's parser never gives one (the request line
// would not parse), but Go's HTTP/2 server takes a space in :path, which
// the gateway would write into the upstream's request line ("GET
// /v1/x?a b HTTP/1.1"), ending the target where the client's did not
// (an upstream reading "b HTTP/1.1" as the version, or the words apart).
func targetQuery(q string) bool {
	for i := range len(q) {
		if c := q[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// overrideReason is the refusal reason for a method override o on a
// request with method: it names the field and the fix.
func overrideReason(method string, o canonical.Override) string {
	if o.Method == "" {
		return fmt.Sprintf("the %s asks the server to run the request as another method than %s; the policy decides on the request's own method, so send the request with the method you mean instead of an override", o.Field, method)
	}
	return fmt.Sprintf("the %s asks the server to run the request as %s, not %s; the policy decides on the request's own method, so send the request with method %s instead of an override", o.Field, o.Method, method, o.Method)
}

// dropUnderscoreFields removes every request header field whose name
// contains '_', before the decision and the injection, as nginx does by
// default (underscores_in_headers off). CGI-style servers (CGI, WSGI,
// Rack, PHP) map '-' and '_' alike to '_' (HTTP_X_ACT_AS), so X_Act_As
// would reach them as the X-Act-As a condition judged absent, X_Real_IP
// as the X-Real-IP the gateway removes, and X_Api_Key as a second copy of
// an injected X-Api-Key (CVE-2024-45614). The name, never the value, is
// logged at debug level. It allocates nothing when no name has a '_'.
func (g *Gateway) dropUnderscoreFields(ctx context.Context, h http.Header) {
	for k := range h {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		delete(h, k)
		if g != nil && g.log.Enabled(ctx, slog.LevelDebug) {
			g.log.LogAttrs(ctx, slog.LevelDebug, "request header field with '_' in its name dropped", slog.String("field", k))
		}
	}
}

// prepareRequest is everything the gateway does to a request before its
// identity and decision, in order: the canonical method and path
// (canonicalRequest), the header fields it removes (names with '_', the
// fields Connection names, hop-by-hop fields) and the upgrade check. It
// returns the path in its forms and whether the request is a WebSocket
// upgrade, or the refusal. g may be nil (Explain): nothing is logged then.
func (g *Gateway) prepareRequest(r *http.Request) (canonical.Path, bool, *refusal) {
	cp, f := canonicalRequest(r)
	if f != nil {
		return cp, false, f
	}
	if f := fieldValueSpace(r.Header); f != nil {
		return cp, false, f
	}
	g.dropUnderscoreFields(r.Context(), r.Header)
	stripConnectionNamed(r.Header)
	upgrade, uf := checkUpgrade(r)
	if uf != nil {
		return cp, false, uf
	}
	hopByHop(r.Header, upgrade)
	return cp, upgrade, nil
}

// fieldValueSpace refuses a request with a header field value that
// begins or ends with white space (SP or HTAB), nil otherwise. HTTP/1.1's
// parser removes it (RFC 9112 §5.1), so only an HTTP/2 request can carry
// it, where RFC 9113 §8.2.1 makes the request malformed — and an
// intermediary must not forward a malformed request: the policy and
// every condition would judge " admin" while the HTTP/1.1 upstream, whose
// parser (and the gateway's own writer) removes the white space, acts on
// "admin" (request.headers["x-act-as"].startsWith("admin") passed). The
// reason names the field, never its value. It allocates nothing for a
// request without such a value.
func fieldValueSpace(h http.Header) *refusal {
	for k, vv := range h {
		for _, v := range vv {
			if v != "" && (isSpaceOrTab(v[0]) || isSpaceOrTab(v[len(v)-1])) {
				f := newRefusal(http.StatusBadRequest, codeMalformedRequest,
					fmt.Sprintf("the value of the header field %q begins or ends with white space, which HTTP/2 forbids (RFC 9113 section 8.2.1) and HTTP/1.1 servers remove, so the upstream would act on another value than the policy judged; send the value without it", k), "")
				return &f
			}
		}
	}
	return nil
}

func isSpaceOrTab(c byte) bool { return c == ' ' || c == '\t' }

// decisionRefusal is the refusal of a decision that does not let the
// request (or, connect, the CONNECT) through, nil for one that does.
func decisionRefusal(d policy.Decision, connect bool) *refusal {
	allowed := d.Action == policy.Inject || d.Action == policy.Forward
	if connect {
		allowed = d.Action != policy.Deny
	}
	if allowed {
		return nil
	}
	f := newRefusal(http.StatusForbidden, d.Code, d.Reason, d.Rule)
	return &f
}

// encodedSlashRefusal refuses a path with %2F that d's destination does
// not admit (encoded_slashes), or with %3F or %23 that it does not admit
// (encoded_delimiters), nil otherwise.
func encodedSlashRefusal(cp canonical.Path, d policy.Decision) *refusal {
	if cp.CheckEncodedSlash(d.EncodedSlashes) != nil {
		f := newRefusal(http.StatusBadRequest, codeBadPath,
			fmt.Sprintf("the request path encodes a '/' as %%2F, which destination %q does not allow; set encoded_slashes: true on it if its API needs encoded slashes", d.Destination), d.Rule)
		return &f
	}
	if cp.CheckEncodedDelimiter(d.EncodedDelimiters) != nil {
		f := newRefusal(http.StatusBadRequest, codeBadPath,
			fmt.Sprintf("the request path encodes a '?' or '#' (%%3F, %%23), which servers decoding the path before they split off the query read as its start, and destination %q does not allow it; set encoded_delimiters: true on it if its API keeps them in names (S3 and GCS object keys)", d.Destination), d.Rule)
		return &f
	}
	return nil
}

// stripConnectionNamed removes the request headers the client's
// Connection field names (RFC 9110 §7.6.1) before the decision and the
// injection, and leaves Connection naming only "upgrade" (the forwarder
// removes the remaining hop-by-hop fields). Otherwise a client could name
// a header the injector sets (Connection: Authorization) and have the
// forwarder drop the credential after injection, or a condition could
// judge a header the upstream never receives.
func stripConnectionNamed(h http.Header) {
	vv, ok := h["Connection"]
	if !ok {
		return
	}
	upgrade := false
	for _, f := range vv {
		for name := range strings.SplitSeq(f, ",") {
			name = textproto.TrimString(name)
			switch {
			case name == "":
			case strings.EqualFold(name, "upgrade"):
				upgrade = true
			default:
				k := textproto.CanonicalMIMEHeaderKey(name)
				if k != "Upgrade" {
					delete(h, k)
				}
			}
		}
	}
	if upgrade {
		h["Connection"] = []string{"Upgrade"}
	} else {
		delete(h, "Connection")
	}
}

// exchange is one request through the gateway, as smokescreen's request
// context: what arrived and what each stage produced so far. Refusals and
// the audit line read it; nothing reaches back into an earlier stage.
type exchange struct {
	w      http.ResponseWriter
	r      *http.Request // the request as the client sent it
	start  time.Time
	ev     identity.Evidence
	scheme string
	dest   target
	// tunnel is the intercepted connection the request came in on (nil
	// on a proxy listener).
	tunnel *tunnelConn
	wl     identity.Workload // once identity verified
	d      policy.Decision   // once the policy decided
	// identified is set once identity ran on ev (admit, or refuse for a
	// request refused before it): wl is then what verified, if anything.
	identified bool
	// tripwire is the placeholder that refused the request and where it
	// was (audit).
	tripwire *transform.MisuseError
	// quarantined is the ID of the kill switch a tripwire of this
	// request set (tripped, possibly on a body's goroutine), for the
	// audit line.
	quarantined atomic.Pointer[string]
	// trace is the request's trace; the zero Request when tracing is off
	// (hooks check g.tracer first).
	trace tracing.Request
	// st is the request's state once admitted (handle): part of the
	// exchange, so no allocation of its own.
	st reqState
	// in is the client's request body under every reader of it
	// (clientBody): how a read of it failed.
	in clientBody
	// batch is the number of sub-requests of a batch judged (batch.go),
	// for the audit line.
	batch int
	// out and outURL are the outbound request and its URL (outbound):
	// part of the exchange, so no allocation of their own.
	out    http.Request
	outURL url.URL
}

// pinnedAddrs are the addresses a tunnel's CONNECT checked, and whether
// that decision allowed special-purpose ones; zero for plain HTTP, whose
// destination is resolved per request.
type pinnedAddrs struct {
	addrs   []netip.AddrPort
	private bool
}

// errClientCARemoved refuses a client certificate chain the TLS listener
// verified at the connection's handshake against a CA that tls.client_ca
// no longer holds.
var errClientCARemoved = fmt.Errorf("identity: mtls: the client certificate was verified at the connection's handshake by a CA that tls.client_ca no longer holds; the client must reconnect with a certificate of a CA in force: %w", identity.ErrInvalid)

// resolve is identity's Resolve for the evidence of a connection, after
// checking that a chain the TLS listener verified at the handshake still
// ends in a CA of tls.client_ca (clientRoots).
func (g *Gateway) resolve(ctx context.Context, ev identity.Evidence, specs []identity.Spec) (identity.Workload, error) {
	if !g.tlsRoots.trusts(ev.VerifiedChains) {
		return identity.Workload{Source: ev.Source.Addr().Unmap()}, errClientCARemoved
	}
	return g.ids.Resolve(ctx, ev, specs)
}

// admission is what admit found for one CONNECT or request.
type admission struct {
	pol   *policy.Policy
	wl    identity.Workload
	d     policy.Decision
	addrs []netip.AddrPort
	// perSub: the request goes to a batch endpoint whose sub-requests
	// are judged (judgeBatch), so admit left the rate limit to
	// chargeBatch, which charges each sub-request once they are judged.
	perSub bool
}

// admit is the one decision sequence of every CONNECT and every request
// inside a tunnel, in order: identity, policy, the request's own check of
// the decision (check, nil for a CONNECT), kill switch, rate limit, and
// the addresses to dial (the pinned ones when the decision allows them,
// else resolved and checked now). On a refusal it returns what to answer;
// a's workload and decision say how far it got, for the audit line. pol
// is the policy to decide with: the request's held one (Store.Acquire).
func (g *Gateway) admit(ctx context.Context, pol *policy.Policy, ev identity.Evidence, q policy.Query, dest target, pin pinnedAddrs, check func(policy.Decision) *refusal) (a admission, f *refusal) {
	refused := func(r refusal) (admission, *refusal) { return a, &r }
	a.pol = pol
	var sp tracing.Span // stays zero (no-op) when tracing is off
	if g.tracer != nil {
		sp = g.tracer.Stage(ctx, tracing.SpanIdentity)
	}
	wl, err := g.resolve(ctx, ev, a.pol.Workloads())
	a.wl = wl
	if err != nil {
		idf := identityRefusal(err)
		g.logClientRefusal(ctx, idf.Code, "identity did not verify", slog.String("source", sourceString(ev)), slog.Any("error", redactCaller(err, ev.ProxyAuthorization, wl)))
		if g.tracer != nil {
			sp.Fail(idf.Code)
		}
		return refused(idf)
	}
	q.Workload = wl
	if g.tracer != nil {
		sp.End()
		sp = g.tracer.Stage(ctx, tracing.SpanDecision)
	}
	a.d = a.pol.Decide(q)
	if g.tracer != nil {
		sp.Decided(a.d.Outcome(), a.d.Rule)
	}
	d := a.d
	if f := decisionRefusal(d, q.Connect); f != nil {
		return a, f
	}
	if check != nil {
		if f := check(d); f != nil {
			return a, f
		}
	}
	if f, off := g.switchRefusal(wl, d, q.Connect); off {
		return refused(f)
	}
	if a.perSub = judgesBatch(q, d); !a.perSub {
		if f, ok := g.rateLimit(ctx, wl, d, 1); !ok {
			return refused(f)
		}
	}
	a.addrs = pin.addrs
	if a.addrs == nil || (pin.private && !d.AllowPrivate) {
		a.addrs, err = g.resolver.allowed(ctx, dest.host, dest.port, d.AllowPrivate)
		if err != nil {
			a.addrs = nil
			return refused(addressRefusal(dest, err, d.Rule))
		}
	}
	return a, nil
}

// clientLogEvery is the interval of the log lines a client can cause on
// every request, per reason code (Gateway.clientLog).
const clientLogEvery = 10 * time.Second

// logClientRefusal logs msg at info for a refusal of code that a client
// can cause at will, at most once per code per clientLogEvery, saying how
// many were not logged since; each refusal is audited.
func (g *Gateway) logClientRefusal(ctx context.Context, code, msg string, attrs ...slog.Attr) {
	ok, held := g.clientLog.Allow(code)
	if !ok {
		return
	}
	attrs = append(attrs, slog.String("code", code), slog.Int("similar_refusals_not_logged", held))
	g.log.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
}

// fetchLogEvery is the interval of "credential fetch failed" lines per
// credential.
const fetchLogEvery = 10 * time.Second

// credentialRefusal answers a credential the cache could not provide:
// 503 with the backoff in force as Retry-After when the source is
// unavailable, 502 otherwise. The error is logged, never sent.
func (g *Gateway) credentialRefusal(x *exchange, plan *policy.InjectPlan, d policy.Decision, err error) refusal {
	// The error names the credential and the operation only; providers
	// never put a value in an error, and one that quotes what the caller
	// presented (its verified token, which a provider may exchange) has
	// it redacted, as has every credential the gateway holds (a provider
	// may quote its previous credential, or an endpoint's answer another
	// secret; logText). One line per credential per fetchLogEvery,
	// saying how many refusals it stands for.
	if ok, held := g.fetchLog.Allow(plan.Credential); ok {
		g.log.Warn("credential fetch failed", slog.String("credential", plan.Credential), slog.String("rule", d.Rule),
			slog.String("error", g.logText(nil, redactCaller(err, x.ev.ProxyAuthorization, x.wl))),
			slog.Int("similar_refusals_not_logged", held))
	}
	if errors.Is(err, providers.ErrNotConfigured) {
		// Not temporary: no Retry-After. The setting to fix (a variable
		// or file name) is the gateway's business: the log line above
		// names it, the client is pointed there.
		return newRefusal(http.StatusBadGateway, codeCredentialNotConfigured,
			fmt.Sprintf("credential %q for rule %q is not configured on the gateway: its source (an environment variable or file of the gateway) is missing; the gateway's log line \"credential fetch failed\" names it and the fix. The request was not forwarded; retrying will not help until the gateway's configuration is fixed", plan.Credential, d.Rule), d.Rule)
	}
	if !errors.Is(err, providers.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		return newRefusal(http.StatusBadGateway, codeCredentialError,
			fmt.Sprintf("credential %q for rule %q could not be obtained; the request was not forwarded", plan.Credential, d.Rule), d.Rule)
	}
	f := newRefusal(http.StatusServiceUnavailable, codeCredentialUnavail,
		fmt.Sprintf("credential %q for rule %q is unavailable right now; the request was not forwarded", plan.Credential, d.Rule), d.Rule)
	// Retry-After is the backoff the cache has in force for this
	// credential: asking sooner gets the same error.
	f.RetryAfter = 1
	if ra, ok := providers.RetryAfter(err, time.Now()); ok {
		f.RetryAfter = int(max(1, (ra+time.Second-1)/time.Second))
	}
	return f
}

// copySourceRefusal answers a request of an inject rule that names a
// second object in the copy or rename field name (canonical.SourceField),
// which the rule does not allow: the service would read or move that
// object with the injected credential, outside the paths the rule
// matched (S3's CopyObject from another bucket into the rule's).
func copySourceRefusal(d policy.Decision, name string) refusal {
	return newRefusal(http.StatusForbidden, codeCopySourceNotAllowed,
		fmt.Sprintf("the request names a second object in %s, which the service would read or move with credential %q outside the paths rule %q matched; the request was not forwarded: to allow copies and renames through this rule, set allow_copy_source: true in its inject block (and narrow the credential to what the rule's callers may read)",
			name, d.Inject.Credential, d.Rule), d.Rule)
}

// credentialHostRefusal answers a request whose credential is valid only
// on other hosts (providers.Credential.Hosts: a Salesforce token and its
// instance) than the destination, which the rule's pattern matched.
func credentialHostRefusal(d policy.Decision, cred *providers.Credential, host string) refusal {
	return newRefusal(http.StatusForbidden, codeCredentialHostMismatch,
		fmt.Sprintf("credential %q for rule %q is valid only on %s, not on %s (the service issued it for that host only); the request was not forwarded: send it to %s",
			d.Inject.Credential, d.Rule, strings.Join(cred.Hosts, ", "), host, cred.Hosts[0]), d.Rule)
}

// outbound builds the request sent upstream from the incoming one, as
// httputil.ProxyRequest's Out beside In: the destination checked at
// CONNECT (or in the absolute URI), the path exactly as checked (cp.Raw on
// the wire, whose one decoding the policy matched), no gateway-scoped
// header, no request trailers (see below), and the query as it is sent
// (sentQuery), before the injector signs it. The header map is handed
// over from the incoming request, which is not read again, so no
// per-request copy is made; ctx is the outbound request's context (one
// copy of the request for both, x.out).
func (x *exchange) outbound(ctx context.Context, cp canonical.Path) *http.Request {
	in, dest := x.r, x.dest
	x.outURL = *in.URL
	u := &x.outURL
	u.Scheme = x.scheme
	u.Host = dest.host
	if dest.ip && strings.Contains(dest.host, ":") {
		u.Host = "[" + dest.host + "]"
	}
	if (x.scheme == "https" && dest.port != 443) || (x.scheme == "http" && dest.port != 80) {
		u.Host = net.JoinHostPort(dest.host, strconv.Itoa(dest.port))
	}
	u.Opaque, u.User, u.Fragment = "", nil, ""
	u.Path, u.RawPath = cp.Decoded, cp.Raw
	u.RawQuery = sentQuery(u.RawQuery)
	// The request and its URL are fields of the exchange: no allocation
	// of their own (WithContext's copy, inlined, stays on the stack).
	x.out = *in.WithContext(ctx)
	out := &x.out
	out.URL = u
	out.Host = ""
	gatewayHeaders.Remove(out.Header) // canonical already: no per-request canonicalisation
	// Request trailers (the fields after a chunked HTTP/1.1 body or an
	// HTTP/2 request's last DATA frame) are never forwarded: they arrive
	// after the decision, no `when:` condition saw them, and servers that
	// merge trailers into the headers would see a field the policy never
	// judged. out.Trailer is the outbound request's own field, so the
	// incoming body still fills the incoming request's map at EOF (the
	// placeholder tripwire reads it there, misuseWatch) but the
	// transport, h1client's fallback included, sends none; the Trailer
	// field announcing them goes too.
	out.Trailer = nil
	delete(out.Header, "Trailer")
	return out
}

// handle decides, fetches, injects and forwards one request. pin are the
// addresses checked when the tunnel was opened (zero for plain HTTP,
// whose destination is resolved and checked here).
func (g *Gateway) handle(x *exchange, pin pinnedAddrs) {
	w, r, ev, scheme, dest := x.w, x.r, x.ev, x.scheme, x.dest
	cp, upgrade, f := g.prepareRequest(r)
	if f != nil {
		g.refuse(x, *f)
		return
	}
	// Before the body is wrapped: net/http's HTTP/2 server took the
	// field off (it answers 100 itself when the body is first read).
	expect := r.ProtoMajor == 2 && r.ContentLength != 0 && h2ExpectsContinue(r.Body)
	orig := r.Body
	wrapClientBody(&x.in, r)
	ib := g.idleBody(w, r)
	if r.Body != orig {
		defer func() {
			if ib != nil {
				ib.stop()
			}
			// net/http's server judges the body it handed out once the
			// handler returns: an unread Expect: 100-continue body is
			// not drained (the client never sends it), the connection
			// is closed instead. Wrapped, it drained it before writing
			// the response, which waited for the client's timeout.
			r.Body = orig
		}()
	}
	if g.draining.Load() && scheme == "http" {
		w.Header().Set("Connection", "close")
	}
	ctx := r.Context()
	if g.tracer != nil {
		ctx, x.trace = g.tracer.Start(ctx, r.Header, r.Method, scheme, dest.host, dest.port, cp.Raw)
		defer x.trace.End()
	}
	q := policy.Query{Scheme: scheme, Host: dest.host, Port: dest.port, Method: r.Method, Path: cp.Decoded, Header: r.Header, NoAllowReason: true}
	// The request holds the policy that decides it until it ends: its
	// providers stay open for its credential's fetch and a 401's reissue
	// even when a reload replaces it meanwhile (policy.Store.Acquire).
	pol := g.store.Acquire()
	defer g.store.Release(pol)
	a, f := g.admit(ctx, pol, ev, q, dest, pin, func(d policy.Decision) *refusal { return encodedSlashRefusal(cp, d) })
	x.wl, x.d, x.identified = a.wl, a.d, true
	if f != nil {
		if mf := g.tripwireOnDenied(x, a); mf != nil {
			f = mf
		}
		g.refuse(x, *f)
		return
	}
	d := a.d
	// What decided, for deciding the request (or its WebSocket) again
	// after a reload: before anything rewrites its headers.
	jd := judged(a.pol, q, a.wl, d)

	if d.Action == policy.Inject && !d.Inject.AllowCopySource {
		if name, ok := canonical.SourceField(r.Header); ok {
			g.refuse(x, copySourceRefusal(d, name))
			return
		}
	}
	if d.Action == policy.Inject && !d.Inject.AllowBatch {
		// A batch endpoint's sub-requests, judged one by one before the
		// credential is fetched (batch.go).
		v := g.judgeBatch(x, a, q, cp, ib)
		defer g.batchBuf.give(v.held) // its body, forwarded from memory, until the request ends
		x.batch = v.judged
		if v.expectRead {
			expect = false // read: the server answered the client's 100
		}
		if v.refusal != nil {
			g.refuse(x, *v.refusal)
			return
		}
		if f, ok := g.chargeBatch(ctx, a, v.judged); !ok {
			g.refuse(x, f)
			return
		}
		if v.observe != nil {
			d, a.d, x.d = *v.observe, *v.observe, *v.observe
		}
	}

	// x.st is still zero (handle runs once per exchange): its fields are
	// set in place, not from a composite literal, which the compiler
	// builds whole on the stack (about 1.9 KB zeroed) and then copies.
	st := &x.st
	// Every request is in flight from here until its response ends, an
	// upgrade request too: answered with an ordinary response (not 101),
	// it is relayed as one and cut as one by the kill switch, the loss of
	// its identity and upstream.response_idle_timeout. When the upstream
	// switches protocols, forward hands it over to the long-lived
	// connection's registration (relayUpgrade). Registered before its
	// credential is fetched: a kill switch, the loss of its identity or a
	// reload that covers a request waiting for a slow provider ends the
	// wait at once, not when the fetch returns.
	var tw *flightWatch
	if x.tunnel != nil && r.ProtoMajor == 1 && ctx == r.Context() {
		// The tunnel's HTTP/1.1 requests share its connection's context:
		// one watch of it, and one flight context, serve them all
		// (flightWatch).
		tw = &x.tunnel.watch
	}
	octx := g.startFlight(ctx, &st.flight, tw, ib, ev, a.wl, d, jd)
	defer g.endFlight(&st.flight)
	// A gRPC call's grpc-timeout cuts it as the kill switch does
	// (grpcend.go); the timer stops before the flight ends.
	deadline := g.armGRPCDeadline(r, &st.flight, x.start, dest)
	defer deadline.stop()
	if f, cut := g.cutWaiting(st, a.wl, d); cut {
		// Covered between its decision and now: nothing is fetched or
		// sent.
		g.refuse(x, f)
		return
	}

	var cred *providers.Credential
	var hit bool
	var bind providers.Binding
	if d.Action == policy.Inject {
		var err error
		bind = d.Inject.Bind(a.wl)
		var sp tracing.Span
		if g.tracer != nil {
			sp = g.tracer.Stage(ctx, tracing.SpanCredential)
			sp.Credential(d.Inject.Credential, d.Inject.ProviderName)
			bind.Fetch = tracing.Fetch(sp, d.Inject.Credential, d.Inject.ProviderName, bind.Fetch)
		}
		cred, hit, err = g.cache.GetBound(octx, bind)
		if err != nil {
			if f, cut := g.cutWaiting(st, a.wl, d); cut {
				// Cut while it waited for its credential: nothing was
				// sent.
				sp.Fail(f.Code)
				g.refuse(x, f)
				return
			}
			if ctx.Err() != nil {
				// The client went away, or the drain ended: answered
				// (for a client that only half-closed) and audited.
				f := ctxRefusal(ctx, d.Rule)
				sp.Fail(f.Code)
				g.refuse(x, f)
				return
			}
			f := g.credentialRefusal(x, d.Inject, d, err)
			sp.Fail(f.Code)
			g.refuse(x, f)
			return
		}
		if g.tracer != nil {
			sp.CacheResult(hit, "")
		}
		if !cred.AllowsHost(dest.host) {
			g.refuse(x, credentialHostRefusal(d, cred, dest.host))
			return
		}
	}

	st.addrs, st.pool, st.body, st.in, st.cred = a.addrs, g.pools.Load().forRequest(a.pol, d.AllowPrivate, a.addrs), ib, &x.in, cred
	st.http1 = g.cfg.Upstream.HTTP2 == HTTP2Match && r.ProtoMajor < 2
	sw := &st.sw
	sw.ResponseWriter = w
	if r.ProtoAtLeast(1, 1) && (scheme == "https" || r.Header["Expect"] == nil) {
		// A server must not send 1xx responses to an HTTP/1.0 client
		// (RFC 9110 §15.2). Not on the plain listener with Expect:
		// net/http's server writes its 100 Continue from the goroutine
		// reading the body, under a lock a 1xx from the transport's
		// goroutine cannot take.
		st.informational(sw)
	}
	st.ctx = stateCtx{Context: octx, st: st}
	out := x.outbound(&st.ctx, cp)
	if expect {
		// The origin decides whether the body is sent: the transport
		// reads it (and the server sends the client its 100) only when
		// the origin answers 100.
		out.Header["Expect"] = []string{"100-continue"}
	}
	if f := g.custodyRequest(x, out, st); f != nil {
		g.refuse(x, *f)
		return
	}
	if f := g.prepareResponse(x, cred, out, st); f != nil {
		g.refuse(x, *f)
		return
	}
	if upgrade {
		st.long = g.newLong(kindWebSocket, ev, a.wl, d, jd)
	}
	st.x = x
	if f := g.substitute(x, a, out, cred, bind.Key, st); f != nil {
		g.refuse(x, *f)
		return
	}
	// The injector acts last on the request: whatever it signs (hmac,
	// sigv4, httpsig, azure-sharedkey sign the method, path, headers and
	// body) is exactly what is sent, placeholders already replaced and
	// custody values and Accept-Encoding already set.
	if d.Action == policy.Inject {
		if err := injectors.ApplyFor(d.Inject.Injector, out, cred, a.wl); err != nil {
			if f, failed := clientBodyRefusal(&x.in, ib, "the request was not forwarded", d.Rule); failed {
				g.refuse(x, f) // the injector read the body to sign it: the client's doing
				return
			}
			g.log.Warn("injection failed", slog.String("credential", d.Inject.Credential), slog.String("as", d.Inject.As), slog.String("error", g.logText(st, err)))
			g.rejectUnusable(bind.Key, cred, err)
			g.refuse(x, injectRefusal(err, d))
			return
		}
		cert, err := injectors.ClientCertificateOf(d.Inject.Injector, cred)
		if err != nil {
			g.log.Warn("client certificate not usable", slog.String("credential", d.Inject.Credential), slog.String("error", g.logText(st, err)))
			g.rejectUnusable(bind.Key, cred, err)
			g.refuse(x, newRefusal(http.StatusBadGateway, codeInjectFailed,
				fmt.Sprintf("credential %q is not a usable TLS client certificate; the request was not forwarded", d.Inject.Credential), d.Rule))
			return
		}
		st.cert = cert
		st.reissue = reissuePlanFor(r, d.Inject, bind, cred, hit)
		if st.reissue != nil {
			st.reissue.wl = a.wl
		}
	}
	body := &st.reqBody
	body.ReadCloser = out.Body
	if out.Body != nil && out.Body != http.NoBody {
		out.Body = body
	}
	if g.tracer != nil {
		// The upstream's traceparent: the gateway's hop as parent when
		// sampled (section Tracing of docs/audit-and-metrics.md).
		out = out.WithContext(x.trace.Upstream(out.Context(), out.Header, out.Method, dest.host, dest.port))
	}
	aborted := g.forwardRecovered(sw, out)
	if g.tracer != nil {
		x.trace.UpstreamDone(st.upstatus, st.refusalCode())
	}

	status := sw.status
	switch {
	case status == 0 && st.refusal != nil:
		status = st.refusal.Status // nothing could be written: the client left
	case st.refusal != nil && status == http.StatusOK && isGRPC(x.r):
		status = st.refusal.Status // answered as a gRPC refusal: 200 on the wire
	case status == 0:
		status = http.StatusOK
	}
	aev := g.event(x, cp.Raw)
	ev2 := &aev
	ev2.PolicyVersion = a.pol.Stats().Hash // the policy that decided, even if reloaded since
	if d.Action == policy.Inject {
		ev2.Credential = d.Inject.Credential
		ev2.CacheHit = hit && !st.reissued
		c := cmp.Or(st.reissuedCred, cred)
		ev2.CredentialFP = g.audit.credentialFPKey(st.credKey(c), c)
	}
	if st.refusal != nil {
		ev2.Decision, ev2.Code, ev2.Switch = policy.Deny.String(), st.refusal.Code, st.refusal.Switch
	}
	cut := st.flight.refusal()
	if aborted && (ev2.Code == "" || cut != nil && st.abortCode == cut.Code) {
		// The response broke off after its headers (the upstream cut the
		// body, or the client stopped reading). What cut it in flight
		// names the line's code even when observe mode gave it one
		// (would_deny's refusal code).
		ev2.Code = st.abortCode
		if ev2.Code == "" {
			ev2.Code = codeUpstreamError
		}
		if cut != nil && ev2.Code == cut.Code {
			ev2.Switch = cut.Switch // cut mid-response by the kill switch (or, without one, the identity's loss or a reload)
		}
	}
	ev2.Status = status
	ev2.GRPCStatus = st.grpcStatus
	if st.refusal != nil && sw.status == http.StatusOK && isGRPC(x.r) && st.refusal.Code != codeRequestBodyAborted {
		// Answered as a gRPC refusal; not for a client that went away,
		// whose answer mostly reached nobody.
		ev2.GRPCStatus = strconv.Itoa(int(st.refusal.grpcStatus()))
	}
	ev2.BytesIn = body.n.Load()
	ev2.BytesOut = sw.n
	if st.long != nil && status == http.StatusSwitchingProtocols {
		ev2.Closed, ev2.BytesIn, ev2.BytesOut = st.long.endReason(), st.long.in.Load(), st.long.out.Load()
	}
	ev2.Upstream = st.upDur
	g.placeholderAudit(ev2, x, st)
	g.auditResponse(ev2, st)
	ev2.Duration = time.Since(x.start)
	g.metrics.request(ev2.Decision, d.Rule, status, ev2.Duration)
	if !aborted {
		sendWhole(r, st)
	}
	g.audit.write(ev2)
	if g.tracer != nil {
		x.trace.Outcome(ev2.Workload, ev2.Rule, ev2.Decision, ev2.Code, ev2.Status)
	}
	if aborted && !st.grpcEnded {
		panic(http.ErrAbortHandler) // the server cuts the client's response
	}
}

// sendWhole sends an HTTP/1.x response forward relayed whole to the
// client now, rather than when the handler returns: the client has its
// answer while the gateway writes the audit line and tidies up, off the
// request's latency. The line, the metrics and the duration are the same
// as without it (the audit writer is asynchronous anyway: a line is never
// on disk when its response is sent). An HTTP/2 response is left to the
// server, which ends the stream with its last DATA frame when the handler
// returns; a streamed or chunked one was flushed as it came or needs the
// server's last chunk.
func sendWhole(r *http.Request, st *reqState) {
	if st.whole && r.ProtoMajor == 1 {
		_ = st.rc.Flush()
	}
}

// forwardRecovered forwards r and reports whether the response was
// aborted (http.ErrAbortHandler), so that handle audits the request before
// passing the abort on to the server.
func (g *Gateway) forwardRecovered(w http.ResponseWriter, r *http.Request) (aborted bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			aborted = true
		}
	}()
	g.forward(w, r)
	return false
}

// injectRefusal answers a failed Inject: 413 for a body the injector
// would have to buffer beyond its cap, 400 for a request form it cannot
// rewrite (a presigned URL), 502 otherwise. The injector's error is
// logged, never sent: the reason is a fixed sentence.
// rejectUnusable drops cred from the cache, in memory and in Redis, when
// err says the credential's value is at fault (injectors.FaultOf:
// ErrInvalidValue, ErrMissingField, or a placeholder's secret that cannot
// be placed): it would fail every request until it expired. The next
// request after the cache's error backoff fetches it anew; requests
// within the backoff get 503 credential_unavailable with Retry-After,
// without asking the source (providers.Cache.Reject). Errors that are the
// request's or the caller's doing (ErrRequest), or the injector's, keep
// it: one caller's request must not make the credential unavailable to
// the others.
func (g *Gateway) rejectUnusable(key providers.CacheKey, cred *providers.Credential, err error) {
	if cred == nil || injectors.FaultOf(err) != injectors.FaultValue {
		return
	}
	if g.cache.Reject(key, cred, err) {
		g.log.Warn("credential dropped from the cache: the injector cannot use it; the next request after the error backoff fetches it again",
			slog.String("credential", key.Credential), slog.String("provider", key.Provider))
	}
}

func injectRefusal(err error, d policy.Decision) refusal {
	switch {
	case errors.Is(err, errBodyIdle):
		// The injector read the body (to sign it) and the client stalled.
		return newRefusal(http.StatusRequestTimeout, codeBodyTimeout,
			"the client stalled the request body (limits.body_idle_timeout, limits.body_min_rate); the request was not forwarded", d.Rule)
	case errors.Is(err, injectors.ErrBodyTooLarge):
		return newRefusal(http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			fmt.Sprintf("the request body is larger than %s may hold to sign it; send a smaller body or one with a declared payload hash (x-amz-content-sha256)", d.Inject.As), d.Rule)
	case errors.Is(err, injectors.ErrUnsupportedRequest):
		return newRefusal(http.StatusBadRequest, codeUnsupportedRequest,
			fmt.Sprintf("the request cannot be re-signed as %s (for example a presigned URL); send it signed with headers through the gateway", d.Inject.As), d.Rule)
	}
	return newRefusal(http.StatusBadGateway, codeInjectFailed,
		fmt.Sprintf("credential %q could not be injected as %s; the request was not forwarded", d.Inject.Credential, d.Inject.As), d.Rule)
}

// event starts the audit event of x, whose path (without query) is path.
// A value: the audit line is encoded from it before the request returns,
// so it need not live on the heap.
func (g *Gateway) event(x *exchange, path string) event {
	e := event{
		Time:     x.start,
		Workload: x.wl.DisplayName(),
		Factors:  x.wl.Factors,
		Source:   sourceOf(x.wl.Factors, x.ev),
		Via:      viaString(x.ev),
		Method:   x.r.Method,
		Scheme:   x.scheme,
		Host:     x.dest.host,
		Port:     x.dest.port,
		Path:     path,
		Rule:     x.d.Rule,
		Decision: x.d.Outcome(),
		Code:     x.d.Code,
		Batch:    x.batch,
	}
	if wantPresented(x.wl, x.d.Code) {
		e.Presented = presented(x.ev)
	}
	return e
}

// refuse answers a request the gateway will not forward, counts the
// refusal and audits it with what x knows so far.
func (g *Gateway) refuse(x *exchange, f refusal) {
	f.write(x.w, x.r)
	g.metrics.refusals.WithLabelValues(f.Code).Inc()
	if !x.identified {
		// Refused before identity (a path or method the gateway will not
		// forward, a Host naming another destination): the line names
		// the workload the request's evidence verifies, inside a tunnel
		// the tunnel's, as refuseUnreadable's does.
		x.wl = g.auditIdentity(x.r.Context(), x.ev)
		x.identified = true
	}
	ev := g.event(x, x.r.URL.EscapedPath())
	e := &ev
	e.Decision, e.Code, e.Status, e.Switch = policy.Deny.String(), f.Code, f.Status, f.Switch
	if isGRPC(x.r) && f.Code != codeRequestBodyAborted {
		// Not for a client that went away: its answer mostly reached
		// nobody.
		e.GRPCStatus = strconv.Itoa(int(f.grpcStatus()))
	}
	e.Tripwire = x.tripwire
	if q := x.quarantined.Load(); q != nil {
		e.Quarantined = *q
	}
	if f.Rule != "" {
		e.Rule = f.Rule
	}
	e.Duration = time.Since(x.start)
	g.metrics.request(e.Decision, e.Rule, f.Status, e.Duration)
	g.audit.write(e)
	if g.tracer != nil {
		x.trace.Outcome(e.Workload, e.Rule, e.Decision, e.Code, e.Status)
	}
}

// refuseUnreadable audits and counts a request that the HTTP/1.1 server
// answered itself, without a handler, because it could not read it or
// will not serve it (h1.Server.Refused): 400, 431, 505 or 417
// malformed_request, with the gateway's reason header and JSON body; and
// a request whose header block the client started and did not finish
// (h1.Refusal.Cut; nothing is answered): client_aborted (499) when it
// closed or reset the connection, header_timeout (408) when it was
// slower than limits.read_header_timeout.
// Inside a tunnel the audit line names the tunnel's workload (identity
// resolved from the CONNECT's evidence, as for every request in the
// tunnel) and destination; on a proxy listener, the workload the
// connection's own evidence verifies (its source address and client
// certificate: a Proxy-Authorization field is in the request that did
// not parse) and no destination. The method and path are named only when
// the request parsed: never bytes of what did not.
func (g *Gateway) refuseUnreadable(ctx context.Context, r h1.Refusal) h1.Answer {
	start := time.Now()
	var f refusal
	switch r.Cut {
	case h1.CutClosed:
		f = newRefusal(statusClientClosed, codeRequestBodyAborted,
			"the client closed the connection before its request's header block ended; nothing was answered", "")
	case h1.CutTimeout:
		f = newRefusal(http.StatusRequestTimeout, codeHeaderTimeout,
			fmt.Sprintf("the client did not finish its request's header block within limits.read_header_timeout (%s); nothing was answered", g.cfg.Limits.ReadHeaderTimeout.D()), "")
	default:
		f = newRefusal(r.Status, codeMalformedRequest, g.unreadableReason(r), "")
	}
	e := event{Time: start, Method: r.Method, Path: r.Path, Decision: policy.Deny.String(), Code: f.Code, Status: f.Status}
	var ev identity.Evidence
	if tc, _ := ctx.Value(tunnelKey).(*tunnelConn); tc != nil {
		e.Scheme, e.Host, e.Port = "https", tc.dest.host, tc.dest.port
		ev = tc.ev
	} else {
		// A proxy listener's connection: whether the request was a
		// CONNECT or an absolute-form one is not known.
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			ev.Source = ap
		}
		ev.Via = g.viaOf(ctx)
		if r.TLS != nil {
			ev.VerifiedChains, ev.PeerCertificates = r.TLS.VerifiedChains, r.TLS.PeerCertificates
		}
	}
	wl := g.auditIdentity(ctx, ev)
	e.Workload, e.Factors, e.Source, e.Via = wl.DisplayName(), wl.Factors, sourceOf(wl.Factors, ev), viaString(ev)
	if wantPresented(wl, f.Code) {
		e.Presented = presented(ev)
	}
	g.metrics.refusals.WithLabelValues(f.Code).Inc()
	e.Duration = time.Since(start)
	g.metrics.request(e.Decision, "", f.Status, e.Duration)
	g.audit.write(&e)
	h := http.Header{}
	f.setHeader(h)
	return h1.Answer{Header: h, Body: f.body()}
}

// auditIdentity is the workload ev verifies, for the audit line of a
// request refused before the decision. On an error it is what verified,
// if anything: the line is the refused request's, the identity failure
// is the next request's to report.
func (g *Gateway) auditIdentity(ctx context.Context, ev identity.Evidence) identity.Workload {
	wl, _ := g.resolve(ctx, ev, g.store.Current().Workloads())
	return wl
}

// unreadableReason is the refusal reason for r: what was wrong and what
// to send instead. r.Reason is the HTTP server's fixed words.
func (g *Gateway) unreadableReason(r h1.Refusal) string {
	switch r.Status {
	case http.StatusRequestHeaderFieldsTooLarge:
		return fmt.Sprintf("the request's header block is larger than limits.max_header_bytes (%d bytes); send fewer or shorter header fields", g.cfg.Limits.MaxHeaderBytes)
	case http.StatusHTTPVersionNotSupported:
		return "the request line names an HTTP version other than 1.x; send HTTP/1.1 (HTTP/2 is spoken only inside a CONNECT tunnel, chosen with ALPN h2 in the TLS handshake)"
	case http.StatusExpectationFailed:
		return "the Expect header asks for something other than 100-continue; send Expect: 100-continue or no Expect field"
	}
	return "the request could not be read as HTTP/1.1 (" + r.Reason + "); send a request line whose target is an absolute path of valid percent-encodings without control bytes, one Host header, and valid header field names and values"
}

// reissuePlanFor returns how to handle a 401 to the request r, or nil
// when its credential is not a cached one whose provider asks for that
// (providers.Binding.Reissue). It reads the incoming request.
func reissuePlanFor(r *http.Request, plan *policy.InjectPlan, b providers.Binding, cred *providers.Credential, hit bool) *reissuePlan {
	if !b.Reissue || !hit {
		// A credential fetched for this very request and rejected at once
		// is not dropped: fetching again for every request would turn a
		// misconfigured upstream into load on the provider.
		return nil
	}
	rp := &reissuePlan{bind: b, used: cred, inj: plan.Injector}
	// ContentLength 0 is "no body" on HTTP/1 (NoBody) and HTTP/2 (a
	// stream ended with its headers, or content-length: 0, which the
	// server enforces); -1 is a body of unknown length.
	noBody := r.ContentLength == 0
	upgrade := r.Header.Get("Upgrade") != ""
	// Only injectors that declare what they set can be re-applied so that
	// nothing of the rejected credential remains; a client certificate
	// would need another transport.
	if injectors.Replayable(plan.Injector) && idempotent[r.Method] && noBody && !upgrade {
		rp.replay = true
	}
	return rp
}

// timedTransport measures the upstream round trip and handles a 401 to a
// request that carried a cached, reissuable credential.
type timedTransport struct {
	// t serves requests without a reqState (none are forwarded: their
	// dial fails).
	t http.RoundTripper
	g *Gateway
}

func (tt timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	st, _ := r.Context().Value(stateKey).(*reqState)
	t := tt.t
	if st != nil && st.pool != nil {
		t = st.pool.transport(st, r.URL)
	}
	t0 := time.Now()
	if st != nil && st.pool != nil && mayHTTP2(st.pool, t) {
		// Released by the forwarder once the response was relayed.
		st.h2.begin(st.pool.h2, r.URL)
	}
	if st != nil && tt.g != nil {
		st.tries.start(tt.g.cfg.Upstream.ResponseHeaderTimeout.D(), &st.flight)
		defer st.tries.stop()
		if r.Body == &st.reqBody {
			st.upload.watch(&st.reqBody, tt.g.cfg.Upstream.ResponseIdleTimeout.D(), tt.g.cfg.Upstream.ResponseHeaderTimeout.D(), &st.flight)
			defer st.upload.stop()
		}
	}
	in := r
	if _, own := t.(*h1client.Client); !own {
		// net/http's transports know the 1xx relay and the count of
		// attempts only as a ClientTrace.
		r = h1client.WithTrace(in)
	}
	resp, err := t.RoundTrip(r)
	if err != nil && st != nil && st.h2.retry(r.Body != nil && r.Body != http.NoBody) && r.Context().Err() == nil {
		// Handed an HTTP/2 connection h2Conns closed as the request
		// came to it: nothing of the request reached the upstream.
		resp, err = t.RoundTrip(r)
	}
	if errors.Is(err, errHTTP2Only) && st != nil {
		// Found out while dialling, before anything of the request was
		// sent (an HTTP/1.1 client's body, on the HTTP/1.1 loop, is
		// still unread; the transport's Close of it is a no-op there;
		// the h1client, which read a small body first, hands back a
		// copy of the request that replays it): now sent through the
		// pool's bridge to HTTP/2.
		r2 := in
		if ns, ok := errors.AsType[*h1client.NotSentError](err); ok {
			r2 = ns.Request
		}
		if r2.Body != r.Body {
			st.upload.stop() // the copy's reads are not the body's
		}
		st.h2.begin(st.pool.h2, r.URL) // match: HTTP/2
		resp, err = st.pool.transport(st, r.URL).RoundTrip(h1client.WithTrace(r2))
	}
	if err == nil && resp.StatusCode == http.StatusUnauthorized && st != nil && st.reissue != nil && tt.g != nil {
		if st.pool != nil {
			// Chosen again: a reload of upstream.ca_bundle since the
			// first attempt retired the pool, and the new credential
			// goes out under the trust in force (invariant 1).
			t = st.pool.transport(st, r.URL)
		}
		resp, err = tt.g.reissue(t, r, resp, st)
	}
	if st != nil {
		st.upStart, st.upDur = t0, time.Since(t0)
	}
	return resp, err
}

// reissue handles a 401 to a request that carried a cached credential
// whose binding asks for reissue: the credential is dropped from the cache (unless
// a newer one replaced it already), and a replayable request is rebuilt
// from the outbound request — the injector's headers removed, a new
// credential injected — and sent once more to the same checked
// addresses. When no new credential can be had, or the request cannot be
// replayed, the upstream's 401 is returned as it came.
func (g *Gateway) reissue(t http.RoundTripper, r *http.Request, resp *http.Response, st *reqState) (*http.Response, error) {
	rp := st.reissue
	st.reissue = nil // once per request
	g.cache.Forget(rp.bind.Key, rp.used)
	if !rp.replay || (r.Body != nil && r.Body != http.NoBody) {
		return resp, nil
	}
	ctx := r.Context()
	cred, _, err := g.cache.GetBound(ctx, rp.bind)
	if err != nil {
		g.log.Info("upstream rejected the credential; no new one to retry with",
			slog.String("credential", rp.bind.Key.Credential), slog.Any("error", err))
		return resp, nil
	}
	if !cred.AllowsHost(r.URL.Hostname()) {
		// The new credential is for another host (the org moved): it is
		// never sent here; the client gets the 401, and its next request
		// to this host is refused with credential_host_mismatch.
		g.log.Info("upstream rejected the credential; the new one is for another host, not retried",
			slog.String("credential", rp.bind.Key.Credential), slog.String("host", r.URL.Hostname()), slog.Any("hosts", cred.Hosts))
		return resp, nil
	}
	r2 := r.Clone(ctx)
	r2.Body = nil
	if err := injectors.ApplyFor(rp.inj, r2, cred, rp.wl); err != nil {
		g.log.Warn("re-injection failed; returning the upstream's 401", slog.String("credential", rp.bind.Key.Credential), slog.String("error", g.logText(st, err, cred)))
		g.rejectUnusable(rp.bind.Key, cred, err)
		return resp, nil
	}
	// The 401 is discarded: drain a little of it so the connection can
	// be reused, then close it.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
	st.reissued, st.reissuedCred = true, cred
	// Before the retry is sent, known to every scrubbing rule, this
	// one's or not, as prepareResponse registers the first credential:
	// an upstream that keeps the new value may send it back in another
	// rule's response (TestEveryInjectedCredentialScrubbable).
	s := g.scrubbers.get(cred)
	if st.resp != nil && st.resp.credScrubbed {
		// Its 1xx responses are scrubbed too.
		st.resp.addScrubber(s)
	}
	g.log.Info("upstream rejected a cached credential; retried once with a new one",
		slog.String("credential", rp.bind.Key.Credential), slog.String("host", r.URL.Host))
	st.tries.start(g.cfg.Upstream.ResponseHeaderTimeout.D(), &st.flight) // its attempts counted afresh
	return t.RoundTrip(r2)
}

// upstreamResponse records the upstream's answer. Redirects pass through
// untouched: the gateway never follows them (invariant 2).
func (g *Gateway) upstreamResponse(resp *http.Response) error {
	if st, _ := resp.Request.Context().Value(stateKey).(*reqState); st != nil {
		st.upstatus = resp.StatusCode
		g.metrics.upstreamLatency.Observe(st.upDur.Seconds())
	}
	return nil
}

// upstreamError answers a failed round trip with a reason code. The error
// itself is logged without its URL, whose query may hold an injected
// credential, and never sent to the client.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey).(*reqState)
	if f, ok := cutInFlight(r, st); ok {
		// The kill switch, or the expiry or revocation of the identity,
		// cancelled the request before its response began
		// (inflight.go); a body read it ended is its doing too.
		st.refusal = f
		g.metrics.refusals.WithLabelValues(f.Code).Inc()
		f.write(w, r)
		return
	}
	if st != nil && st.body.cutOff() {
		f := g.bodyTimeoutRefusal()
		st.refusal = &f
		g.metrics.refusals.WithLabelValues(f.Code).Inc()
		f.write(w, r)
		return
	}
	if st != nil {
		if f, failed := clientBodyRefusal(st.in, st.body, "the upstream request was cancelled", ""); failed {
			// The client went away mid-body or sent a malformed one:
			// whichever reader met it, it is the client's doing, not the
			// upstream's.
			st.refusal = &f
			g.metrics.refusals.WithLabelValues(f.Code).Inc()
			f.write(w, r)
			return
		}
	}
	if f, ok := g.placeholderStreamRefusal(r, st, err); ok {
		st.refusal = &f
		g.metrics.refusals.WithLabelValues(f.Code).Inc()
		f.write(w, r)
		return
	}
	if f, ok := retriesRefusal(r, st); ok {
		st.refusal = &f
		g.metrics.refusals.WithLabelValues(f.Code).Inc()
		f.write(w, r)
		return
	}
	if r.Context().Err() != nil {
		// The client went away (the answer, written for a client that
		// only half-closed, reaches nobody), or the drain ended.
		f := ctxRefusal(r.Context(), "")
		if st != nil {
			st.refusal = &f
		}
		g.metrics.refusals.WithLabelValues(f.Code).Inc()
		f.write(w, r)
		return
	}
	if st != nil && st.x != nil {
		if f, ok := grpcDeadlinePassed(r, st.x.start, err, ""); ok {
			// The upstream enforced the call's grpc-timeout (a reset,
			// or the gateway's own wait timed out) once it had passed.
			g.log.Info("upstream request failed after the gRPC call's deadline", slog.String("host", r.URL.Host), slog.String("error", g.logText(st, err)))
			st.refusal = &f
			g.metrics.refusals.WithLabelValues(f.Code).Inc()
			f.write(w, r)
			return
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	dest := r.URL.Host
	var f refusal
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var weak *weakCertError
	var netErr net.Error
	tooLarge := responseHeadersTooLarge(err)
	switch {
	case errors.Is(err, injectors.ErrBodyTooLarge):
		// A streaming injector met a part of the body (an aws-chunked
		// chunk) larger than it may hold.
		f = newRefusal(http.StatusRequestEntityTooLarge, codeBodyTooLarge, fmt.Sprintf("a part of the request body to %s was larger than the injector may hold to sign it", dest), "")
	case errors.Is(err, errTooMany1xx):
		f = newRefusal(http.StatusBadGateway, codeUpstreamError, fmt.Sprintf("%s sent more than %d informational (1xx) responses, or more than %d bytes of them, before its final response; the upstream request was cancelled", dest, max1xx, max1xxBytes), "")
	case tooLarge == "yes":
		f = newRefusal(http.StatusBadGateway, codeUpstreamError, fmt.Sprintf("the response headers of %s were larger than upstream.max_response_header_bytes (%d bytes); the upstream request was cancelled; raise the setting if %s sends headers that large", dest, g.cfg.Upstream.MaxResponseHeaderBytes, dest), "")
	case tooLarge != "":
		f = newRefusal(http.StatusBadGateway, codeUpstreamError, fmt.Sprintf("the HTTP/2 connection to %s broke (%s): response headers larger than upstream.max_response_header_bytes (%d bytes) are one cause, frames %s encoded wrongly the other; the upstream request was cancelled", dest, tooLarge, g.cfg.Upstream.MaxResponseHeaderBytes, dest), "")
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &weak):
		f = newRefusal(http.StatusBadGateway, codeUpstreamTLS, fmt.Sprintf("the TLS certificate of %s did not verify: %s; nothing was sent", dest, upstreamTLSWhy(err)), "")
	case isTLSHandshakeError(err):
		f = newRefusal(http.StatusBadGateway, codeUpstreamTLS, fmt.Sprintf("the TLS connection to %s failed: %s", dest, tlsHandshakeWhy(err)), "")
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		f = newRefusal(http.StatusBadGateway, codeUpstreamUnreach, fmt.Sprintf("%s is not reachable", dest), "")
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		f = newRefusal(http.StatusGatewayTimeout, codeUpstreamTimeout, fmt.Sprintf("%s did not answer in time", dest), "")
	default:
		f = newRefusal(http.StatusBadGateway, codeUpstreamError, fmt.Sprintf("the connection to %s failed", dest), "")
		if code, reset := upstreamResetCode(err); reset && isGRPC(r) {
			// The gRPC server reset the call's stream: the client is
			// told what it would be calling directly.
			f = upstreamResetRefusal(dest, code, false)
		}
	}
	if f.Code == codeUpstreamError && g.cfg.Upstream.HTTP2 == HTTP2Never && grpcNeedsHTTP2(r) {
		// A gRPC server closes an HTTP/1.1 request's connection (EOF):
		// say why, not only that it failed.
		f.Reason += "; this is a gRPC call, which needs HTTP/2 to the upstream, and upstream.http2 is never, so it was sent over HTTP/1.1: set upstream.http2 to match (or always) in the gateway config"
	}
	g.log.Info("upstream request failed", slog.String("host", dest), slog.String("code", f.Code), slog.String("error", g.logText(st, err)))
	if st != nil {
		st.refusal = &f
	}
	g.metrics.refusals.WithLabelValues(f.Code).Inc()
	f.write(w, r)
}

// bodyTimeoutRefusal answers a request whose client stalled its body
// (limits.body_idle_timeout, limits.body_min_rate) while it was sent
// upstream.
func (g *Gateway) bodyTimeoutRefusal() refusal {
	return newRefusal(http.StatusRequestTimeout, codeBodyTimeout,
		fmt.Sprintf("the client stalled the request body (no byte for %s, or slower than limits.body_min_rate); the upstream request was cancelled", g.cfg.Limits.BodyIdleTimeout.D()), "")
}

// ctxRefusal is the refusal of a request whose context was cancelled
// before it was answered: 503 shutting_down when the drain of a shutdown
// ended (errDrainEnded), else the client went away (499 client_aborted).
func ctxRefusal(ctx context.Context, rule string) refusal {
	if errors.Is(context.Cause(ctx), errDrainEnded) {
		return newRefusal(http.StatusServiceUnavailable, codeShuttingDown, "the gateway shut down (shutdown_timeout passed) before this request was answered; it may have reached the upstream; retry", rule)
	}
	return newRefusal(statusClientClosed, codeRequestBodyAborted, "client closed the request", rule)
}

// upstreamTLSWhy says why an upstream certificate did not verify and what
// to change. It names only what the server presented (issuer, names,
// validity), never anything of the request.
func upstreamTLSWhy(err error) string {
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var insecure x509.InsecureAlgorithmError
	var weak *weakCertError
	switch {
	case errors.As(err, &weak):
		return weak.why + "; the server needs a certificate with a stronger key, issued by a CA"
	case errors.As(err, &insecure), errors.As(err, &unknownAuth) && strings.Contains(unknownAuth.Error(), "insecure algorithm"):
		// crypto/x509 reports a chain signed with SHA-1 as an unknown
		// authority whose hint names the algorithm: the CA may well be
		// trusted, its signature is not.
		return "it is signed with an insecure algorithm (SHA-1 or MD5), which the gateway refuses; the server needs a certificate signed with SHA-256 or better (" + err.Error() + ")"
	case errors.As(err, &unknownAuth):
		issuer := "an unknown CA"
		if c := unknownAuth.Cert; c != nil && c.Issuer.String() != "" {
			issuer = fmt.Sprintf("%q", c.Issuer.String())
		}
		return fmt.Sprintf("it is signed by %s, which the gateway does not trust (unknown authority); if the server uses a private CA, add that CA's certificate to upstream.ca_bundle in the gateway config", issuer)
	case errors.As(err, &hostErr):
		return fmt.Sprintf("name mismatch: %s; the destination's host name must be one the certificate names (or fix the server's certificate)", hostErr.Error())
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Sprintf("the certificate is expired or not yet valid (%s); renew it on the server or check this machine's clock", invalid.Error())
	case errors.As(err, &invalid):
		return fmt.Sprintf("the certificate is not acceptable (%s); fix the server's certificate or upstream.ca_bundle in the gateway config", invalid.Error())
	}
	return "the TLS handshake failed verification; check the server's certificate and upstream.ca_bundle in the gateway config"
}

// statusWriter records the status and body bytes sent to the client. It
// unwraps for http.ResponseController, so flushing and the hijack that a
// WebSocket upgrade needs still reach the server's writer.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	if code == http.StatusSwitchingProtocols {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.n += int64(n)
	return n, err
}

// Flush implements http.Flusher.
func (s *statusWriter) Flush() { _ = http.NewResponseController(s.ResponseWriter).Flush() }

// Unwrap is for http.ResponseController.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// countingBody counts request body bytes, and tells w (when set) when
// the transport reads them.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
	w *uploadWatch
}

func (b *countingBody) Read(p []byte) (int, error) {
	w := b.w
	if w != nil {
		w.begin()
	}
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if w != nil {
		w.end(err)
	}
	return n, err
}
