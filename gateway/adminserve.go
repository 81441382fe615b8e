package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/panics"
)

// Reason codes the admin wrapper answers with itself.
const (
	codeAdminNotFound = "not_found"
	codeAdminMethod   = "method_not_allowed"
	codeAdminInternal = "internal_error"
	codeAdminHost     = "admin_host_refused"
)

// adminUnmatched is the route label of a request no route matched.
const adminUnmatched = "unmatched"

// adminRecord is what an admin handler tells the admin wrapper about its
// request, for the request's audit line.
type adminRecord struct {
	// token is set when the admin token was checked and matched
	// (adminRefusal).
	token bool
	// sw names the kill switch the request changed or tried to.
	sw string
}

type adminRecordKey struct{}

// adminRecordOf returns the record of r (a throwaway one for a request
// that did not come through the admin wrapper).
func adminRecordOf(r *http.Request) *adminRecord {
	if rec, ok := r.Context().Value(adminRecordKey{}).(*adminRecord); ok {
		return rec
	}
	return &adminRecord{}
}

// adminWriter remembers the status a handler answered with.
type adminWriter struct {
	http.ResponseWriter
	status int
}

func (w *adminWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *adminWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *adminWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveAdmin is the admin listener's handler: m's routes, with every
// request (authorised or refused, on a route or not) counted in
// credgate_admin_api_requests_total by route pattern and code and, but
// for the probes' (/healthz, /readyz, /metrics), written as exactly one
// audit line; a path no route has is answered 404 and a method the path
// does not take 405, both in the admin API's JSON; a panic of a handler
// is answered 500 internal_error (or its connection cut, when the answer
// had begun), logged without its value, audited and counted.
func (g *Gateway) serveAdmin(m *adminMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rt, matched := m.match(r)
		rec := &adminRecord{}
		r = r.WithContext(context.WithValue(r.Context(), adminRecordKey{}, rec))
		aw := &adminWriter{ResponseWriter: w}
		defer func() {
			p := recover()
			if p == nil {
				g.adminDone(r, rt, matched, aw.status, aw.Header().Get(ReasonHeader), rec, start, false)
				return
			}
			if p != http.ErrAbortHandler {
				g.log.Error("admin API: panic serving a request", slog.String("route", routeLabel(rt, matched)),
					slog.String("panic", panics.Describe(p)), slog.String("where", panics.Where(1)))
			}
			begun := aw.status != 0
			if !begun {
				// Nothing of what the handler set goes out.
				clear(aw.Header())
				adminError(aw, http.StatusInternalServerError, codeAdminInternal,
					"the gateway failed serving this admin request (a bug; its log says where); check with GET /admin/v1/switches whether a change took effect")
			}
			g.adminDone(r, rt, matched, http.StatusInternalServerError, codeAdminInternal, rec, start, true)
			if begun {
				// The answer had begun: the client must not take a
				// truncated one for whole.
				panic(http.ErrAbortHandler)
			}
		}()
		if why := adminHostRefusal(r); why != "" {
			adminError(aw, http.StatusForbidden, codeAdminHost, why)
			return
		}
		if !matched {
			m.serveUnmatched(aw, r)
			return
		}
		m.mux.ServeHTTP(aw, r)
	})
}

// match returns the route that serves r; false when none does (an
// unknown path, a method the path does not take, a path ServeMux would
// redirect to its clean form).
func (m *adminMux) match(r *http.Request) (adminRoute, bool) {
	_, pattern := m.mux.Handler(r)
	rt, ok := m.route(pattern)
	if !ok || rt.Path() != r.URL.Path {
		return adminRoute{}, false
	}
	return rt, true
}

// serveUnmatched answers a request no route serves: 405 when its path has
// routes for other methods, else 404.
func (m *adminMux) serveUnmatched(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, rt := range m.routes {
		if rt.Path() == r.URL.Path {
			allow = append(allow, rt.Method())
			if rt.Method() == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		adminError(w, http.StatusMethodNotAllowed, codeAdminMethod, fmt.Sprintf("this admin route takes %s only", strings.Join(allow, " or ")))
		return
	}
	adminError(w, http.StatusNotFound, codeAdminNotFound, "no such admin route (docs/audit-and-metrics.md#admin-endpoints lists them)")
}

func routeLabel(rt adminRoute, matched bool) string {
	if !matched {
		return adminUnmatched
	}
	return rt.Pattern
}

// adminDone counts an admin request and, unless it was a probe that did
// not panic, writes its audit line. The line names who called (the
// admin token, a verified client certificate's subject) or, when nothing
// verified, the kinds of evidence presented; never a token.
func (g *Gateway) adminDone(r *http.Request, rt adminRoute, matched bool, status int, code string, rec *adminRecord, start time.Time, panicked bool) {
	if status == 0 {
		status = http.StatusOK
	}
	label := code
	if label == "" {
		label = "ok"
	}
	g.metrics.adminRequests.WithLabelValues(routeLabel(rt, matched), label).Inc()
	if matched && rt.Probe && !panicked && code != codeAdminHost {
		return
	}
	decision := "admin"
	if status >= 400 {
		decision = "deny"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ev := evidence(r)
	e := &event{Time: start, Source: sourceString(ev), Method: r.Method, Scheme: scheme, Host: "admin", Path: r.URL.Path,
		Decision: decision, Code: code, Status: status, Switch: rec.sw, Duration: time.Since(start)}
	var who []string
	if rec.token {
		who = append(who, "admin_token")
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		who = append(who, "client_cert:"+r.TLS.VerifiedChains[0][0].Subject.String())
	}
	e.Operator = strings.Join(who, ",")
	if e.Operator == "" {
		e.Presented = adminPresented(r, ev)
	}
	g.audit.write(e)
}

// adminPresented lists the kinds of evidence an admin request presented:
// source, client_certificate, authorization:SCHEME.
func adminPresented(r *http.Request, ev identity.Evidence) []string {
	out := presented(ev)
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, _, _ := strings.Cut(a, " ")
		if len(scheme) > 16 || !httpguts.ValidHeaderFieldName(scheme) {
			scheme = "other"
		}
		out = append(out, "authorization:"+strings.ToLower(scheme))
	}
	return out
}

// adminHostRefusal returns why r is refused for the name its Host header
// gives the admin listener, or "" when it is not: a request that reached
// the listener through a loopback address over plain HTTP must name it
// by an IP address or as localhost.
//
// Such a request comes from this machine, perhaps from a browser, and a
// web page can make a browser send it: by DNS rebinding, a page of
// attacker.example re-resolves its own name to 127.0.0.1 and reads the
// answers as its own origin's. The Host header then still names the
// page's domain, which no client of the admin listener uses: kubelet
// probes and Prometheus name an IP address, kubectl port-forward and
// credgate admin localhost or 127.0.0.1. Over admin.tls the browser
// would refuse the listener's certificate for the attacker's name, and a
// request that arrived on another address did not come from this
// machine's browsers, so neither is checked: a service name such as
// cg-credgate-admin.egress.svc keeps working. Refused before the route
// is served, so that no probe's answer (/metrics names rules and
// workloads) reaches the page either, and audited (a rebinding attempt
// is worth a line).
func adminHostRefusal(r *http.Request) string {
	if r.TLS != nil {
		return ""
	}
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !addrIsLoopback(local) || adminHostAllowed(r.Host) {
		return ""
	}
	return "the admin listener was reached through a loopback address under a DNS name: name it as localhost or by its IP address (http://127.0.0.1:PORT); a browser page re-resolving its own name to this machine (DNS rebinding) sends such requests (docs/config.md#admin)"
}

// addrIsLoopback reports whether a is a TCP address on a loopback
// interface.
func addrIsLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// adminHostAllowed reports whether host (a Host header, with or without
// a port) names the admin listener as a loopback client may: an IP
// address, localhost (which browsers resolve to this machine themselves,
// RFC 6761, so no page's domain can be it), or nothing (an HTTP/1.0
// request without Host, which no browser sends).
func adminHostAllowed(host string) bool {
	if host == "" {
		return true
	}
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return strings.EqualFold(strings.TrimSuffix(h, "."), "localhost")
}
