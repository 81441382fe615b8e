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

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
)

// gatewayHeaders are request headers scoped to the client-to-gateway hop
// or asserting a client identity. They never reach an upstream, whatever
// the decision (invariants 3 and 7): the destination sees the gateway as
// its client, and internal addresses and certificates do not leak to a
// SaaS. net/http/httputil removes the other hop-by-hop headers.
var gatewayHeaders = []string{
	"Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate", ReasonHeader,
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip",
	"X-Client-Cert", "X-Forwarded-Client-Cert", "X-Ssl-Client-Cert",
}

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
	// the request carried a cached credential of a providers.Reissuer.
	reissue *reissuePlan
	// reissued is set when the request was sent again with a new
	// credential, reissuedCred.
	reissued     bool
	reissuedCred *providers.Credential
	// abortCode says why a response broke off after its headers.
	abortCode string
	// http1: send the request upstream over HTTP/1.1 (upstream.http2).
	http1 bool
}

// reissuePlan is what the round trip needs to drop a credential an
// upstream rejected and, for a replayable request, send it once more with
// a new one.
type reissuePlan struct {
	key   providers.CacheKey
	used  *providers.Credential
	fetch func(context.Context) (*providers.Credential, error)
	// inj re-injects; headers are the names it sets (removed first, so
	// nothing of the rejected credential is sent again).
	inj     injectors.Injector
	headers []string
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
	if g.refuseAuditStalled(w) {
		return
	}
	if r.Method == http.MethodConnect {
		g.connect.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	ev := evidence(r)
	if !r.URL.IsAbs() {
		g.refuse(w, r, start, ev, target{}, newRefusal(http.StatusBadRequest, codeNotProxyRequest,
			"this is a proxy: send absolute-URI requests (http://host/path) or CONNECT host:port", ""))
		return
	}
	if r.URL.Scheme != "http" {
		g.refuse(w, r, start, ev, target{}, newRefusal(http.StatusBadRequest, codeBadRequest,
			fmt.Sprintf("scheme %q is not proxied as an absolute URI; use CONNECT for https", r.URL.Scheme), ""))
		return
	}
	dest, err := parseTarget(r.URL.Host, 80)
	if err != nil {
		g.refuse(w, r, start, ev, target{}, newRefusal(http.StatusBadRequest, codeBadRequest, "request target "+err.Error(), ""))
		return
	}
	// For an absolute-form request the URI is authoritative: net/http has
	// already replaced the Host header with the URI's host (RFC 9112
	// §3.2.2), so Host and destination agree by construction.
	g.handle(w, r, start, ev, "http", dest, nil, false)
}

// serveIntercepted handles requests inside an intercepted tunnel.
func (g *Gateway) serveIntercepted(w http.ResponseWriter, r *http.Request) {
	if g.refuseAuditStalled(w) {
		return
	}
	start := time.Now()
	tc, _ := r.Context().Value(tunnelKey).(*tunnelConn)
	if tc == nil {
		// Cannot happen: only tunnels are handed to this server.
		http.Error(w, "not a tunnel", http.StatusInternalServerError)
		return
	}
	// r.Host is the Host header (HTTP/1.1) or :authority (HTTP/2); an
	// absolute-form request line must agree with it (net/http checks).
	if h, err := parseTarget(r.Host, 443); err != nil || h != tc.dest {
		g.refuse(w, r, start, tc.ev, tc.dest, newRefusal(http.StatusMisdirectedRequest, codeHostMismatch,
			fmt.Sprintf("the Host header %q does not name the tunnel's destination %s", r.Host, tc.dest.hostPort()), ""))
		return
	}
	g.handle(w, r, start, tc.ev, "https", tc.dest, tc.addrs, tc.allowPrivate)
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
	if r.URL.Opaque != "" || r.URL.User != nil {
		f := newRefusal(http.StatusBadRequest, codeBadPath,
			"the request target is not an absolute path (or has userinfo); send /path or http://host/path without user@", "")
		return canonical.Path{}, &f
	}
	p, err := canonical.ParsePath(r.URL.EscapedPath())
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
	return p, nil
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

// handle decides, fetches, injects and forwards one request. pinned are
// the addresses checked when the tunnel was opened (nil for plain HTTP,
// whose destination is resolved and checked here).
func (g *Gateway) handle(w http.ResponseWriter, r *http.Request, start time.Time, ev identity.Evidence, scheme string, dest target, pinned []netip.AddrPort, pinnedPrivate bool) {
	cp, f := canonicalRequest(r)
	if f != nil {
		g.refuse(w, r, start, ev, dest, *f)
		return
	}
	path := cp.Raw
	stripConnectionNamed(r.Header)
	if g.draining.Load() && scheme == "http" {
		w.Header().Set("Connection", "close")
	}
	pol := g.store.Current()
	wl, err := g.ids.Resolve(r.Context(), ev, pol.Workloads())
	if err != nil {
		g.log.Info("identity did not verify", slog.String("source", sourceString(ev)), slog.Any("error", err))
		g.refuseAs(w, r, start, ev, wl, dest, policy.Decision{}, identityRefusal(err))
		return
	}
	d := pol.Decide(policy.Query{Workload: wl, Scheme: scheme, Host: dest.host, Port: dest.port, Method: r.Method, Path: cp.Decoded, Header: r.Header, NoAllowReason: true})
	if d.Action != policy.Inject && d.Action != policy.Forward {
		g.refuseAs(w, r, start, ev, wl, dest, d, newRefusal(http.StatusForbidden, d.Code, d.Reason, d.Rule))
		return
	}
	if err := cp.CheckEncodedSlash(d.EncodedSlashes); err != nil {
		g.refuseAs(w, r, start, ev, wl, dest, d, newRefusal(http.StatusBadRequest, codeBadPath,
			fmt.Sprintf("the request path encodes a '/' as %%2F, which destination %q does not allow; set encoded_slashes: true on it if its API needs encoded slashes", d.Destination), d.Rule))
		return
	}
	if f, off := g.switchRefusal(wl, d, false); off {
		g.refuseAs(w, r, start, ev, wl, dest, d, f)
		return
	}
	if f, ok := g.rateLimit(r.Context(), wl, d); !ok {
		g.refuseAs(w, r, start, ev, wl, dest, d, f)
		return
	}

	// The address to dial: the tunnel's, re-checked against this
	// decision, or resolved and checked now.
	addrs := pinned
	if addrs == nil || (pinnedPrivate && !d.AllowPrivate) {
		addrs, err = g.resolver.allowed(r.Context(), dest.host, dest.port, d.AllowPrivate)
		if err != nil {
			g.refuseAs(w, r, start, ev, wl, dest, d, addressRefusal(dest, err, d.Rule))
			return
		}
	}

	var cred *providers.Credential
	var hit bool
	if d.Action == policy.Inject {
		plan := d.Inject
		key := providers.CacheKey{Credential: plan.Credential, Version: plan.CredentialVersion, Provider: plan.ProviderName}
		req := providers.Request{Credential: plan.Credential, Workload: wl}
		if sc, ok := plan.Provider.(providers.Scoped); ok {
			key.Scope = sc.CacheScope(req)
		}
		cred, hit, err = g.cache.Get(r.Context(), key, func(ctx context.Context) (*providers.Credential, error) {
			return plan.Provider.Fetch(ctx, req)
		})
		if err != nil {
			if r.Context().Err() != nil {
				return // the client went away
			}
			// The error names the credential and the operation only;
			// providers never put a value in an error.
			g.log.Warn("credential fetch failed", slog.String("credential", plan.Credential), slog.String("rule", d.Rule), slog.Any("error", err))
			f := newRefusal(http.StatusBadGateway, codeCredentialError,
				fmt.Sprintf("credential %q for rule %q could not be obtained; the request was not forwarded", plan.Credential, d.Rule), d.Rule)
			if errors.Is(err, providers.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
				f = newRefusal(http.StatusServiceUnavailable, codeCredentialUnavail,
					fmt.Sprintf("credential %q for rule %q is unavailable right now; the request was not forwarded", plan.Credential, d.Rule), d.Rule)
				// Retry-After is the backoff the cache has in force for
				// this credential: asking sooner gets the same error.
				f.RetryAfter = 1
				if ra, ok := providers.RetryAfter(err, time.Now()); ok {
					f.RetryAfter = int(max(1, (ra+time.Second-1)/time.Second))
				}
			}
			g.refuseAs(w, r, start, ev, wl, dest, d, f)
			return
		}
	}

	// Build the outbound request on r itself (ReverseProxy clones it).
	out := *r.URL
	out.Scheme = scheme
	out.Host = dest.host
	if dest.ip && strings.Contains(dest.host, ":") {
		out.Host = "[" + dest.host + "]"
	}
	if (scheme == "https" && dest.port != 443) || (scheme == "http" && dest.port != 80) {
		out.Host = net.JoinHostPort(dest.host, strconv.Itoa(dest.port))
	}
	out.Opaque, out.User, out.Fragment = "", nil, ""
	// The path goes upstream exactly as checked: cp.Raw on the wire, whose
	// one decoding is what the policy matched.
	out.Path, out.RawPath = cp.Decoded, cp.Raw
	r.URL = &out
	r.Host = ""
	for _, h := range gatewayHeaders {
		delete(r.Header, h) // canonical already: no per-request canonicalisation
	}
	if r.Trailer != nil {
		for _, h := range trailerStrip(d) {
			delete(r.Trailer, h)
		}
	}
	if d.Action == policy.Inject {
		if hn, ok := d.Inject.Injector.(injectors.HeaderNames); ok {
			for _, h := range hn.Headers() {
				r.Header.Del(h)
			}
		}
		if err := d.Inject.Injector.Inject(r, cred); err != nil {
			g.log.Warn("injection failed", slog.String("credential", d.Inject.Credential), slog.String("as", d.Inject.As), slog.Any("error", err))
			g.refuseAs(w, r, start, ev, wl, dest, d, injectRefusal(err, d))
			return
		}
	}

	st := &reqState{addrs: addrs, pool: g.pools.forRequest(pol, d.AllowPrivate, addrs), http1: g.cfg.Upstream.HTTP2 == HTTP2Match && r.ProtoMajor < 2}
	if d.Action == policy.Inject {
		st.reissue = g.reissuePlan(r, d.Inject, wl, cred, hit)
		if cc, ok := d.Inject.Injector.(injectors.ClientCertificate); ok {
			cert, err := cc.Certificate(cred)
			if err != nil {
				g.log.Warn("client certificate not usable", slog.String("credential", d.Inject.Credential), slog.Any("error", err))
				g.refuseAs(w, r, start, ev, wl, dest, d, newRefusal(http.StatusBadGateway, codeInjectFailed,
					fmt.Sprintf("credential %q is not a usable TLS client certificate; the request was not forwarded", d.Inject.Credential), d.Rule))
				return
			}
			st.cert = cert
		}
	}
	body := &countingBody{ReadCloser: r.Body}
	if r.Trailer != nil {
		// An HTTP/1.1 chunked body adds every trailer it ends with to
		// r.Trailer when it reaches EOF, declared or not: filter then too.
		body.trailer, body.strip = r.Trailer, trailerStrip(d)
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
	}
	sw := &statusWriter{ResponseWriter: w}
	aborted := g.forwardRecovered(sw, r.WithContext(context.WithValue(r.Context(), stateKey, st)))

	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	ev2 := g.event(start, ev, wl, dest, r, path, scheme, d)
	ev2.PolicyVersion = pol.Stats().Hash // the policy that decided, even if reloaded since
	if d.Action == policy.Inject {
		ev2.Credential = d.Inject.Credential
		ev2.CacheHit = hit && !st.reissued
		ev2.CredentialFP = g.audit.fingerprint(cmp.Or(st.reissuedCred, cred))
	}
	if st.refusal != nil {
		ev2.Decision, ev2.Code = policy.Deny.String(), st.refusal.Code
	}
	if aborted && ev2.Code == "" {
		// The response broke off after its headers (the upstream cut the
		// body, or the client stopped reading).
		ev2.Code = st.abortCode
		if ev2.Code == "" {
			ev2.Code = codeUpstreamError
		}
	}
	ev2.Status = status
	ev2.BytesIn = body.n.Load()
	ev2.BytesOut = sw.n
	ev2.Upstream = st.upDur
	ev2.Duration = time.Since(start)
	g.metrics.request(ev2.Decision, d.Rule, status, ev2.Duration)
	g.audit.write(ev2)
	if aborted {
		panic(http.ErrAbortHandler) // the server cuts the client's response
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
func injectRefusal(err error, d policy.Decision) refusal {
	switch {
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

// event starts an audit event for a request.
func (g *Gateway) event(start time.Time, ev identity.Evidence, wl identity.Workload, dest target, r *http.Request, path, scheme string, d policy.Decision) *event {
	e := &event{
		Time:     start,
		Workload: wl.DisplayName(),
		Factors:  wl.FactorKinds(),
		Source:   sourceString(ev),
		Method:   r.Method,
		Scheme:   scheme,
		Host:     dest.host,
		Port:     dest.port,
		Path:     path,
		Rule:     d.Rule,
		Decision: d.Action.String(),
		Code:     d.Code,
	}
	if len(wl.Factors) == 0 {
		e.Presented = presented(ev)
	}
	return e
}

// refuse answers a request the gateway will not forward, before identity
// was established.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, start time.Time, ev identity.Evidence, dest target, f refusal) {
	wl := identity.Workload{}
	if ev.Source.IsValid() {
		wl.Source = ev.Source.Addr().Unmap()
	}
	g.refuseAs(w, r, start, ev, wl, dest, policy.Decision{}, f)
}

// refuseAs answers a refusal, counts it and audits it.
func (g *Gateway) refuseAs(w http.ResponseWriter, r *http.Request, start time.Time, ev identity.Evidence, wl identity.Workload, dest target, d policy.Decision, f refusal) {
	f.write(w)
	g.metrics.refusals.WithLabelValues(f.Code).Inc()
	scheme := "https"
	if r.TLS == nil && r.Context().Value(tunnelKey) == nil {
		scheme = "http"
	}
	path := r.URL.EscapedPath()
	e := g.event(start, ev, wl, dest, r, path, scheme, d)
	e.Decision, e.Code, e.Status, e.Switch = policy.Deny.String(), f.Code, f.Status, f.Switch
	if f.Rule != "" {
		e.Rule = f.Rule
	}
	e.Duration = time.Since(start)
	g.metrics.request(e.Decision, e.Rule, f.Status, e.Duration)
	g.audit.write(e)
}

// reissuePlan returns how to handle a 401 to this request, or nil when
// the credential is not a cached one of a providers.Reissuer. It is
// called before the body is wrapped, on the inbound request.
func (g *Gateway) reissuePlan(r *http.Request, plan *policy.InjectPlan, wl identity.Workload, cred *providers.Credential, hit bool) *reissuePlan {
	ri, ok := plan.Provider.(providers.Reissuer)
	if !ok || !hit || !ri.ReissueOnUnauthorized() {
		// A credential fetched for this very request and rejected at once
		// is not dropped: fetching again for every request would turn a
		// misconfigured upstream into load on the provider.
		return nil
	}
	key := providers.CacheKey{Credential: plan.Credential, Version: plan.CredentialVersion, Provider: plan.ProviderName}
	req := providers.Request{Credential: plan.Credential, Workload: wl}
	if sc, ok := plan.Provider.(providers.Scoped); ok {
		key.Scope = sc.CacheScope(req)
	}
	rp := &reissuePlan{key: key, used: cred, inj: plan.Injector,
		fetch: func(ctx context.Context) (*providers.Credential, error) { return plan.Provider.Fetch(ctx, req) }}
	hn, headerOnly := plan.Injector.(injectors.HeaderNames)
	_, clientCert := plan.Injector.(injectors.ClientCertificate)
	// ContentLength 0 is "no body" on HTTP/1 (NoBody) and HTTP/2 (a
	// stream ended with its headers, or content-length: 0, which the
	// server enforces); -1 is a body of unknown length.
	noBody := r.ContentLength == 0
	upgrade := r.Header.Get("Upgrade") != ""
	// Only injectors that declare what they set can be re-applied so that
	// nothing of the rejected credential remains; a client certificate
	// would need another transport.
	if headerOnly && !clientCert && idempotent[r.Method] && noBody && !upgrade {
		rp.headers = hn.Headers()
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
		t = st.pool.transport(st)
	}
	t0 := time.Now()
	resp, err := t.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && st != nil && st.reissue != nil && tt.g != nil {
		resp, err = tt.g.reissue(t, r, resp, st)
	}
	if st != nil {
		st.upStart, st.upDur = t0, time.Since(t0)
	}
	return resp, err
}

// reissue handles a 401 to a request that carried a cached credential of
// a providers.Reissuer: the credential is dropped from the cache (unless
// a newer one replaced it already), and a replayable request is rebuilt
// from the outbound request — the injector's headers removed, a new
// credential injected — and sent once more to the same checked
// addresses. When no new credential can be had, or the request cannot be
// replayed, the upstream's 401 is returned as it came.
func (g *Gateway) reissue(t http.RoundTripper, r *http.Request, resp *http.Response, st *reqState) (*http.Response, error) {
	rp := st.reissue
	st.reissue = nil // once per request
	g.cache.Forget(rp.key, rp.used)
	if !rp.replay || (r.Body != nil && r.Body != http.NoBody) {
		return resp, nil
	}
	ctx := r.Context()
	cred, _, err := g.cache.Get(ctx, rp.key, rp.fetch)
	if err != nil {
		g.log.Info("upstream rejected the credential; no new one to retry with",
			slog.String("credential", rp.key.Credential), slog.Any("error", err))
		return resp, nil
	}
	r2 := r.Clone(ctx)
	r2.Body = nil
	for _, h := range rp.headers {
		r2.Header.Del(h)
	}
	if err := rp.inj.Inject(r2, cred); err != nil {
		g.log.Warn("re-injection failed; returning the upstream's 401", slog.String("credential", rp.key.Credential), slog.Any("error", err))
		return resp, nil
	}
	// The 401 is discarded: drain a little of it so the connection can
	// be reused, then close it.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
	st.reissued, st.reissuedCred = true, cred
	g.log.Info("upstream rejected a cached credential; retried once with a new one",
		slog.String("credential", rp.key.Credential), slog.String("host", r.URL.Host))
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
	if r.Context().Err() != nil {
		// The client went away; nothing to answer.
		if st != nil {
			f := newRefusal(499, codeRequestBodyAborted, "client closed the request", "")
			st.refusal = &f
		}
		return
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
	var netErr net.Error
	switch {
	case errors.Is(err, injectors.ErrBodyTooLarge):
		// A streaming injector met a part of the body (an aws-chunked
		// chunk) larger than it may hold.
		f = newRefusal(http.StatusRequestEntityTooLarge, codeBodyTooLarge, fmt.Sprintf("a part of the request body to %s was larger than the injector may hold to sign it", dest), "")
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr):
		f = newRefusal(http.StatusBadGateway, codeUpstreamTLS, fmt.Sprintf("the TLS certificate of %s did not verify; nothing was sent", dest), "")
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		f = newRefusal(http.StatusBadGateway, codeUpstreamUnreach, fmt.Sprintf("%s is not reachable", dest), "")
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		f = newRefusal(http.StatusGatewayTimeout, codeUpstreamTimeout, fmt.Sprintf("%s did not answer in time", dest), "")
	default:
		f = newRefusal(http.StatusBadGateway, codeUpstreamError, fmt.Sprintf("the connection to %s failed", dest), "")
	}
	g.log.Info("upstream request failed", slog.String("host", dest), slog.String("code", f.Code), slog.String("error", err.Error()))
	if st != nil {
		st.refusal = &f
	}
	g.metrics.refusals.WithLabelValues(f.Code).Inc()
	f.write(w)
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

// trailerStrip names the request trailers that never go upstream:
// request trailers (a chunked body's trailing fields) are forwarded, and
// some servers merge them into the headers, so none may carry a
// gateway-scoped or hop-by-hop field, or one the injector sets.
func trailerStrip(d policy.Decision) []string {
	out := append(append([]string(nil), gatewayHeaders...), hopHeaders...)
	if d.Action == policy.Inject {
		if hn, ok := d.Inject.Injector.(injectors.HeaderNames); ok {
			for _, h := range hn.Headers() {
				out = append(out, textproto.CanonicalMIMEHeaderKey(h))
			}
		}
	}
	return out
}

// countingBody counts request body bytes and, at EOF, removes the
// trailers in strip from trailer (the request's Trailer map, which the
// body reader fills in at EOF and the transport sends after the body).
type countingBody struct {
	io.ReadCloser
	n       atomic.Int64
	trailer http.Header
	strip   []string
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err == io.EOF && b.trailer != nil {
		for _, h := range b.strip {
			delete(b.trailer, h)
		}
	}
	return n, err
}
