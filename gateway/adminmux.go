package gateway

import (
	"net/http"
	"strings"
)

// adminMux is the admin listener's mux. Every route is registered through
// it, so that the routes are a list the admin wrapper (adminserve.go)
// labels its metric with and tests walk, rather than a copy kept by hand.
type adminMux struct {
	mux    *http.ServeMux
	routes []adminRoute
	// wrap, when set (tests only), wraps each handler as it is
	// registered: a test makes a real route panic with it. It is a field
	// of this one mux, never global state.
	wrap func(pattern string, h http.Handler) http.Handler
}

// adminRoute is one registered route.
type adminRoute struct {
	// Pattern is the ServeMux pattern, "METHOD /path".
	Pattern string
	// Probe marks the unauthenticated probe routes (/healthz, /readyz,
	// /metrics): counted, not audited (kubelets and scrapers call them
	// every few seconds).
	Probe bool
	// Auth marks the routes that need the admin token.
	Auth bool
}

// Method and Path split the pattern.
func (r adminRoute) Method() string { m, _, _ := strings.Cut(r.Pattern, " "); return m }

// Path is the pattern's path.
func (r adminRoute) Path() string { _, p, _ := strings.Cut(r.Pattern, " "); return p }

func newAdminMux() *adminMux { return &adminMux{mux: http.NewServeMux()} }

// handle registers a route of the admin API.
func (m *adminMux) handle(pattern string, auth bool, h http.HandlerFunc) {
	m.add(adminRoute{Pattern: pattern, Auth: auth}, h)
}

// probe registers an unauthenticated probe route.
func (m *adminMux) probe(pattern string, h http.Handler) {
	m.add(adminRoute{Pattern: pattern, Probe: true}, h)
}

func (m *adminMux) add(rt adminRoute, h http.Handler) {
	if m.wrap != nil {
		h = m.wrap(rt.Pattern, h)
	}
	m.routes = append(m.routes, rt)
	m.mux.Handle(rt.Pattern, h)
}

// route returns the registered route whose pattern is pattern.
func (m *adminMux) route(pattern string) (adminRoute, bool) {
	for _, rt := range m.routes {
		if rt.Pattern == pattern {
			return rt, true
		}
	}
	return adminRoute{}, false
}
