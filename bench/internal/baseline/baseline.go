// Package baseline is the comparison point for credgate's throughput: a bare
// github.com/elazarl/goproxy MITM proxy that intercepts every CONNECT with
// its own CA, sets one fixed Authorization header and forwards the request.
// It does no identity, policy, credential cache or audit work, so the gap
// between it and credgate is what those stages cost.
//
// It is configured the way a careful goproxy user would run it in
// production: leaf certificates cached per host (goproxy's CertStore),
// upstream TLS verified against the origin's CA, keep-alive connections to
// the upstream, no verbose logging.
package baseline

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
)

// Config says how the baseline proxy runs.
type Config struct {
	// CA signs the per-host leaf certificates presented to clients.
	CA tls.Certificate
	// UpstreamRoots verifies the upstream's certificate.
	UpstreamRoots *x509.CertPool
	// Resolve maps "host:port" to the address actually dialled, like
	// credgate's resolve map; any other destination is refused.
	Resolve map[string]string
	// Header and Value are the header set on every intercepted request.
	Header, Value string
	// UpstreamHTTP2 lets the upstream transport negotiate HTTP/2. goproxy's
	// own default transport speaks HTTP/1.1 only; so does the baseline
	// unless this is set.
	UpstreamHTTP2 bool
	// ClientHTTP2 sets goproxy's AllowHTTP2: intercepted clients that
	// offer h2 in ALPN are served over HTTP/2 (goproxy's embedded
	// x/net/http2 server). Clients that offer only http/1.1 (the load
	// generator's usual client) are served exactly as without it.
	ClientHTTP2 bool
	// MaxIdleConnsPerHost bounds the idle upstream pool (credgate's default
	// is 64; the baseline uses the same).
	MaxIdleConnsPerHost int
	// Log receives goproxy's warnings; nil discards them.
	Log io.Writer
}

// New builds the proxy handler.
func New(cfg Config) *goproxy.ProxyHttpServer {
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		to, ok := cfg.Resolve[addr]
		if !ok {
			return nil, fmt.Errorf("baseline: dial %s: not in the resolve map", addr)
		}
		return dialer.DialContext(ctx, network, to)
	}
	perHost := cfg.MaxIdleConnsPerHost
	if perHost <= 0 {
		perHost = 64
	}
	proxy := goproxy.NewProxyHttpServer()
	proxy.Logger = log.New(logw, "goproxy ", log.LstdFlags)
	proxy.Verbose = false
	proxy.AllowHTTP2 = cfg.ClientHTTP2
	proxy.CertStore = newCertStore()
	proxy.Tr = &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     &tls.Config{RootCAs: cfg.UpstreamRoots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   cfg.UpstreamHTTP2,
		MaxIdleConnsPerHost: perHost,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	proxy.ConnectDial = func(network, addr string) (net.Conn, error) {
		return dial(context.Background(), network, addr)
	}
	ca := cfg.CA
	mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(&ca)}
	proxy.OnRequest().HandleConnect(goproxy.FuncHttpsHandler(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		return mitm, host
	}))
	header, value := cfg.Header, cfg.Value
	proxy.OnRequest().DoFunc(func(r *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		r.Header.Set(header, value)
		return r, nil
	})
	return proxy
}

// Serve runs the proxy on ln until ctx is cancelled.
func Serve(ctx context.Context, ln net.Listener, cfg Config) error {
	srv := &http.Server{
		Handler:           New(cfg),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("baseline: serve: %w", err)
	case <-ctx.Done():
	}
	// A benchmark proxy has nothing to drain: close the listener and every
	// tracked connection (hijacked MITM connections end with the process).
	if err := srv.Close(); err != nil {
		return fmt.Errorf("baseline: close: %w", err)
	}
	return nil
}

// certStore caches one leaf certificate per host name, as goproxy's
// documentation recommends for production use.
type certStore struct {
	mu    sync.Mutex
	certs map[string]*tls.Certificate
}

func newCertStore() *certStore { return &certStore{certs: make(map[string]*tls.Certificate)} }

// Fetch implements goproxy.CertStorage.
func (s *certStore) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.certs[host]; ok {
		return c, nil
	}
	c, err := gen()
	if err != nil {
		return nil, err
	}
	s.certs[host] = c
	return c, nil
}

var _ goproxy.CertStorage = (*certStore)(nil)
