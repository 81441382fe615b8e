// Package gateway is credgate's proxy: it wires the request path
// identity → policy → providers → injectors → upstream (DESIGN.md) behind
// the listeners applications reach through HTTPS_PROXY, and serves the
// admin endpoints.
//
// # Connections
//
// The plain listener (and the optional TLS listener, an "HTTPS proxy")
// accepts absolute-URI HTTP requests and CONNECT. CONNECT is handled by
// github.com/elazarl/goproxy and decided before any TLS with the client:
// deny (403, JSON body, X-Credgate-Reason), tunnel (bytes are spliced to
// the destination; the client sees the destination's own certificate), or
// intercept. An intercepted connection is terminated with a per-host leaf
// certificate from the interception CA (package mitm) and served with
// serveIntercepted: an HTTP/2 client (ALPN h2) by one net/http server
// shared by all intercepted connections, an HTTP/1.1 client by the
// HTTP/1.1 server of package gateway/internal/h1, which holds no buffers
// while a keep-alive connection is idle. Both apply the header limits,
// timeouts and graceful shutdown of the config's limits like any other
// listener. goproxy's own MITM loop is not used because it has no header
// size limit, no read timeout and no way to drain its connections on
// shutdown.
//
// # Requests
//
// Every request, plain or inside an intercepted tunnel, is handled the
// same way: the Host (and, for tunnels, the TLS SNI) must name the
// destination the connection was opened for; the policy in force decides;
// the credential is fetched through the cache; the injector sets it,
// replacing whatever the client sent; and forward (forward.go) sends
// the request over verified TLS to the address that was checked against
// the special-purpose address table (dial.go), streaming both bodies and
// never following a redirect. A kept-alive connection to a special-purpose
// address is reused only by requests allowed to reach it, within one
// policy generation (pool.go). Everything that can fail happens before the outbound request
// is built; a failure is answered 403/421/502/503/504 with a reason code.
package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/credgate/credgate/gateway/internal/h1"
	"github.com/credgate/credgate/gateway/internal/h1client"
	"github.com/credgate/credgate/gateway/internal/tickets"
	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/identity/runtoken"
	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/filewatch"
	"github.com/credgate/credgate/internal/lograte"
	"github.com/credgate/credgate/internal/module"
	"github.com/credgate/credgate/internal/panics"
	"github.com/credgate/credgate/internal/tracing"
	"github.com/credgate/credgate/killswitch"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/ratelimit"
)

// Options are the parts of a gateway that are not in the config file.
type Options struct {
	// Logger receives the process log; nil discards it. It never receives
	// a secret value.
	Logger *slog.Logger
	// Audit, when set, receives the audit lines instead of
	// cfg.Audit.Output. Writes may come from many goroutines; the gateway
	// serialises them.
	Audit io.Writer
	// Resolver, when set, replaces DNS for destinations not in the
	// config's resolve map (tests).
	Resolver *net.Resolver
	// Tracer, when set, records the spans instead of the exporter
	// cfg.Tracing describes (tests and benchmarks); the gateway shuts it
	// down on Close.
	Tracer *tracing.Tracer
}

// Gateway is one running credgate. Build it with New, run it with Run.
type Gateway struct {
	cfg     *Config
	log     *slog.Logger
	store   *policy.Store
	cache   *providers.Cache
	shared  *sharedCache // nil without cache.redis
	limiter *ratelimit.Limiter
	// batchBuf bounds the batch bodies held at once
	// (limits.batch_buffer_bytes, batch.go).
	batchBuf batchBudget
	ids      *identity.Resolver
	// runTokens issues credgate run's tokens (run_tokens); nil when off.
	runTokens *runtoken.Issuer
	issuer    *mitm.Issuer
	metrics   *metrics
	audit     *auditor
	closers   []io.Closer
	// fetchLog keeps "credential fetch failed" to one line per
	// credential per fetchLogEvery: a source that is down fails every
	// request, and each request has its audit line already.
	fetchLog *lograte.Limiter
	// clientLog keeps the lines a client can cause on every request
	// ("identity did not verify", "refused TLS handshake: SNI differs")
	// to one per reason code per clientLogEvery: each refusal has its
	// audit line already, and a client must not flood the log at will.
	clientLog *lograte.Limiter
	// libLog keeps what libraries log (libraryLog) to one line per kind
	// per libraryLogEvery: a hostile peer can make them log at will.
	libLog *lograte.Limiter
	// tracer records the spans of requests; nil when tracing is off, and
	// every use is behind a nil check (zero cost off).
	tracer *tracing.Tracer

	// switches is the kill switch; adminTok guards the admin API that
	// changes it (nil: that API is off).
	switches *killswitch.Switch
	adminTok *adminToken
	swm      *switchMetrics

	resolver *resolver
	dialer   *dialer
	// h2conns bounds the HTTP/2 upstream connections of every pool
	// (upstream.max_idle_conns; h2conns.go).
	h2conns *h2Conns
	// pools hold the upstream connections, apart by the class of address
	// they go to (pool.go): the trust generation in force, replaced as a
	// whole when upstream.ca_bundle is reloaded (ReloadConfig); trustMu
	// orders those reloads.
	pools   atomic.Pointer[upstreamPools]
	trustMu sync.Mutex
	// upstream sends requests (forward.go); buffers are the body-copy
	// and relay buffers.
	upstream http.RoundTripper
	buffers  *bufferPool
	connect  *goproxy.ProxyHttpServer
	mitmTLS  *tls.Config
	// tickets are the session ticket keys of every TLS listener
	// (session_tickets); nil when session tickets are off.
	tickets *tickets.Keys

	proxyLn, tlsLn, adminLn net.Listener
	// listenPP and tlsPP are the PROXY protocol of listen and tls_listen,
	// nil where it is off; proxyHeadersOn says one is on.
	listenPP, tlsPP *proxyHeaders
	proxyHeadersOn  bool
	// connAdmit counts the proxy listeners' open client connections and
	// refuses those over limits.max_connections and
	// max_connections_per_source (admit.go).
	connAdmit *connAdmission
	// adminAdmit counts admin_listen's open connections and refuses those
	// over admin.max_connections; adminOpen is its count.
	adminAdmit *connAdmission
	adminOpen  atomic.Int64
	// configState is what ReloadConfig found last: the settings of the
	// config file that changed and wait for a restart, and its error.
	configState atomic.Pointer[configState]
	// startFiles are the files the config names that are read at start
	// only, with their digests then (ReloadConfig names those changed).
	startFiles        []startFile
	mitmLn            *connListener
	mitmSrv, adminSrv *http.Server
	// proxy serves the proxy listeners' requests (serveProxy), on h1Srv.
	proxy http.Handler

	// reloaders re-read certificate files while the gateway runs.
	reloaders []*filewatch.Reloader
	// tlsRoots and adminRoots are the CAs tls.client_ca and
	// admin.tls.client_ca hold now (clientroots.go); nil without them.
	tlsRoots, adminRoots *clientRoots

	// long holds the open long-lived connections (longlived.go).
	long longSet
	// flights holds the requests being forwarded (inflight.go).
	flights flightSet
	// recheck re-verifies what is open when evidence is withdrawn
	// (revoke.go).
	recheck recheck
	// phIndex holds the placeholders of the policy generation last used
	// (placeholder.go).
	phIndex atomic.Pointer[phIndex]
	// scrubbers caches the response Scrubber of each credential (scrub.go).
	scrubbers scrubbers
	// h1Srv serves every HTTP/1.1 client connection: the proxy
	// listeners' with proxy (serveProxy), the intercepted side of
	// tunnels with intercepted (serveIntercepted); mitmSrv serves the
	// intercepted HTTP/2 ones with intercepted.
	h1Srv       *h1.Server
	intercepted http.Handler
	// baseCtx is the parent of every request context: New's, without its
	// cancellation. cutRequests cancels it, with errDrainEnded, when a
	// shutdown's drain ends with requests still running.
	baseCtx     context.Context
	cutRequests context.CancelCauseFunc
	ready       chan struct{}
	draining    atomic.Bool
	runOnce     sync.Once
	// endDrain is closed (once, by EndDrain) to end a shutdown's drain
	// before shutdown_timeout.
	endDrain     chan struct{}
	endDrainOnce sync.Once
}

// New builds a gateway from cfg: it loads the interception CA and the
// policy and binds the listeners, so that every configuration error is
// reported here, before Run. The caller must call Run (which releases
// everything when it returns) or, if it never does, Close.
func New(ctx context.Context, cfg *Config, opts Options) (_ *Gateway, err error) {
	cfg.ApplyDefaults()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, log: logger, ready: make(chan struct{}), endDrain: make(chan struct{}), fetchLog: lograte.New(fetchLogEvery, nil),
		clientLog: lograte.New(clientLogEvery, nil), libLog: lograte.New(libraryLogEvery, nil)}
	g.flights.fire = g.expireFlights
	g.startFiles = startOnlyFiles(cfg)
	defer func() {
		if err != nil {
			g.Close()
		}
	}()

	// The interception CA is re-read when its files change (rotation);
	// the leaf cache is dropped then.
	caReloader := &filewatch.Reloader{Paths: []string{cfg.CA.Cert, cfg.CA.Key}, What: "interception CA", Interval: cfg.CA.ReloadInterval.D(), Log: logger,
		Apply: func(files [][]byte) error {
			ca, err := parseCA(cfg.CA, files[0], files[1])
			if err != nil {
				return err
			}
			if g.issuer == nil {
				g.issuer = newIssuer(cfg.CA, ca)
			} else {
				g.issuer.SetCA(ca)
				// Sessions made under the old CA are not resumed: every
				// client sees a leaf of the new CA at its next connection.
				if g.tickets != nil {
					if err := g.tickets.Reset(); err != nil {
						logger.Error("session tickets not reset after the CA rotation; they expire with their keys", slog.Any("error", err))
					}
				}
			}
			return nil
		}}
	if _, err := caReloader.Load(); err != nil {
		return nil, err
	}
	g.reloaders = append(g.reloaders, caReloader)
	g.metrics = newMetrics(func() float64 { return float64(g.issuer.Len()) })
	g.metrics.interceptionCA(g.issuer.Stats)
	g.warnSecretModes(cfg)

	if g.audit, err = newAuditor(ctx, cfg.Audit, opts.Audit, logger); err != nil {
		return nil, err
	}

	g.tracer = opts.Tracer
	if cfg.Tracing.Enabled && g.tracer == nil {
		if g.tracer, err = tracing.New(ctx, cfg.Tracing, logger); err != nil {
			return nil, err
		}
	}

	trust, err := loadUpstreamTrust(cfg.Upstream.CABundle)
	if err != nil {
		return nil, err
	}

	g.store, err = policy.NewStore(g.providerCtx(ctx), cfg.Policy, policy.StoreOptions{
		Logger:   logger,
		OnReload: g.onReload,
		OnRetire: g.onRetire,
		// A request holds its policy until it ends (Store.Acquire); one
		// still holding it after the longest a request may run is stuck.
		MaxCloseDelay: cfg.Limits.LongLived.MaxLifetime.D(),
	})
	if err != nil {
		return nil, err
	}
	g.metrics.rules.Set(float64(g.store.Current().Stats().Rules))
	g.countPolicySecretModes()
	g.metrics.policyFile(g.store.FileInForce)
	g.audit.store = g.store
	g.metrics.auditWriter(g.audit.w, g.audit.file, g.audit.otlp)

	cacheOpts := providers.CacheOptions{
		DefaultTTL:   cfg.Cache.DefaultTTL.D(),
		MaxTTL:       cfg.Cache.MaxTTL.D(),
		RefreshAhead: cfg.Cache.RefreshAhead.D(),
		ErrorBackoff: cfg.Cache.ErrorBackoff.D(),
		FetchTimeout: cfg.Cache.FetchTimeout.D(),
		Observer:     g.metrics,
		Log:          logger,
		// A refresh's error is logged with no request to redact it
		// for: every credential the gateway holds is redacted from it.
		Redact: func(err error, held *providers.Credential) string { return g.logText(nil, err, held) },
	}
	if cfg.Cache.Redis.Enabled() {
		g.metrics.enableRedis()
		g.shared, err = newSharedCache(ctx, cfg.Cache.Redis, logger, g.metrics)
		if err != nil {
			return nil, err
		}
		cacheOpts.Shared = g.shared.store
		cacheOpts.SharedTimeout = cfg.Cache.Redis.Timeout.D()
	}
	g.cache = providers.NewCache(cacheOpts)
	if err := g.startKillSwitch(ctx); err != nil {
		return nil, err
	}
	if g.limiter, err = newLimiter(ctx, cfg, g.shared, logger, g.metrics); err != nil {
		return nil, err
	}
	g.batchBuf.max, g.batchBuf.gauge = *cfg.Limits.BatchBufferBytes, g.metrics.batchHeld // max set by ApplyDefaults
	idOpts := []identity.Option{identity.WithLogger(logger), identity.WithOnChange(g.evidenceChanged)}
	if cfg.RunTokens != nil {
		if g.runTokens, err = g.newRunTokens(); err != nil {
			return nil, err
		}
		idOpts = append(idOpts, identity.WithLocalIssuer(g.runTokens))
	}
	g.ids, err = identity.New(ctx, cfg.Identity, idOpts...)
	if err != nil {
		return nil, err
	}
	g.closers = append(g.closers, g.ids)
	if src := g.ids.WorkloadAPI(); src != nil {
		g.metrics.enableSVID(src.Status)
	}
	if _, ok := g.ids.TokenReviewStats(); ok {
		g.metrics.enableTokenReview(func() identity.TokenReviewStats { st, _ := g.ids.TokenReviewStats(); return st })
	}

	dns := opts.Resolver
	if dns == nil {
		dns = net.DefaultResolver
	}
	g.resolver = &resolver{pins: cfg.resolve, dns: dns}
	g.dialer = newDialer(cfg.Upstream.DialTimeout.D())
	g.h2conns = newH2Conns(cfg.Upstream.MaxIdleConns, cfg.Upstream.IdleConnTimeout.D())
	g.metrics.upstreamHTTP2(g.h2conns)
	g.pools.Store(g.newUpstreamGeneration(trust))
	g.upstream = timedTransport{t: g.pools.Load().public.t, g: g}
	g.buffers = newBufferPool()
	g.connect = goproxy.NewProxyHttpServer()
	g.connect.Logger = log.New(g.libraryLog(slog.LevelDebug), "goproxy: ", 0)
	g.connect.Tr = nil
	g.connect.ConnectDial = nil
	g.connect.OnRequest().HandleConnectFunc(g.handleConnect)

	// Every handshake on the interception listener passes the SNI check
	// (GetConfigForClient runs before a session is resumed, GetCertificate
	// only for a full handshake) and gets the target's leaf certificate.
	g.mitmTLS = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		CipherSuites:       listenerCipherSuites,
		NextProtos:         []string{"h2", "http/1.1"},
		GetConfigForClient: g.checkSNI,
		GetCertificate:     g.leafCertificate,
	}
	if cfg.SessionTickets.On() {
		if g.tickets, err = tickets.New(cfg.SessionTickets.Rotation.D()); err != nil {
			return nil, err
		}
		g.mitmTLS.WrapSession, g.mitmTLS.UnwrapSession = g.wrapSession, g.unwrapSession
		g.tickets.Add(g.mitmTLS)
	} else {
		g.mitmTLS.SessionTicketsDisabled = true
	}

	if err := g.listen(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// upstreamWriteBuffer is the size of an HTTP/1.1 upstream connection's
// write buffer. A request body sent chunked (one whose placeholders were
// replaced by values of another length) is written a chunk per read of
// the client's body, and flushed after each: with net/http's default of
// 4 KiB, a chunk's header, data and CRLF each went out as a TLS record
// and a system call of their own. With room for a read of the client's
// body (one TLS record or HTTP/2 frame, at most 16 KiB, a little more
// after substitution) they go out together. It costs 16 KiB more per
// open upstream connection (1 MiB at the default 64 idle per host).
const upstreamWriteBuffer = 20 << 10

// upstreamSessions bounds the TLS sessions an upstream pool keeps for
// resumption (one per upstream host name).
const upstreamSessions = 512

// newUpstreamPool builds the transports of one upstream pool: to
// special-purpose addresses (private) or to others, keeping idle
// connections or not.
func (g *Gateway) newUpstreamPool(trust *upstreamTrust, private, keepAlive bool) *upstreamPool {
	cfg := g.cfg
	p := &upstreamPool{private: private, dialer: g.dialer}
	if keepAlive {
		p.h2 = g.h2conns
	}
	// New upstream connections resume the TLS sessions of earlier ones
	// (one cache per pool, so per class of address and per policy
	// generation as the pool is; a pool that keeps no connection keeps no
	// session either).
	var sessions tls.ClientSessionCache
	if keepAlive {
		sessions = tls.NewLRUClientSessionCache(upstreamSessions)
	}
	p.t = &http.Transport{
		// Never a proxy: the gateway is the last hop before the
		// destination, whatever HTTPS_PROXY its own environment has.
		Proxy:                  nil,
		DialContext:            p.dial,
		TLSClientConfig:        upstreamTLS(trust, sessions, nil),
		TLSHandshakeTimeout:    cfg.Upstream.TLSHandshakeTimeout.D(),
		ResponseHeaderTimeout:  cfg.Upstream.ResponseHeaderTimeout.D(),
		IdleConnTimeout:        cfg.Upstream.IdleConnTimeout.D(),
		MaxIdleConns:           cfg.Upstream.MaxIdleConns,
		MaxIdleConnsPerHost:    cfg.Upstream.MaxIdleConnsPerHost,
		DisableKeepAlives:      !keepAlive,
		ExpectContinueTimeout:  time.Second,
		ForceAttemptHTTP2:      true,
		MaxResponseHeaderBytes: cfg.Upstream.MaxResponseHeaderBytes,
		// Bodies are passed through as the upstream sent them.
		DisableCompression: true,
		WriteBufferSize:    upstreamWriteBuffer,
	}
	// The HTTP/1.1-only transport (ALPN offers http/1.1 alone). Not a
	// Clone: that would carry the h2 ALPN settings Clone puts in place.
	p.h1 = &http.Transport{
		DialContext:            p.dial,
		TLSClientConfig:        upstreamTLS(trust, sessions, []string{"http/1.1"}),
		TLSHandshakeTimeout:    p.t.TLSHandshakeTimeout,
		ResponseHeaderTimeout:  p.t.ResponseHeaderTimeout,
		IdleConnTimeout:        p.t.IdleConnTimeout,
		MaxIdleConns:           p.t.MaxIdleConns,
		MaxIdleConnsPerHost:    p.t.MaxIdleConnsPerHost,
		DisableKeepAlives:      !keepAlive,
		ExpectContinueTimeout:  p.t.ExpectContinueTimeout,
		MaxResponseHeaderBytes: p.t.MaxResponseHeaderBytes,
		DisableCompression:     true,
		WriteBufferSize:        upstreamWriteBuffer,
		Protocols:              new(http.Protocols),
	}
	p.h1.Protocols.SetHTTP1(true)
	switch cfg.Upstream.HTTP2 {
	case HTTP2Never:
		p.t = p.h1
	case HTTP2Match:
		// HTTP/1.1 clients: HTTP/1.1 to upstreams that speak it, HTTP/2
		// to those that speak nothing else (dialH1 tells them apart;
		// the transport bridges).
		p.tlsConf = upstreamTLS(trust, sessions, nil)
		p.handshakeTimeout = p.t.TLSHandshakeTimeout
		p.h1m = p.h1.Clone()
		p.h1m.DialTLSContext = p.dialH1
		p.match = &http.Transport{
			DialContext:            p.dial,
			DialTLSContext:         p.dialH2,
			ResponseHeaderTimeout:  p.t.ResponseHeaderTimeout,
			IdleConnTimeout:        p.t.IdleConnTimeout,
			MaxIdleConns:           p.t.MaxIdleConns,
			MaxIdleConnsPerHost:    p.t.MaxIdleConnsPerHost,
			DisableKeepAlives:      !keepAlive,
			ExpectContinueTimeout:  p.t.ExpectContinueTimeout,
			MaxResponseHeaderBytes: p.t.MaxResponseHeaderBytes,
			DisableCompression:     true,
			ForceAttemptHTTP2:      true,
			Protocols:              new(http.Protocols),
		}
		p.match.Protocols.SetHTTP2(true)
	}
	if keepAlive && cfg.Upstream.HTTP2 != HTTP2Always {
		// HTTP/1.1 requests without a body or with a small one of
		// declared length, on the handler's goroutine
		// (docs/performance.md, "The upstream client"). It dials as
		// the transport it stands in for: dialH1 under match (the ALPN
		// memo, errHTTP2Only), http/1.1 alone under never.
		p.h1c = &h1client.Client{
			Dial:                   p.dial,
			DialTLS:                p.dialH1,
			Fallback:               p.h1m,
			ResponseHeaderTimeout:  p.t.ResponseHeaderTimeout,
			IdleConnTimeout:        p.t.IdleConnTimeout,
			MaxIdleConns:           p.t.MaxIdleConns,
			MaxIdleConnsPerHost:    p.t.MaxIdleConnsPerHost,
			MaxResponseHeaderBytes: p.t.MaxResponseHeaderBytes,
		}
		if cfg.Upstream.HTTP2 == HTTP2Never {
			p.tlsConf = upstreamTLS(trust, sessions, nil)
			p.handshakeTimeout = p.t.TLSHandshakeTimeout
			p.h1c.DialTLS, p.h1c.Fallback = p.dialTLSH1, p.h1
		}
	}
	p.certs = newClientTransports(p.t)
	return p
}

// loadUpstreamTrust reads upstream.ca_bundle (bundle, "" for none) on top
// of the system roots.
func loadUpstreamTrust(bundle string) (*upstreamTrust, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	tr := &upstreamTrust{roots: roots, bundle: bundle}
	if bundle == "" {
		return tr, nil
	}
	pem, err := cfgfile.Read(bundle)
	if err != nil {
		return nil, fmt.Errorf("upstream.ca_bundle: %w", err)
	}
	if tr.roots, err = cabundle.AddRoots(roots, pem); err != nil {
		return nil, fmt.Errorf("upstream.ca_bundle: %s: %w", bundle, err)
	}
	tr.digest = sha256.Sum256(pem)
	return tr, nil
}

// newUpstreamGeneration builds the upstream pools of one trust
// generation: every one of its transports verifies against tr's roots
// and keeps TLS sessions of its own.
func (g *Gateway) newUpstreamGeneration(tr *upstreamTrust) *upstreamPools {
	u := newUpstreamPools(func(private, keepAlive bool) *upstreamPool {
		return g.newUpstreamPool(tr, private, keepAlive)
	}, g.store.Current)
	u.trust = tr
	return u
}

// listenError explains a failed bind of the config key's address: an
// address in use names the setting to change (and `--listen` for the
// demo), a refused one the privilege or address to check.
func listenError(key, addr string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		hint := fmt.Sprintf("set another address with %s: in the gateway config", key)
		if key == "listen" {
			hint += " (credgate demo: --listen ADDR)"
		}
		return fmt.Errorf("%s %s: address already in use: another process (perhaps another credgate) holds it; stop it or %s", key, addr, hint)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%s %s: permission denied: ports below 1024 need privileges; choose a port of 1024 or above with %s: in the gateway config", key, addr, key)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%s %s: no interface of this machine has that address; use 127.0.0.1, 0.0.0.0 or an address this machine has in %s: in the gateway config", key, addr, key)
	}
	return fmt.Errorf("%s %s: %w", key, addr, err)
}

// listen binds every listener and builds the servers.
func (g *Gateway) listen(ctx context.Context) error {
	var lc net.ListenConfig
	cfg := g.cfg
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return listenError("listen", cfg.Listen, err)
	}
	total, perSource := cfg.Limits.ConnectionCaps()
	g.connAdmit = newConnAdmission(total, perSource, &g.metrics.connsOpen)
	g.metrics.connsMax.Set(float64(total))
	// The defaults depend on the machine: say what is in force.
	g.log.Info("client connection limits", slog.Int("max_connections", total), slog.Int("max_connections_per_source", perSource))
	refusals := g.newConnRefusals("listen", true, total, perSource)
	if g.listenPP, err = newProxyHeaders("listen", cfg.ProxyProtocol.Listen); err != nil {
		_ = ln.Close()
		return err
	}
	g.proxyLn = &admitListener{Listener: ln, adm: g.connAdmit, sourceLater: g.listenPP != nil, refused: func(c net.Conn, limit string, src netip.Addr) {
		g.refuseConnection(refusals, c, limit, src)
	}}
	if g.listenPP != nil {
		g.listenPP.refusals = refusals
	}

	if cfg.TLSListen != "" {
		identityVerifies := len(cfg.Identity.MTLS.Bundles) > 0 || cfg.Identity.MTLS.WorkloadAPI != nil
		var tlsCfg *tls.Config
		var err error
		if cfg.TLS.SVID {
			tlsCfg, err = g.listenerSVID()
		} else {
			tlsCfg, err = g.listenerTLS(cfg.TLS, identityVerifies)
		}
		if err != nil {
			return err
		}
		ln, err := lc.Listen(ctx, "tcp", cfg.TLSListen)
		if err != nil {
			return listenError("tls_listen", cfg.TLSListen, err)
		}
		refusals := g.newConnRefusals("tls_listen", false, total, perSource)
		if g.tlsPP, err = newProxyHeaders("tls_listen", cfg.ProxyProtocol.TLSListen); err != nil {
			_ = ln.Close()
			return err
		}
		aln := &admitListener{Listener: ln, adm: g.connAdmit, sourceLater: g.tlsPP != nil, refused: func(c net.Conn, limit string, src netip.Addr) {
			g.refuseConnection(refusals, c, limit, src)
		}}
		if g.tlsPP != nil {
			// The PROXY header comes before the TLS handshake: the TLS
			// layer is put on after it (serveClient).
			g.tlsPP.tls, g.tlsPP.refusals = tlsCfg, refusals
			g.tlsLn = aln
		} else {
			g.tlsLn = tls.NewListener(aln, tlsCfg)
		}
	}
	g.proxyHeadersOn = g.listenPP != nil || g.tlsPP != nil

	aln, err := lc.Listen(ctx, "tcp", cfg.AdminListen)
	if err != nil {
		return listenError("admin_listen", cfg.AdminListen, err)
	}
	adminMax := cfg.Admin.maxConnections()
	g.adminAdmit = newConnAdmission(adminMax, 0, &g.adminOpen)
	adminRefusals := g.newAdminRefusals(!cfg.Admin.TLS.Enabled(), adminMax)
	g.adminLn = &admitListener{Listener: aln, adm: g.adminAdmit, refused: func(c net.Conn, limit string, src netip.Addr) {
		g.refuseConnection(adminRefusals, c, limit, src)
	}}
	if cfg.Admin.TLS.Enabled() {
		tc, err := g.adminTLS(cfg.Admin.TLS)
		if err != nil {
			return err
		}
		g.adminLn = tls.NewListener(g.adminLn, tc)
	} else if g.adminTok != nil && !loopback(aln.Addr()) {
		g.log.Warn("admin API: the admin token crosses the network in clear: admin_listen is not on loopback and admin.tls is not set (docs/scaling.md#securing-the-admin-api)",
			slog.String("admin_listen", aln.Addr().String()))
	}
	g.mitmLn = newConnListener(g.proxyLn.Addr())
	g.baseCtx, g.cutRequests = context.WithCancelCause(context.WithoutCancel(ctx))

	errLog := log.New(g.libraryLog(slog.LevelDebug), "", 0)
	base := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
			ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout.D(),
			IdleTimeout:       cfg.Limits.IdleTimeout.D(),
			ErrorLog:          errLog,
			BaseContext:       func(net.Listener) context.Context { return g.baseCtx },
			// OPTIONS * is the gateway's to refuse and audit, not net/http's
			// to answer 200 (over HTTP/2 in a tunnel).
			DisableGeneralOptionsHandler: true,
			// What the HTTP/2 server refuses before a handler runs is
			// counted and audited per connection (configureHTTP2): no
			// CountError here, it would take precedence.
			// limits.write_idle_timeout: a connection to which nothing
			// could be written for 1.5 times it is closed; its streams'
			// writes are cut before, by watchWrites (between 1 and 1.25
			// times it), which says why in their audit lines.
			HTTP2: &http.HTTP2Config{WriteByteTimeout: cfg.Limits.WriteIdleTimeout.D() * 3 / 2},
		}
	}
	g.proxy = g.recoverPanics(http.HandlerFunc(g.serveProxy))
	g.intercepted = g.recoverPanics(http.HandlerFunc(g.serveIntercepted))
	g.mitmSrv = base(g.watchWrites(g.intercepted))
	g.mitmSrv.ConnContext = interceptedConnContext
	if err := g.configureHTTP2(g.mitmSrv); err != nil {
		return fmt.Errorf("HTTP/2 server: %w", err)
	}
	g.h1Srv = &h1.Server{
		Limits: h1.Limits{
			MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
			ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout.D(),
			IdleTimeout:       cfg.Limits.IdleTimeout.D(),
			WriteIdleTimeout:  cfg.Limits.WriteIdleTimeout.D(),
		},
		Log:      g.log,
		Draining: g.draining.Load,
		Refused:  g.refuseUnreadable,
	}
	g.adminSrv = g.newAdminServer(errLog)
	return nil
}

// listenerTLS is the TLS listener's configuration, rebuilt from the files
// whenever tls.cert, tls.key or tls.client_ca change (a cert-manager
// renewal, a rotated client CA): each handshake gets the current one. With
// tls.client_ca the listener verifies client certificates itself
// (VerifiedChains); with identity.mtls.bundles it only requests them and
// identity verifies them against the bundles (PeerCertificates).
func (g *Gateway) listenerTLS(c ListenerTLS, identityVerifies bool) (*tls.Config, error) {
	if c.ClientCA != "" && !identityVerifies {
		g.tlsRoots = &clientRoots{}
	}
	return g.reloadingServerTLS("TLS listener certificate", "tls", c.Cert, c.Key, c.ClientCA, c.ReloadInterval, identityVerifies, g.tlsRoots)
}

// reloadingServerTLS is a server TLS configuration (HTTP/1.1) whose
// certificate, key and optional client CA are read from files and re-read
// every interval when they change; each handshake gets the current one.
// With clientCA a presented client certificate must verify
// (VerifiedChains); with requestOnly client certificates are only
// requested and left to identity (PeerCertificates). prefix names the
// config keys in errors. roots, when not nil, is kept to the client CAs
// in force, for the requests of connections verified before a change.
func (g *Gateway) reloadingServerTLS(what, prefix, certFile, keyFile, clientCA string, interval Duration, requestOnly bool, roots *clientRoots) (*tls.Config, error) {
	var cur atomic.Pointer[tls.Config]
	paths := []string{certFile, keyFile}
	if clientCA != "" {
		paths = append(paths, clientCA)
	}
	r := &filewatch.Reloader{Paths: paths, What: what, Interval: interval.D(), Log: g.log,
		Apply: func(files [][]byte) error {
			tc, err := serverTLS(prefix, clientCA, files, requestOnly)
			if err != nil {
				return err
			}
			// Tickets are encrypted with the outer configuration's keys
			// (g.tickets); crypto/tls reads this switch here.
			tc.SessionTicketsDisabled = g.tickets == nil
			if roots != nil && tc.ClientCAs != nil && roots.store(files[2]) {
				// A CA was removed: what it verified and is still open
				// is verified again (revoke.go).
				g.evidenceChanged()
			}
			cur.Store(tc)
			return nil
		}}
	if _, err := r.Load(); err != nil {
		return nil, err
	}
	g.reloaders = append(g.reloaders, r)
	return g.withTickets(&tls.Config{
		MinVersion:         tls.VersionTLS12,
		CipherSuites:       listenerCipherSuites,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return cur.Load(), nil },
	}), nil
}

// serverTLS is a server TLS configuration (HTTP/1.1) from the contents of
// a certificate, its key and, when clientCA names a file, PEM client CAs
// (files[2]). reloadingServerTLS applies it to every version of the files
// and Config.CheckFiles to the files as they are; errors name the config
// key under prefix ("tls", "admin.tls") that holds the bad file.
func serverTLS(prefix, clientCA string, files [][]byte, requestOnly bool) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(files[0], files[1])
	if err != nil {
		return nil, &keyError{key: pairKey(err), err: fmt.Errorf("%s.cert/%s.key: %w", prefix, prefix, err)}
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: listenerCipherSuites,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}
	if clientCA != "" {
		pool, err := cabundle.Pool(files[2])
		if err != nil {
			return nil, &keyError{key: "client_ca", err: fmt.Errorf("%s.client_ca: %s: %w", prefix, clientCA, err)}
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if requestOnly {
		tc.ClientAuth = tls.RequestClientCert
	}
	return tc, nil
}

// withTickets gives a listener's configuration the gateway's session
// ticket keys, or turns session tickets off when session_tickets is.
func (g *Gateway) withTickets(c *tls.Config) *tls.Config {
	if g.tickets == nil {
		c.SessionTicketsDisabled = true
	} else {
		g.tickets.Add(c)
	}
	return c
}

// listenerSVID is the TLS listener's configuration with tls.svid: each
// handshake is served the gateway's X.509-SVID in force (the Workload API
// rotates it), and client certificates are requested and left to
// identity, which verifies them against the Workload API's bundles (and
// identity.mtls.bundles) as they rotate.
func (g *Gateway) listenerSVID() (*tls.Config, error) {
	src := g.ids.WorkloadAPI()
	if src == nil {
		return nil, errors.New("tls.svid: identity.mtls.workload_api is not configured")
	}
	return g.withTickets(&tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   listenerCipherSuites,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: src.GetCertificate,
		ClientAuth:     tls.RequestClientCert,
	}), nil
}

// ProxyAddr is the plain proxy listener's address.
func (g *Gateway) ProxyAddr() net.Addr { return g.proxyLn.Addr() }

// TLSProxyAddr is the TLS proxy listener's address, nil when not
// configured.
func (g *Gateway) TLSProxyAddr() net.Addr {
	if g.tlsLn == nil {
		return nil
	}
	return g.tlsLn.Addr()
}

// AdminAddr is the admin listener's address.
func (g *Gateway) AdminAddr() net.Addr { return g.adminLn.Addr() }

// Ready is closed once Run serves.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// ReloadPolicy re-reads the policy file (SIGHUP). On error the policy in
// force stays; the error has been logged and counted.
func (g *Gateway) ReloadPolicy(ctx context.Context) error { return g.store.Reload(g.providerCtx(ctx)) }

// providerCtx returns ctx for loading a policy: its providers log through
// the gateway's logger and report their events (logins, renewals,
// revocations) to its metrics.
func (g *Gateway) providerCtx(ctx context.Context) context.Context {
	return providers.WithEnv(ctx, providers.Env{Log: g.log, Events: g.metrics})
}

func (g *Gateway) onReload(err error) {
	if err != nil {
		g.metrics.reloads.WithLabelValues("error").Inc()
		return
	}
	g.metrics.reloads.WithLabelValues("ok").Inc()
	g.metrics.rules.Set(float64(g.store.Current().Stats().Rules))
	g.countPolicySecretModes()
	// Connections to special-purpose addresses were allowed by the old
	// policy's allow_private settings: retire them. Connections to other
	// addresses are allowed under any policy and stay pooled.
	g.pools.Load().reload()
	// What is open was admitted by the old policy: decide it again.
	g.policyChanged()
}

// onRetire drops the cached credentials of a replaced policy's providers
// that release resources (leases, tokens) when they are closed: what they
// handed out may be revoked now, and a provider of the new policy with the
// same settings would otherwise be served it from the cache.
func (g *Gateway) onRetire(old *policy.Policy) {
	if g.cache == nil {
		return
	}
	for _, c := range old.Credentials() {
		if c.Releases {
			g.cache.InvalidateCredential(c.Name, c.Version)
		}
	}
}

// Run serves until ctx is done, then shuts down gracefully: /readyz turns
// 503, the listeners close (new connections are refused), requests in
// flight finish within shutdown_timeout, and whatever is left is closed.
// Run returns nil after a clean shutdown, or the error that stopped a
// listener. It may be called once.
func (g *Gateway) Run(ctx context.Context) error {
	err := errors.New("gateway: Run called twice")
	g.runOnce.Do(func() { err = g.run(ctx) })
	return err
}

func (g *Gateway) run(ctx context.Context) error {
	errc := make(chan error, 4)
	serve := func(name string, s *http.Server, ln net.Listener) {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("%s: %w", name, err)
		}
	}
	serveClients := func(name string, ln net.Listener, pp *proxyHeaders) {
		if err := g.serveClients(ctx, name, ln, pp); err != nil {
			errc <- fmt.Errorf("%s: %w", name, err)
		}
	}
	go serveClients("listen", g.proxyLn, g.listenPP)
	if g.tlsLn != nil {
		go serveClients("tls_listen", g.tlsLn, g.tlsPP)
	}
	go serve("intercept", g.mitmSrv, g.mitmLn)
	go serve("admin_listen", g.adminSrv, g.adminLn)

	for _, r := range g.reloaders {
		defer r.Start()()
	}
	if g.tickets != nil {
		tctx, stopTickets := context.WithCancel(ctx)
		defer stopTickets()
		go g.tickets.Run(tctx, func(err error) {
			g.log.Error("session ticket key not rotated; the current key stays in use", slog.Any("error", err))
		})
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := g.store.Watch(g.providerCtx(watchCtx)); err != nil {
			// Without a watch, SIGHUP still reloads.
			g.log.Warn("policy file watch not running; reload with SIGHUP", slog.Any("error", err))
		}
	}()
	close(g.ready)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		g.log.Error("listener failed; shutting down", slog.Any("error", runErr))
	}
	stopWatch()
	<-watchDone
	g.shutdown()
	if runErr == nil && g.audit != nil {
		// Audit lines given up at shutdown: a failed exit.
		runErr = g.audit.lost
	}
	return runErr
}

// EndDrain ends a shutdown's drain at once, as if shutdown_timeout had
// passed: what is still open is closed (tunnels and WebSockets with their
// audit lines), the audit log is closed with its final checkpoint and Run
// returns. Called before Run's context is done, it makes the coming drain
// end at once. `credgate serve` calls it on a second SIGTERM or SIGINT.
// It is safe to call more than once, from any goroutine.
func (g *Gateway) EndDrain() {
	g.endDrainOnce.Do(func() { close(g.endDrain) })
}

// errDrainEnded is the cause of the cancellation of every request still
// running when a shutdown's drain ends (shutdown_timeout passed, or
// EndDrain): each is answered 503 shutting_down and audited.
var errDrainEnded = errors.New("the gateway shut down: shutdown_timeout passed (or a second signal ended the drain) while the request was in flight")

// shutdownAnswerGrace is how long requests cut at the end of the drain
// (errDrainEnded) get to write their answer and audit line before their
// connections are closed.
const shutdownAnswerGrace = time.Second

// shutdown drains and closes everything.
func (g *Gateway) shutdown() {
	g.draining.Store(true)
	timeout := g.cfg.ShutdownTimeout.D()
	g.log.Info("shutting down: draining in-flight requests", slog.String("timeout", timeout.String()))
	drain, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-g.endDrain:
			g.log.Warn("drain ended before shutdown_timeout on request; closing what is still open")
			cancel()
		case <-drain.Done():
		}
	}()
	// When the drain ends with work left, requests still running are
	// cancelled (errDrainEnded): one waiting for its credential, its
	// identity or its upstream is answered 503 shutting_down, one whose
	// response is streaming is cut, each with its audit line, within
	// shutdownAnswerGrace; then their connections are closed (closing).
	// Tunnels and WebSockets are closed with theirs.
	closing, closeNow := context.WithCancel(context.Background())
	defer closeNow()
	var cutLong int
	cutDone := make(chan struct{})
	stopCut := context.AfterFunc(drain, func() {
		defer close(cutDone)
		g.cutRequests(errDrainEnded)
		cutLong = g.long.closeAll(closedShutdown)
		t := time.AfterFunc(shutdownAnswerGrace, closeNow)
		<-closing.Done()
		t.Stop()
	})

	// New connections are refused from here on (serveClients returns).
	for _, l := range []net.Listener{g.proxyLn, g.tlsLn} {
		if l != nil {
			_ = l.Close()
		}
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := g.mitmSrv.Shutdown(closing); err != nil {
			// The grace passed: cut what is left.
			_ = g.mitmSrv.Close()
		}
	}()
	go func() {
		defer wg.Done()
		g.long.wait(drain)
	}()
	go func() {
		defer wg.Done()
		if n := g.h1Srv.Shutdown(closing); n > 0 {
			g.log.Warn("closed client connections still busy after shutdown_timeout", slog.Int("connections", n))
		}
	}()
	wg.Wait()
	if !stopCut() {
		// The drain ended with work left: the cut runs.
		closeNow()
		<-cutDone
	}
	if cutLong > 0 {
		g.log.Warn("closed tunnels and WebSockets still open at the end of shutdown_timeout", slog.Int("connections", cutLong))
		// Their relays end now; let them write their audit lines before
		// the audit output closes.
		wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
		g.long.wait(wctx)
		wcancel()
	}
	g.pools.Load().closeIdle()
	_ = g.adminSrv.Close()
	g.Close()
	g.log.Info("shut down")
}

// Close releases what New built: listeners, the policy's providers, the
// cache and the audit file. Run calls it; call it only when Run is never
// called.
func (g *Gateway) Close() {
	for _, l := range []net.Listener{g.proxyLn, g.tlsLn, g.adminLn} {
		if l != nil {
			_ = l.Close()
		}
	}
	if g.cutRequests != nil {
		g.cutRequests(errDrainEnded)
	}
	g.recheck.stop()
	g.flights.stop()
	if g.mitmLn != nil {
		_ = g.mitmLn.Close()
	}
	if g.cache != nil {
		g.cache.Close()
	}
	if g.switches != nil {
		_ = g.switches.Close()
		g.switches = nil
	}
	if g.limiter != nil {
		_ = g.limiter.Close()
		g.limiter = nil
	}
	if g.runTokens != nil {
		// Before g.shared: it writes revocations back through its client.
		_ = g.runTokens.Close()
	}
	if g.shared != nil {
		_ = g.shared.Close()
		g.shared = nil
	}
	if g.audit != nil {
		_ = g.audit.Close()
	}
	if g.tracer != nil {
		// The spans still queued are exported, for at most 5 seconds.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := g.tracer.Shutdown(sctx); err != nil {
			g.log.Warn("exporting the last spans failed", slog.Any("error", err))
		}
		cancel()
		g.tracer = nil
	}
	if g.store != nil {
		// Every open policy's providers' Cleanup (Vault's
		// revoke_on_cleanup) together, each abandoned after
		// module.CleanupTimeout: the chart's stop budget counts one.
		if err := g.store.Close(); err != nil {
			msg := "releasing the policy's providers failed"
			if errors.Is(err, module.ErrAbandoned) {
				msg = "releasing the policy's providers was cut at its bound; what they had not revoked stays valid until it expires"
			}
			g.log.Warn(msg, slog.Any("error", err), slog.String("bound", module.CleanupTimeout.String()))
		}
	}
	for _, c := range g.closers {
		_ = c.Close()
	}
	g.closers = nil
}

// adminHandler serves /healthz, /readyz, /metrics and the admin API
// (admin.go, runtokens.go), every request counted and audited
// (serveAdmin).
func (g *Gateway) adminHandler() http.Handler {
	return g.serveAdmin(g.adminMux(newAdminMux()))
}

// adminMux registers every route of the admin listener on m and returns
// it.
func (g *Gateway) adminMux(m *adminMux) *adminMux {
	m.probe("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	}))
	m.probe("GET /readyz", http.HandlerFunc(g.serveReadyz))
	g.adminRoutes(m)
	g.runTokenRoutes(m)
	m.probe("GET /metrics", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
	return m
}

// recoverPanics logs a panic of h (a bug, in the gateway or a plugin) as
// where it happened and what kind of value it was, never the value, which
// may hold a credential (internal/panics), and passes it on as
// http.ErrAbortHandler: the server cuts the client's connection or stream
// without logging anything of its own (net/http would print the value
// and a stack whose frames print argument words).
func (g *Gateway) recoverPanics(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p != http.ErrAbortHandler {
				g.log.Error("panic serving a request; its connection or stream is cut", slog.String("host", r.Host),
					slog.String("panic", panics.Describe(p)), slog.String("where", panics.Where(1)))
			}
			panic(http.ErrAbortHandler)
		}()
		h.ServeHTTP(w, r)
	})
}

// bufferPool recycles the 32 KiB buffers that copy response bodies and
// relay long-lived connections. The pool holds pointers to the arrays
// themselves: a buffer goes back without a new slice header on the heap
// (taking the address of Put's slice argument allocated one per Put).
type bufferPool struct{ p sync.Pool }

const poolBufSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([poolBufSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[poolBufSize]byte)[:] }

// Put takes back a buffer Get returned (any slice of it that starts
// where it does); another one is left to the collector.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == poolBufSize {
		b.p.Put((*[poolBufSize]byte)(buf[:poolBufSize]))
	}
}
