package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/httpclient"
)

// Defaults applied by New (Config.WithDefaults) to unset fields.
const (
	// DefaultReloadInterval is how often trust bundle, JWKS and posture
	// files are checked for changes.
	DefaultReloadInterval = 10 * time.Second
	// DefaultClockSkew is the leeway for a token's exp, nbf and iat.
	DefaultClockSkew = 30 * time.Second
	// MaxClockSkew is the largest clock_skew accepted.
	MaxClockSkew = 5 * time.Minute
	// DefaultTokenCacheSize is how many verified tokens are remembered.
	DefaultTokenCacheSize = 10000
	// DefaultJWKSRefreshInterval is how often a remote JWKS is refetched in
	// the background.
	DefaultJWKSRefreshInterval = time.Hour
	// DefaultJWKSMinRefetchInterval is the least time between two fetches
	// of a JWKS triggered by tokens with an unknown key id.
	DefaultJWKSMinRefetchInterval = 10 * time.Second
	// DefaultFetchTimeout limits one HTTP request of a verifier or feed.
	DefaultFetchTimeout = 10 * time.Second
	// DefaultKubernetesAPIServer, DefaultKubernetesCAFile and
	// DefaultKubernetesTokenFile are the in-cluster settings of a pod.
	DefaultKubernetesAPIServer = "https://kubernetes.default.svc"
	DefaultKubernetesCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	DefaultKubernetesTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	// DefaultTokenReviewCacheTTL is how long a TokenReview answer is
	// reused.
	DefaultTokenReviewCacheTTL = 10 * time.Second
	// DefaultTokenReviewNegativeTTL is how long a rejected token is
	// answered without a review.
	DefaultTokenReviewNegativeTTL = 30 * time.Second
	// DefaultTokenReviewNegativeSize is how many rejected tokens are
	// remembered.
	DefaultTokenReviewNegativeSize = 10000
	// DefaultTokenReviewRate and DefaultTokenReviewBurst are each
	// source's budget of TokenReviews: a pod presents a new token about
	// hourly, so a few reviews a second is far above what it needs.
	DefaultTokenReviewRate  = 5
	DefaultTokenReviewBurst = 20
	// MaxTokenReviewRate bounds kubernetes.review_rate.
	MaxTokenReviewRate = 10000
	// DefaultTokenReviewSources is how many sources' budgets are
	// tracked; beyond, the oldest is forgotten (a full bucket again).
	DefaultTokenReviewSources = 10000
	// DefaultPostureInterval is how often the posture feed is re-read.
	DefaultPostureInterval = 30 * time.Second
	// DefaultWorkloadAPIStartTimeout is how long New waits for the first
	// X.509-SVID from the SPIFFE Workload API before it fails.
	DefaultWorkloadAPIStartTimeout = 30 * time.Second
)

// Issuer profiles: how a token's claims become factor attributes.
const (
	// ProfileOIDC maps only the claims listed in IssuerConfig.Claims.
	ProfileOIDC = "oidc"
	// ProfileKubernetes reads projected service-account tokens: namespace,
	// service_account and pod from the kubernetes.io claim.
	ProfileKubernetes = "kubernetes"
	// ProfileSPIFFE reads JWT-SVIDs: sub is a SPIFFE ID (spiffe_id,
	// trust_domain, path).
	ProfileSPIFFE = "spiffe"
	// ProfileGitHubActions reads GitHub Actions OIDC tokens: repository,
	// repository_owner, ref, workflow, job_workflow_ref, environment.
	ProfileGitHubActions = "github-actions"
)

// Config is the `identity:` block of the gateway config: which factors
// the gateway verifies and how. The zero value is valid: the source
// factor, and the mtls factor for certificates the gateway's TLS listener
// verified (tls.client_ca). Relative paths are resolved by ResolvePaths.
type Config struct {
	// MTLS configures client-certificate verification.
	MTLS MTLSConfig `yaml:"mtls"`
	// JWT configures signed tokens in Proxy-Authorization; off without
	// issuers.
	JWT JWTConfig `yaml:"jwt"`
	// Kubernetes, when set, checks tokens in Proxy-Authorization with the
	// Kubernetes TokenReview API (factor kind "kubernetes").
	Kubernetes *KubernetesConfig `yaml:"kubernetes"`
	// Posture, when set, feeds per-workload posture records to rule
	// conditions (workload.posture).
	Posture *PostureConfig `yaml:"posture"`
	// Verifiers configures verifier plugins (Register) by factor kind:
	// each block is that plugin's settings. A policy names the kind in
	// `require:` like a built-in one.
	Verifiers map[string]yaml.Node `yaml:"verifiers"`
}

// MTLSConfig configures the mtls factor.
type MTLSConfig struct {
	// Bundles are PEM trust bundles, reloaded when they change, against
	// which client certificates not already verified by the listener are
	// verified. Default none: only the listener's tls.client_ca.
	Bundles []TrustBundle `yaml:"bundles"`
	// TrustDomains, when set, accepts SPIFFE IDs of these trust domains
	// only, whichever CA signed them.
	TrustDomains []string `yaml:"trust_domains"`
	// RequireSPIFFE refuses client certificates without a SPIFFE ID in
	// their URI SAN. Default false: the subject DN identifies them.
	RequireSPIFFE bool `yaml:"require_spiffe"`
	// ReloadInterval is how often bundle files are checked for changes.
	// Default DefaultReloadInterval.
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// WorkloadAPI, when set, takes the X.509 bundles of the gateway's
	// trust domains (and federated ones) from the SPIFFE Workload API, as
	// they rotate, alongside Bundles; and the gateway's own X.509-SVID,
	// which the TLS listener can serve (tls.svid).
	WorkloadAPI *WorkloadAPIConfig `yaml:"workload_api"`
}

// WorkloadAPIConfig is the connection to a SPIFFE Workload API (a SPIRE
// agent's socket).
type WorkloadAPIConfig struct {
	// Socket is the Workload API address: unix:///run/spire/agent.sock
	// or tcp://127.0.0.1:8081. Default: the SPIFFE_ENDPOINT_SOCKET
	// environment variable.
	Socket string `yaml:"socket"`
	// SPIFFEID picks the gateway's own SVID when the Workload API issues
	// the gateway several. Default: the first one (the default SVID).
	SPIFFEID string `yaml:"spiffe_id"`
	// StartTimeout is how long New waits for the first X.509-SVID; if
	// none arrived by then, New fails saying why (socket unreachable, no
	// registration entry for the gateway). Default
	// DefaultWorkloadAPIStartTimeout.
	StartTimeout time.Duration `yaml:"start_timeout"`
}

// TrustBundle is one PEM file of CA certificates.
type TrustBundle struct {
	// File is the PEM file (for SPIRE, the bundle the agent writes).
	File string `yaml:"file"`
	// TrustDomain, when set, restricts the bundle to SPIFFE IDs of that
	// trust domain (an X.509-SVID is verified only against its own trust
	// domain's bundle). Unset: the bundle verifies any certificate.
	TrustDomain string `yaml:"trust_domain"`
}

// JWTConfig configures the jwt factor.
type JWTConfig struct {
	// Issuers are the accepted token issuers. A token is verified by the
	// issuer whose `issuer` equals its iss claim; a token no issuer
	// claims is refused.
	Issuers []IssuerConfig `yaml:"issuers"`
	// ClockSkew is the leeway for exp, nbf and iat. Default
	// DefaultClockSkew, at most MaxClockSkew.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// MaxTokenBytes is the largest token accepted. Default
	// DefaultMaxTokenBytes.
	MaxTokenBytes int `yaml:"max_token_bytes"`
	// CacheSize is how many verified tokens are remembered (by SHA-256,
	// until they expire, and only while the key that verified them is in
	// their issuer's key set). Default DefaultTokenCacheSize.
	CacheSize int `yaml:"cache_size"`
}

// IssuerConfig is one accepted token issuer.
type IssuerConfig struct {
	// Issuer is the exact iss claim. Required, except for the spiffe
	// profile, where JWT-SVIDs without iss are matched by trust domain.
	Issuer string `yaml:"issuer"`
	// Profile maps claims to attributes: oidc (default), kubernetes,
	// spiffe or github-actions.
	Profile string `yaml:"profile"`
	// Audiences: the token's aud must contain one of them. Required.
	Audiences []string `yaml:"audiences"`
	// Algorithms is the allow-list of signature algorithms. Default every
	// asymmetric algorithm (RS*, PS*, ES*, EdDSA); none and HMAC (HS*)
	// are never accepted.
	Algorithms []string `yaml:"algorithms"`
	// JWKSFile is a JSON Web Key Set file, reloaded when it changes.
	JWKSFile string `yaml:"jwks_file"`
	// JWKSURL is an https URL of the JSON Web Key Set.
	JWKSURL string `yaml:"jwks_url"`
	// DiscoveryURL is an https OpenID Connect discovery document
	// (.../.well-known/openid-configuration) naming the jwks_uri; its
	// issuer must equal Issuer. Exactly one of JWKSFile, JWKSURL and
	// DiscoveryURL is required.
	DiscoveryURL string `yaml:"discovery_url"`
	// CAFile holds PEM roots for the HTTPS fetches, instead of the system
	// roots (the Kubernetes API server's CA, for instance).
	CAFile string `yaml:"ca_file"`
	// BearerTokenFile, when set, is sent as a bearer token with the
	// fetches (the Kubernetes API server's /openid/v1/jwks usually needs
	// one). Re-read for every fetch.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// TrustDomain (spiffe profile) requires the SPIFFE ID in sub to be of
	// this trust domain. Required for the spiffe profile.
	TrustDomain string `yaml:"trust_domain"`
	// Claims maps further claims to attributes, claim: attribute. String,
	// number and boolean claims are mapped; others are skipped.
	Claims map[string]string `yaml:"claims"`
	// RefreshInterval is how often a remote JWKS is refetched in the
	// background. Default DefaultJWKSRefreshInterval.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// MinRefetchInterval is the least time between two fetches triggered
	// by an unknown key id, so forged key ids cannot cause a storm.
	// Default DefaultJWKSMinRefetchInterval.
	MinRefetchInterval time.Duration `yaml:"min_refetch_interval"`
	// FetchTimeout limits one fetch. Default DefaultFetchTimeout.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// MaxLifetime, when set, refuses tokens valid for longer: exp minus
	// iat (minus now for a token without iat) above it, by more than
	// clock_skew. Zero (the default): no maximum.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
}

// KubernetesConfig configures the kubernetes factor (TokenReview).
type KubernetesConfig struct {
	// APIServer is the https URL of the Kubernetes API server. Default
	// DefaultKubernetesAPIServer.
	APIServer string `yaml:"api_server"`
	// CAFile holds the API server's PEM CA. Default
	// DefaultKubernetesCAFile.
	CAFile string `yaml:"ca_file"`
	// TokenFile is the gateway's own service-account token, allowed to
	// create tokenreviews; re-read for every review, so rotation works.
	// Default DefaultKubernetesTokenFile.
	TokenFile string `yaml:"token_file"`
	// Audiences are sent with every review, and the review must confirm
	// the token is valid for one of them. Required.
	Audiences []string `yaml:"audiences"`
	// Issuers, when set, limits reviews to JWTs whose iss is one of them.
	// Unset: every token that no jwt issuer claims is reviewed.
	Issuers []string `yaml:"issuers"`
	// CacheTTL is how long an accepted token is reused without a review
	// (never beyond its exp). Default DefaultTokenReviewCacheTTL.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// CacheSize bounds the accepted tokens remembered. Default
	// DefaultTokenCacheSize.
	CacheSize int `yaml:"cache_size"`
	// NegativeCacheTTL is how long a rejected token is answered from
	// memory. Default DefaultTokenReviewNegativeTTL.
	NegativeCacheTTL time.Duration `yaml:"negative_cache_ttl"`
	// NegativeCacheSize bounds the rejected tokens remembered, apart from
	// the accepted ones. Default DefaultTokenReviewNegativeSize.
	NegativeCacheSize int `yaml:"negative_cache_size"`
	// ReviewRate and ReviewBurst are each source's budget of reviews
	// (tokens not in either cache), per second sustained and at once;
	// beyond it a token is refused unreviewed (ErrUnavailable). A source
	// is an IPv4 address or an IPv6 /64. Defaults DefaultTokenReviewRate
	// and DefaultTokenReviewBurst.
	ReviewRate  float64 `yaml:"review_rate"`
	ReviewBurst int     `yaml:"review_burst"`
	// ReviewSources bounds the sources whose budget is tracked. Default
	// DefaultTokenReviewSources.
	ReviewSources int `yaml:"review_sources"`
	// Timeout limits one review. Default DefaultFetchTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// AllowTokensWithoutExp accepts tokens the API server authenticates
	// that carry no exp claim: legacy service-account tokens (Secrets of
	// type kubernetes.io/service-account-token), which never expire. Off
	// by default: mount projected service-account tokens instead.
	AllowTokensWithoutExp bool `yaml:"allow_tokens_without_exp"`
}

// PostureConfig configures the posture feed: a JSON object keyed by
// workload name, whose values are objects of posture facts, e.g.
// {"billing-api": {"patched": true, "scan_age_days": 3}}.
type PostureConfig struct {
	// File is a JSON file, reloaded when it changes. One of File and URL
	// is required.
	File string `yaml:"file"`
	// URL is an http(s) endpoint polled every Interval.
	URL string `yaml:"url"`
	// CAFile holds PEM roots for an https URL, instead of the system roots.
	CAFile string `yaml:"ca_file"`
	// BearerTokenFile, when set, is sent as a bearer token to URL.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// Interval is how often the feed is re-read. Default
	// DefaultPostureInterval.
	Interval time.Duration `yaml:"interval"`
	// Timeout limits one fetch of URL. Default DefaultFetchTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAge, when set, drops the whole feed once its last successful
	// load is older, so conditions on stale posture fail closed.
	MaxAge time.Duration `yaml:"max_age"`
}

// asymmetricAlgorithms are the signature algorithms a token may use.
var asymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// WithDefaults returns c with every unset field set to its default. New
// calls it; it is exported so that `credgate validate` can show the
// effective settings.
func (c Config) WithDefaults() Config {
	setD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setI := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setS := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	c.MTLS.Bundles = slices.Clone(c.MTLS.Bundles)
	setD(&c.MTLS.ReloadInterval, DefaultReloadInterval)
	if c.MTLS.WorkloadAPI != nil {
		w := *c.MTLS.WorkloadAPI
		setD(&w.StartTimeout, DefaultWorkloadAPIStartTimeout)
		c.MTLS.WorkloadAPI = &w
	}
	setD(&c.JWT.ClockSkew, DefaultClockSkew)
	setI(&c.JWT.MaxTokenBytes, DefaultMaxTokenBytes)
	setI(&c.JWT.CacheSize, DefaultTokenCacheSize)
	c.JWT.Issuers = slices.Clone(c.JWT.Issuers)
	for i := range c.JWT.Issuers {
		is := &c.JWT.Issuers[i]
		setS(&is.Profile, ProfileOIDC)
		if len(is.Algorithms) == 0 {
			is.Algorithms = slices.Clone(asymmetricAlgorithms)
		}
		if is.JWKSFile != "" {
			setD(&is.RefreshInterval, DefaultReloadInterval)
		}
		setD(&is.RefreshInterval, DefaultJWKSRefreshInterval)
		setD(&is.MinRefetchInterval, DefaultJWKSMinRefetchInterval)
		setD(&is.FetchTimeout, DefaultFetchTimeout)
	}
	if c.Kubernetes != nil {
		k := *c.Kubernetes
		setS(&k.APIServer, DefaultKubernetesAPIServer)
		setS(&k.CAFile, DefaultKubernetesCAFile)
		setS(&k.TokenFile, DefaultKubernetesTokenFile)
		setD(&k.CacheTTL, DefaultTokenReviewCacheTTL)
		setI(&k.CacheSize, DefaultTokenCacheSize)
		setD(&k.NegativeCacheTTL, DefaultTokenReviewNegativeTTL)
		setI(&k.NegativeCacheSize, DefaultTokenReviewNegativeSize)
		if k.ReviewRate == 0 {
			k.ReviewRate = DefaultTokenReviewRate
		}
		setI(&k.ReviewBurst, DefaultTokenReviewBurst)
		setI(&k.ReviewSources, DefaultTokenReviewSources)
		setD(&k.Timeout, DefaultFetchTimeout)
		c.Kubernetes = &k
	}
	if c.Posture != nil {
		p := *c.Posture
		setD(&p.Interval, DefaultPostureInterval)
		setD(&p.Timeout, DefaultFetchTimeout)
		c.Posture = &p
	}
	return c
}

// ResolvePaths makes the relative file paths in c relative to dir (the
// config file's directory), in place.
func (c *Config) ResolvePaths(dir string) {
	fix := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.MTLS.Bundles {
		fix(&c.MTLS.Bundles[i].File)
	}
	for i := range c.JWT.Issuers {
		is := &c.JWT.Issuers[i]
		fix(&is.JWKSFile)
		fix(&is.CAFile)
		fix(&is.BearerTokenFile)
	}
	if k := c.Kubernetes; k != nil {
		fix(&k.CAFile)
		fix(&k.TokenFile)
	}
	if p := c.Posture; p != nil {
		fix(&p.File)
		fix(&p.CAFile)
		fix(&p.BearerTokenFile)
	}
}

// Validate reports every problem in c, with defaults applied, each naming
// its key under `identity:` and saying what to change. It reads no file.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("identity.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	nonNeg := func(key string, d time.Duration) {
		if d < 0 {
			add(key, "must not be negative")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Verifiers)) {
		switch _, ok := DefaultRegistry.Lookup(name); {
		case slices.Contains(builtinKinds, name):
			add("verifiers."+name, "%q is a built-in factor; configure it under identity.%s", name, name)
		case !ok:
			add("verifiers."+name, "no verifier plugin %q is compiled in (compiled in: %v); build credgate with the plugin's package imported", name, DefaultRegistry.Plugins())
		}
	}
	nonNeg("mtls.reload_interval", c.MTLS.ReloadInterval)
	for i, b := range c.MTLS.Bundles {
		key := fmt.Sprintf("mtls.bundles[%d]", i)
		if b.File == "" {
			add(key+".file", "is required; name a PEM file of CA certificates")
		}
		if b.TrustDomain != "" {
			if _, err := spiffeid.TrustDomainFromString(b.TrustDomain); err != nil {
				add(key+".trust_domain", "%q is not a trust domain name (%v); write it like example.org", b.TrustDomain, err)
			}
		}
	}
	if w := c.MTLS.WorkloadAPI; w != nil {
		if w.Socket != "" {
			if err := workloadapi.ValidateAddress(w.Socket); err != nil {
				add("mtls.workload_api.socket", "%q: %v; write it like unix:///run/spire/agent.sock or tcp://127.0.0.1:8081", w.Socket, err)
			}
		}
		if w.SPIFFEID != "" {
			if _, err := spiffeid.FromString(w.SPIFFEID); err != nil {
				add("mtls.workload_api.spiffe_id", "%q is not a SPIFFE ID (%v); write it like spiffe://example.org/credgate", w.SPIFFEID, err)
			}
		}
		nonNeg("mtls.workload_api.start_timeout", w.StartTimeout)
	}
	for i, td := range c.MTLS.TrustDomains {
		if _, err := spiffeid.TrustDomainFromString(td); err != nil {
			add(fmt.Sprintf("mtls.trust_domains[%d]", i), "%q is not a trust domain name (%v); write it like example.org", td, err)
		}
	}

	if c.JWT.ClockSkew < 0 || c.JWT.ClockSkew > MaxClockSkew {
		add("jwt.clock_skew", "must be between 0 and %s", MaxClockSkew)
	}
	if c.JWT.MaxTokenBytes < 0 {
		add("jwt.max_token_bytes", "must not be negative")
	}
	if c.JWT.CacheSize < 0 {
		add("jwt.cache_size", "must not be negative")
	}
	seen := map[string]int{}
	for i, is := range c.JWT.Issuers {
		key := fmt.Sprintf("jwt.issuers[%d]", i)
		errs = append(errs, is.validate(key)...)
		id := is.Issuer
		if id == "" {
			id = "spiffe://" + is.TrustDomain
		}
		if prev, dup := seen[id]; dup {
			add(key+".issuer", "%q is already configured by jwt.issuers[%d]; merge the two", id, prev)
		}
		seen[id] = i
	}

	if k := c.Kubernetes; k != nil {
		if err := checkURL(k.APIServer, true); err != nil {
			add("kubernetes.api_server", "%v", err)
		}
		if len(k.Audiences) == 0 {
			add("kubernetes.audiences", "is required: list the audience clients request their tokens for, e.g. [credgate], so that tokens meant for other services are refused")
		}
		nonNeg("kubernetes.cache_ttl", k.CacheTTL)
		nonNeg("kubernetes.negative_cache_ttl", k.NegativeCacheTTL)
		for _, n := range []struct {
			key string
			v   int
		}{{"kubernetes.cache_size", k.CacheSize}, {"kubernetes.negative_cache_size", k.NegativeCacheSize}, {"kubernetes.review_burst", k.ReviewBurst}, {"kubernetes.review_sources", k.ReviewSources}} {
			if n.v < 0 {
				add(n.key, "must not be negative (leave it out for the default)")
			}
		}
		if k.ReviewRate < 0 || k.ReviewRate > MaxTokenReviewRate {
			add("kubernetes.review_rate", "must be between 0 (the default, %d) and %d reviews per second", DefaultTokenReviewRate, MaxTokenReviewRate)
		}
		nonNeg("kubernetes.timeout", k.Timeout)
	}
	if p := c.Posture; p != nil {
		switch {
		case p.File == "" && p.URL == "":
			add("posture", "set file or url")
		case p.File != "" && p.URL != "":
			add("posture", "set file or url, not both")
		case p.URL != "":
			if err := checkURL(p.URL, false); err != nil {
				add("posture.url", "%v", err)
			}
		}
		nonNeg("posture.interval", p.Interval)
		nonNeg("posture.timeout", p.Timeout)
		nonNeg("posture.max_age", p.MaxAge)
	}
	return errors.Join(errs...)
}

// kubernetesAttributes are set only from a Kubernetes service-account
// token (the kubernetes profile, TokenReview); Claims of no profile may
// map onto them, since the namespace and service_account selectors
// stand for a verified Kubernetes service account.
var kubernetesAttributes = []string{AttrNamespace, AttrServiceAccount, AttrPod}

// reservedAttributes are set by verifiers; Claims may not map onto them.
var reservedAttributes = []string{AttrIssuer, AttrSub, AttrTokenCertThumbprint, AttrCertThumbprint, AttrSPIFFEID, AttrTrustDomain, AttrPath, AttrSubject}

func (is IssuerConfig) validate(key string) []error {
	var errs []error
	add := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("identity.%s.%s: %s", key, k, fmt.Sprintf(format, args...)))
	}
	prof, ok := profiles[is.Profile]
	if !ok {
		add("profile", "unknown profile %q; use oidc, kubernetes, spiffe or github-actions", is.Profile)
	}
	switch {
	case is.Issuer == "" && is.Profile != ProfileSPIFFE:
		add("issuer", "is required: the exact iss claim of the tokens, e.g. https://token.actions.githubusercontent.com")
	case is.Issuer != "" && strings.ContainsAny(is.Issuer, " \t\n"):
		add("issuer", "%q contains white space", is.Issuer)
	}
	if is.Profile == ProfileSPIFFE {
		if _, err := spiffeid.TrustDomainFromString(is.TrustDomain); err != nil {
			add("trust_domain", "the spiffe profile needs the trust domain of the JWT-SVIDs, like example.org")
		}
	} else if is.TrustDomain != "" {
		add("trust_domain", "applies to the spiffe profile only; remove it")
	}
	if len(is.Audiences) == 0 {
		add("audiences", "is required: list the audience the tokens are minted for, e.g. [credgate], so that tokens meant for other services are refused")
	}
	if is.MaxLifetime < 0 || is.MaxLifetime > 0 && is.MaxLifetime < time.Second {
		add("max_lifetime", "must be 0 (no maximum) or at least 1s, like 1h")
	}
	for _, a := range is.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			add("algorithms", "%q is never accepted: unsigned tokens prove nothing", a)
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			add("algorithms", "%q is never accepted: HMAC keys are shared secrets, and a public key must never be usable as one; use an asymmetric algorithm (%s)", a, strings.Join(asymmetricAlgorithms, ", "))
		case !slices.Contains(asymmetricAlgorithms, a):
			add("algorithms", "unknown algorithm %q; use %s", a, strings.Join(asymmetricAlgorithms, ", "))
		}
	}
	n := 0
	for _, s := range []string{is.JWKSFile, is.JWKSURL, is.DiscoveryURL} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		add("jwks_file", "set exactly one of jwks_file, jwks_url and discovery_url")
	}
	if is.JWKSURL != "" {
		if err := checkURL(is.JWKSURL, true); err != nil {
			add("jwks_url", "%v", err)
		}
	}
	if is.DiscoveryURL != "" {
		if err := checkURL(is.DiscoveryURL, true); err != nil {
			add("discovery_url", "%v", err)
		}
		if is.Issuer == "" {
			add("issuer", "is required with discovery_url: the discovery document must name it")
		}
	}
	for _, claim := range slices.Sorted(maps.Keys(is.Claims)) {
		attr := is.Claims[claim]
		switch {
		case claim == "" || attr == "":
			add("claims", "claim and attribute names must not be empty")
		case slices.Contains(reservedAttributes, attr) || ok && slices.Contains(prof.attrs, attr):
			add("claims", "attribute %q is set by the %s profile itself; map %q to another name", attr, is.Profile, claim)
		case slices.Contains(kubernetesAttributes, attr):
			add("claims", "attribute %q is a Kubernetes service account's, which the workload selectors namespace and service_account read, and only a service-account token sets it (profile kubernetes, or identity.kubernetes): a claim of this issuer mapped onto it would pass for one; map %q to another name and select it under claims:", attr, claim)
		}
	}
	for _, p := range []struct {
		k string
		d time.Duration
	}{{"refresh_interval", is.RefreshInterval}, {"min_refetch_interval", is.MinRefetchInterval}, {"fetch_timeout", is.FetchTimeout}} {
		if p.d < 0 {
			add(p.k, "must not be negative")
		}
	}
	return errs
}

// checkURL accepts an absolute https URL, and an http URL to a loopback
// host (httpclient.CheckURL) unless httpsOnly.
func checkURL(s string, httpsOnly bool) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	if httpsOnly && u.Scheme != "https" {
		return fmt.Errorf("%q must use https: keys and identities fetched over plain http could be forged on the way", s)
	}
	if u.User != nil {
		return fmt.Errorf("the URL must not contain credentials; use bearer_token_file")
	}
	// Where plain http is allowed at all, it is allowed to loopback only.
	return httpclient.CheckURL(s)
}

// Option adjusts runtime dependencies of New and NewPostureFeed (as
// opposed to settings, which are in Config).
type Option func(*options)

type options struct {
	log   *slog.Logger
	now   func() time.Time
	local LocalIssuer
	// changed is called when evidence verified before may no longer
	// verify (WithOnChange); never nil after buildOptions.
	changed func()
}

// WithLogger sets the logger for reload and refresh results; default
// slog.Default(). Messages name files, URLs and issuers, never tokens.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithOnChange sets fn to be called after a source of evidence changed
// in a way that may withdraw what it vouched for: an issuer's key set lost
// a key (a JWKS file or URL refreshed), a trust bundle of
// identity.mtls.bundles was replaced, or the Workload API sent new
// bundles. A token or certificate verified before the change may no
// longer verify; the caller re-verifies what it still holds open on that
// evidence (the gateway: its long-lived connections and requests in
// flight). fn is called from the refreshers' goroutines, also during New
// as the files are first loaded; it must return quickly (start the work
// elsewhere).
func WithOnChange(fn func()) Option { return func(o *options) { o.changed = fn } }

// withClock replaces time.Now, for tests.
func withClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

func buildOptions(opts []Option) options {
	o := options{log: slog.Default(), now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if o.changed == nil {
		o.changed = func() {}
	}
	return o
}

// New builds the verifiers and posture feed that cfg configures, loads
// their files (a missing or invalid file is an error) and starts their
// background refreshers, which Close stops. Remote key sets and feeds
// that cannot be fetched yet do not fail New: they are retried, and
// tokens that need them fail with ErrUnavailable meanwhile. ctx bounds the
// initial fetches only.
//
// The gateway calls New once at start-up and Resolve for each connection
// or request.
func New(ctx context.Context, cfg Config, opts ...Option) (*Resolver, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("identity: config: %w", err)
	}
	o := buildOptions(opts)
	var closers []func() error
	fail := func(err error) (*Resolver, error) {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
		return nil, err
	}
	mv, err := newMTLSVerifier(ctx, cfg.MTLS, o)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, mv.Close)
	vs := []Verifier{mv}
	var jv *jwtVerifier
	if len(cfg.JWT.Issuers) > 0 || o.local != nil {
		jv, err = newJWTVerifier(ctx, cfg.JWT, o)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, jv.Close)
		vs = append(vs, jv)
	}
	var kv *tokenReviewVerifier
	if cfg.Kubernetes != nil {
		kv, err = newTokenReviewVerifier(*cfg.Kubernetes, jv, cfg.JWT.ClockSkew, o)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, kv.Close)
		vs = append(vs, kv)
	}
	names := slices.Sorted(maps.Keys(cfg.Verifiers))
	for _, name := range names {
		node := cfg.Verifiers[name]
		v, err := DefaultRegistry.Load(ctx, name, &node)
		var te *yaml.TypeError
		if errors.As(err, &te) {
			err = errors.New(strings.Join(te.Errors, "; "))
		}
		if err != nil {
			return fail(fmt.Errorf("identity.verifiers.%s (line %d, column %d): %w", name, node.Line, node.Column, err))
		}
		closers = append(closers, func() error { return closeVerifier(v) })
		vs = append(vs, bounded(v))
	}
	r := NewResolver(vs...)
	r.mtls = mv
	r.kube = kv
	if cfg.Posture != nil {
		pf, err := NewPostureFeed(ctx, *cfg.Posture, opts...)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, pf.Close)
		r.posture = pf
	}
	r.closers = closers
	return r, nil
}

var _ io.Closer = (*Resolver)(nil)
