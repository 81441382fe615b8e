package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/rediscache"
	"github.com/credgate/credgate/ratelimit"
)

// metrics are the gateway's Prometheus metrics, on a registry of its own
// (no global state: two gateways in one process do not collide). Label
// values are decisions, rule and workload names, status codes, reason
// codes, cache results and provider names only: never a host, path,
// address or secret.
type metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	duration        prometheus.Histogram
	upstreamLatency prometheus.Histogram
	refusals        *prometheus.CounterVec
	cache           *prometheus.CounterVec
	fetchDuration   *prometheus.HistogramVec
	providerErrors  *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	rules           prometheus.Gauge
	connections     prometheus.GaugeFunc
	// connsOpen is the count of open client connections of the proxy
	// listeners, kept by their admission (admit.go); connections reads
	// it. connsMax is limits.max_connections in force (0: off).
	connsOpen atomic.Int64
	connsMax  prometheus.Gauge
	// batchHeld is the bytes of batch bodies held now (batchBudget).
	batchHeld prometheus.Gauge
	// restartPending counts the settings changed in the config file
	// that wait for a restart (Gateway.ReloadConfig).
	restartPending prometheus.Gauge
	// secretLooseConfig counts the secret files the config names whose
	// mode or owner is loose (Gateway.warnSecretModes, at start and each
	// config re-read), secretLoosePolicy the policy in force's credential
	// files (policy.Store.LooseSecretFiles, at each policy load);
	// secretLooseMode reports their sum, so that neither re-read can
	// overwrite the other's count.
	secretLooseConfig, secretLoosePolicy atomic.Int64
	secretLooseMode                      prometheus.GaugeFunc
	// configReloads counts re-reads of the gateway config by result.
	configReloads  *prometheus.CounterVec
	connsRefused   *prometheus.CounterVec
	acceptErrors   *prometheus.CounterVec
	tunnels        prometheus.Gauge
	longLived      *prometheus.GaugeVec
	longClosed     *prometheus.CounterVec
	leafCerts      prometheus.GaugeFunc
	redisUp        prometheus.Gauge
	redisErrors    *prometheus.CounterVec
	shared         *prometheus.CounterVec
	sharedRejected *prometheus.CounterVec
	rateLimited    *prometheus.CounterVec
	limiterBackend *prometheus.GaugeVec
	http2Errors    *prometheus.CounterVec
	// adminRequests counts every request to admin_listen by route
	// pattern and code (adminserve.go).
	adminRequests *prometheus.CounterVec
	// providerEvents counts providers' lifecycle events
	// (providers.EventObserver).
	providerEvents *prometheus.CounterVec
	// placeholders count substitutions and tripwires (placeholder.go).
	placeholders *placeholderMetrics
	// response counts scrubbing and custody (scrub.go).
	response *responseMetrics

	// series and cacheResults keep the counters of requests and cache
	// lookups by their labels: every request adds to one of each, and
	// a map lookup costs less than WithLabelValues (which hashes the
	// label values and formats the status).
	series       requestSeries
	cacheResults map[providers.CacheResult]prometheus.Counter
}

// requestKey is the labels of one credgate_requests_total series.
type requestKey struct {
	decision, rule string
	status         int
}

// requestSeries caches the counters of credgate_requests_total. Bounded:
// beyond maxRequestSeries series (more than decisions × rules × statuses
// a policy makes), further ones are looked up each time.
type requestSeries struct {
	mu sync.RWMutex
	m  map[requestKey]prometheus.Counter
}

const maxRequestSeries = 4096

// statusClass is the status kept in a requestKey for status: status
// itself when it is a registered code (one net/http has a text for), else
// its class, 1 to 9 (1xx to 9xx), or 0 outside 100–999.
func statusClass(status int) int {
	switch {
	case http.StatusText(status) != "":
		return status
	case status >= 100 && status <= 999:
		return status / 100
	}
	return 0
}

// statusLabel is the status label of a statusClass: the code, "5xx" for a
// class, "other" for 0. An upstream answering with codes no registry
// knows (299, 599, 731) thus adds at most one series per class, not one
// per code.
func statusLabel(class int) string {
	switch {
	case class >= 100:
		return strconv.Itoa(class)
	case class >= 1:
		return strconv.Itoa(class) + "xx"
	}
	return "other"
}

// counter returns the counter of (decision, rule, status) in vec.
func (rs *requestSeries) counter(vec *prometheus.CounterVec, decision, rule string, status int) prometheus.Counter {
	k := requestKey{decision, rule, statusClass(status)}
	rs.mu.RLock()
	c, ok := rs.m[k]
	rs.mu.RUnlock()
	if ok {
		return c
	}
	c = vec.WithLabelValues(decision, rule, statusLabel(k.status))
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = make(map[requestKey]prometheus.Counter)
	}
	if len(rs.m) < maxRequestSeries {
		rs.m[k] = c
	}
	return c
}

func newMetrics(leafCount func() float64) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_requests_total",
		Help: "Requests (and refused or tunnelled CONNECTs) by decision, rule and the status returned to the client.",
	}, []string{"decision", "rule", "status"})
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "credgate_request_duration_seconds",
		Help:    "Time in the gateway per request, until the response headers were sent.",
		Buckets: latency,
	})
	m.upstreamLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "credgate_upstream_duration_seconds",
		Help:    "Time from sending a request upstream to receiving its response headers.",
		Buckets: latency,
	})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_refusals_total",
		Help: "Requests the gateway answered itself, by reason code.",
	}, []string{"code"})
	m.cache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_credential_cache_total",
		Help: "Credential cache lookups by result (hit, miss, error).",
	}, []string{"result"})
	m.fetchDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "credgate_provider_fetch_duration_seconds",
		Help:    "Provider fetch latency, including background refreshes.",
		Buckets: latency,
	}, []string{"provider"})
	m.providerErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_provider_errors_total",
		Help: "Failed provider fetches.",
	}, []string{"provider"})
	m.providerEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_provider_events_total",
		Help: "Provider lifecycle events by provider, event and result: for vault, login, relogin, token_renewal, lease_renewal (refused: the secret was dropped), lease_revoke and token_revoke (on cleanup); results ok, refused, error; for every provider, fetch with abandoned (a Fetch that ignored its context) and held_back (not started: an abandoned one has not returned), and evict (the credential cache was full) with own_entries (the new entry's workload held the most: its own oldest went) and largest_holder (another holder held more: its oldest went).",
	}, []string{"provider", "event", "result"})
	m.reg.MustRegister(m.providerEvents)
	m.response = newResponseMetrics(m.reg)
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_policy_reloads_total",
		Help: "Policy reload attempts by result (ok, error). A rejected reload keeps the last good policy.",
	}, []string{"result"})
	m.rules = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "credgate_policy_rules",
		Help: "Rules in the policy in force.",
	})
	m.connections = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "credgate_connections_open",
		Help: "Open client connections (plain and TLS listeners, including tunnels).",
	}, func() float64 { return float64(m.connsOpen.Load()) })
	m.connsMax = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "credgate_connections_max",
		Help: "limits.max_connections in force: the most open client connections the proxy listeners admit; 0 is no limit.",
	})
	m.batchHeld = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "credgate_batch_buffer_bytes",
		Help: "Bytes of batch bodies the gateway holds now to judge their sub-requests (as sent, and decoded while judged), of limits.batch_buffer_bytes; a batch over it is refused 503 batch_capacity.",
	})
	m.restartPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "credgate_config_restart_pending",
		Help: "Settings of the gateway config file that changed since start (found when it is re-read, on SIGHUP) and apply only after a restart; 0 when the file matches the running config. The log line and /readyz's detail name them.",
	})
	m.secretLooseMode = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "credgate_secret_files_loose_mode",
		Help: "Secret files that others than the gateway's user may read (mode & 0o004) or its group or others may write (mode & 0o022), or that a user other than root and the gateway's owns: those the gateway config names (ca.key, admin.token_file, Redis password and keys, audit and run-token keys, ...; identity's bearer_token_file and kubernetes token_file for write and owner only), judged at start and at each config re-read (SIGHUP), plus the policy's credential files (a static file:, Vault token, role_id and secret_id files, private keys of github-app, snowflake, salesforce, google, oauth2 and azure), judged at each policy load; a service-account token file (awssts web_identity_token_file, google subject_token.file, vault kubernetes and jwt token_file) only for write and owner. The log's warnings name each setting. 0 when every one is 0400, 0440, 0600 or 0640.",
	}, func() float64 { return float64(m.secretLooseConfig.Load() + m.secretLoosePolicy.Load()) })
	m.configReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_config_reloads_total",
		Help: "Re-reads of the gateway config file (on SIGHUP) by result: ok (what reloads was applied, what waits for a restart is counted in credgate_config_restart_pending), error (the file did not load, or a setting the reload applies, upstream.ca_bundle, could not be: the last good config stays in force, and the log and /readyz's detail, config.error, say why).",
	}, []string{"result"})
	m.connsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_connections_refused_total",
		Help: "Client connections refused when accepted (connection_limit), by listener (listen, tls_listen, admin) and the limit that refused (global: limits.max_connections, or admin.max_connections on admin; per_source: limits.max_connections_per_source).",
	}, []string{"listener", "limit"})
	m.acceptErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_accept_errors_total",
		Help: "Failed accepts on a proxy listener (listen, tls_listen), each waited out and retried: out of file descriptors, and the like.",
	}, []string{"listener"})
	for _, l := range []string{"listen", "tls_listen"} {
		m.acceptErrors.WithLabelValues(l)
	}
	m.tunnels = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "credgate_tunnels_open",
		Help: "Open CONNECT tunnels, intercepted or spliced.",
	})
	m.longLived = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "credgate_long_lived_connections",
		Help: "Open long-lived connections whose bytes are relayed without a decision per request, by kind: tunnel (spliced) or websocket.",
	}, []string{"kind"})
	m.longClosed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_long_lived_closed_total",
		Help: "Long-lived connections that ended, by kind and reason: ended (a side closed it), kill_switch, identity_expired, identity_revoked, policy_changed, idle, max_lifetime, shutdown.",
	}, []string{"kind", "reason"})
	for _, k := range longKinds {
		m.longLived.WithLabelValues(k)
		for _, r := range closeReasons {
			m.longClosed.WithLabelValues(k, r)
		}
	}
	m.leafCerts = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "credgate_leaf_certificates",
		Help: "Leaf certificates in the interception cache.",
	}, leafCount)
	m.redisUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "credgate_redis_up",
		Help: "1 while Redis (cache.redis) answers, 0 while replicas serve from their own cache and direct provider calls. Absent without cache.redis.",
	})
	m.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_redis_errors_total",
		Help: "Failed Redis operations by operation (get, set, lock, unlock, publish, delete, ping; rate_limit for the rate limiter).",
	}, []string{"op"})
	m.shared = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_shared_cache_total",
		Help: "Shared (Redis) cache lookups after an in-process miss, by result: hit, miss (this replica called the provider), waited (another replica did), bypass (Redis unavailable).",
	}, []string{"result"})
	m.sharedRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_shared_cache_rejected_total",
		Help: "Shared (Redis) cache entries read but not used (a miss), by reason: undecryptable (foreign, edited, moved from another key, or an unknown key), expired (past the expiry sealed into it), rollback (older than an entry this replica already saw), newer_format (sealed by a newer credgate: upgrade this replica).",
	}, []string{"reason"})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_rate_limited_total",
		Help: "Requests (and tunnelled CONNECTs) refused with 429 by a rate limit, by the limit that refused (rule or workload), rule and workload.",
	}, []string{"limit", "rule", "workload"})
	m.limiterBackend = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "credgate_rate_limit_backend",
		Help: "1 for the backend that enforces rate limits now: redis (shared by the fleet) or local (per replica; without cache.redis, or while Redis is unavailable).",
	}, []string{"backend"})
	m.adminRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_admin_api_requests_total",
		Help: "Requests to admin_listen, authorised or refused, by route pattern (\"unmatched\" for none) and code (\"ok\" or the reason code).",
	}, []string{"route", "code"})
	m.http2Errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credgate_http2_errors_total",
		Help: "HTTP/2 errors the HTTP/2 server of the intercepted tunnels handled itself, by golang.org/x/net/http2's CountError class (stream_PROTOCOL_ERROR_bad_path: a stream whose :path does not parse, reset before the gateway saw a request); each is also audited http2_refused.",
	}, []string{"type"})
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	m.cacheResults = map[providers.CacheResult]prometheus.Counter{}
	for _, r := range []providers.CacheResult{providers.CacheHit, providers.CacheMiss, providers.CacheError} {
		m.cacheResults[r] = m.cache.WithLabelValues(string(r))
	}
	m.reg.MustRegister(m.requests, m.duration, m.upstreamLatency, m.refusals, m.cache, m.fetchDuration,
		m.providerErrors, m.reloads, m.rules, m.connections, m.connsMax, m.batchHeld, m.restartPending, m.secretLooseMode, m.configReloads, m.connsRefused, m.acceptErrors, m.tunnels, m.longLived, m.longClosed, m.leafCerts, m.rateLimited, m.limiterBackend,
		m.http2Errors, m.adminRequests, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.placeholders = newPlaceholderMetrics(m.reg)
	return m
}

// HTTP2Error counts an error of the intercepting HTTP/2 server; h2Conn's
// CountError calls it. errType is one of a fixed set of names
// golang.org/x/net/http2 makes (no client bytes in it).
func (m *metrics) HTTP2Error(errType string) { m.http2Errors.WithLabelValues(errType).Inc() }

// request records one finished request or CONNECT.
func (m *metrics) request(decision, rule string, status int, d time.Duration) {
	m.series.counter(m.requests, decision, rule, status).Inc()
	m.duration.Observe(d.Seconds())
}

// CacheLookup implements providers.CacheObserver.
func (m *metrics) CacheLookup(_ providers.CacheKey, r providers.CacheResult) {
	if c, ok := m.cacheResults[r]; ok {
		c.Inc()
		return
	}
	m.cache.WithLabelValues(string(r)).Inc()
}

// ProviderFetch implements providers.CacheObserver.
func (m *metrics) ProviderFetch(k providers.CacheKey, d time.Duration, err error) {
	m.fetchDuration.WithLabelValues(k.Provider).Observe(d.Seconds())
	if err != nil {
		m.providerErrors.WithLabelValues(k.Provider).Inc()
	}
}

// ProviderEvent implements providers.EventObserver.
func (m *metrics) ProviderEvent(provider, event, result string) {
	m.providerEvents.WithLabelValues(provider, event, result).Inc()
}

var _ providers.EventObserver = (*metrics)(nil)

// enableRedis registers the Redis metrics (only gateways with
// cache.redis show them).
func (m *metrics) enableRedis() {
	for _, r := range []string{"hit", "miss", "waited", "bypass"} {
		m.shared.WithLabelValues(r)
	}
	for _, r := range rediscache.Rejects {
		m.sharedRejected.WithLabelValues(r)
	}
	m.reg.MustRegister(m.redisUp, m.redisErrors, m.shared, m.sharedRejected)
}

// interceptionCA registers the interception CA's metrics, read from
// stats at each scrape.
func (m *metrics) interceptionCA(stats func() mitm.IssuerStats) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "credgate_interception_ca_expiry_timestamp_seconds",
			Help: "End of the interception CA's validity (ca.cert's NotAfter, Unix time): past it every intercepted CONNECT is refused 502 interception_unavailable.",
		}, func() float64 { return float64(stats().CANotAfter.Unix()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "credgate_leaf_certificates_signed_total",
			Help: "Leaf certificates the interception CA signed (a host not in the leaf cache, or its leaf in the last fifth of its life).",
		}, func() float64 { return float64(stats().Signed) }),
	)
}

// upstreamHTTP2 registers the metrics of the HTTP/2 upstream connection
// bound (h2conns.go), read from s at each scrape.
func (m *metrics) upstreamHTTP2(s *h2Conns) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "credgate_upstream_http2_connections",
			Help: "HTTP/2 upstream connections counted against upstream.max_idle_conns (those open, and those closed by the HTTP/2 client and not yet forgotten): an upper bound of the HTTP/2 connections open to upstreams.",
		}, func() float64 { return float64(s.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "credgate_upstream_http2_connections_closed_total",
			Help: "Idle HTTP/2 upstream connections closed because upstream.max_idle_conns were counted (the one idle longest, of any host): a fast rate means the gateway reaches more HTTP/2 upstreams than it keeps connections to.",
		}, func() float64 { return float64(s.closed.Load()) }),
	)
}

// enableSVID registers the SPIFFE Workload API metrics (only gateways
// with identity.mtls.workload_api show them), read from status at each
// scrape.
func (m *metrics) enableSVID(status func() identity.SVIDStatus) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "credgate_svid_expiry_timestamp_seconds",
			Help: "Expiry (NotAfter, Unix time) of the gateway's X.509-SVID from the SPIFFE Workload API; 0 before the first.",
		}, func() float64 {
			if e := status().Expires; !e.IsZero() {
				return float64(e.Unix())
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "credgate_svid_rotations_total",
			Help: "Times the Workload API replaced the gateway's X.509-SVID with a new one.",
		}, func() float64 { return float64(status().Rotations) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "credgate_workload_api_updates_total",
			Help: "Updates (SVIDs and trust bundles) received from the SPIFFE Workload API.",
		}, func() float64 { return float64(status().Updates) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "credgate_workload_api_errors_total",
			Help: "Failed SPIFFE Workload API streams (retried with back-off) and rejected updates.",
		}, func() float64 { return float64(status().Errors) }),
	)
}

// enableTokenReview registers the TokenReview metrics (only gateways with
// identity.kubernetes show them), read from status at each scrape.
func (m *metrics) enableTokenReview(status func() identity.TokenReviewStats) {
	counter := func(name, help string, labels prometheus.Labels, v func(identity.TokenReviewStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v(status())) })
	}
	const reviews = "TokenReviews sent to the Kubernetes API server, by result: authenticated, rejected (the token is not valid for credgate), error (the API server did not answer usably)."
	const hits = "Tokens answered from memory without a TokenReview, by cache: positive (accepted tokens), negative (rejected tokens)."
	gauge := func(cache string, v func(identity.TokenReviewStats) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "credgate_tokenreview_cache_entries",
			Help: "Tokens remembered by the TokenReview verifier, by cache (positive, negative); each is bounded (identity.kubernetes.cache_size, negative_cache_size).", ConstLabels: prometheus.Labels{"cache": cache}},
			func() float64 { return float64(v(status())) })
	}
	m.reg.MustRegister(
		counter("credgate_tokenreview_requests_total", reviews, prometheus.Labels{"result": "authenticated"}, func(s identity.TokenReviewStats) uint64 { return s.Authenticated }),
		counter("credgate_tokenreview_requests_total", reviews, prometheus.Labels{"result": "rejected"}, func(s identity.TokenReviewStats) uint64 { return s.Rejected }),
		counter("credgate_tokenreview_requests_total", reviews, prometheus.Labels{"result": "error"}, func(s identity.TokenReviewStats) uint64 { return s.Errors }),
		counter("credgate_tokenreview_cache_hits_total", hits, prometheus.Labels{"cache": "positive"}, func(s identity.TokenReviewStats) uint64 { return s.PositiveHits }),
		counter("credgate_tokenreview_cache_hits_total", hits, prometheus.Labels{"cache": "negative"}, func(s identity.TokenReviewStats) uint64 { return s.NegativeHits }),
		counter("credgate_tokenreview_throttled_total", "Tokens refused without a TokenReview because their source had used its budget (identity.kubernetes.review_rate, review_burst).", nil,
			func(s identity.TokenReviewStats) uint64 { return s.Throttled }),
		gauge("positive", func(s identity.TokenReviewStats) int { return s.Cached }),
		gauge("negative", func(s identity.TokenReviewStats) int { return s.NegativeCached }),
	)
}

// RedisUp implements rediscache.Observer.
func (m *metrics) RedisUp(up bool) {
	if up {
		m.redisUp.Set(1)
	} else {
		m.redisUp.Set(0)
	}
}

// RedisError implements rediscache.Observer.
func (m *metrics) RedisError(op string) { m.redisErrors.WithLabelValues(op).Inc() }

// LimiterShared implements ratelimit.Observer.
func (m *metrics) LimiterShared(shared bool) {
	v := map[bool]float64{true: 1, false: 0}
	m.limiterBackend.WithLabelValues("redis").Set(v[shared])
	m.limiterBackend.WithLabelValues("local").Set(v[!shared])
}

// SharedLookup implements rediscache.Observer.
func (m *metrics) SharedLookup(result string) { m.shared.WithLabelValues(result).Inc() }

// Rejected implements rediscache.Observer.
func (m *metrics) Rejected(reason string) { m.sharedRejected.WithLabelValues(reason).Inc() }

var (
	_ providers.CacheObserver = (*metrics)(nil)
	_ rediscache.Observer     = (*metrics)(nil)
	_ ratelimit.Observer      = (*metrics)(nil)
)

// policyFile registers credgate_policy_last_reload_successful, read from
// inForce at each scrape (policy.Store.FileInForce).
func (m *metrics) policyFile(inForce func() bool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "credgate_policy_last_reload_successful",
		Help: "1 when the policy file, as last read, is the policy in force; 0 while it is rejected or unreadable (the last good policy stays in force). Alert on 0: credgate_policy_reloads_total{result=\"error\"} rises only once per bad file.",
	}, func() float64 {
		if inForce() {
			return 1
		}
		return 0
	}))
}
