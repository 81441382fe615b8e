package helm_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// TestIdentityConfig checks the identity: block the chart writes into the
// gateway config for each identity value, and that the real gateway
// accepts every one of them (credgate validate).
func TestIdentityConfig(t *testing.T) {
	tests := []struct {
		name   string
		values string
		want   string // YAML of the config's identity key; "~" when absent
	}{
		{"none", ``, `~`},
		{"cluster service-account tokens", `
identity:
  jwt:
    kubernetes: {enabled: true}
`, `
jwt:
  clock_skew: 30s
  max_token_bytes: 16384
  cache_size: 10000
  issuers:
    - issuer: https://kubernetes.default.svc.cluster.local
      profile: kubernetes
      audiences: [credgate]
      jwks_url: https://kubernetes.default.svc/openid/v1/jwks
      ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
      bearer_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token`},
		{"discovery on another API server address", `
identity:
  apiServer: https://10.0.0.1:6443/
  jwt:
    kubernetes: {enabled: true, discovery: true, issuer: https://oidc.example.org/cluster-7, audiences: [credgate, egress]}
    clockSkew: 1m
`, `
jwt:
  clock_skew: 1m
  max_token_bytes: 16384
  cache_size: 10000
  issuers:
    - issuer: https://oidc.example.org/cluster-7
      profile: kubernetes
      audiences: [credgate, egress]
      discovery_url: https://10.0.0.1:6443/.well-known/openid-configuration
      ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
      bearer_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token`},
		{"other issuers in camelCase", `
identity:
  jwt:
    issuers:
      - issuer: https://token.actions.githubusercontent.com
        profile: github-actions
        audiences: [https://github.com/example]
        discoveryURL: https://token.actions.githubusercontent.com/.well-known/openid-configuration
        algorithms: [RS256]
        refreshInterval: 30m
        minRefetchInterval: 1m
        fetchTimeout: 5s
      - issuer: https://idp.example.org
        audiences: [credgate]
        jwksURL: https://idp.example.org/keys
        caFile: /run/idp/ca.pem
        bearerTokenFile: /run/idp/token
        claims: {team: team}
      - profile: spiffe
        trustDomain: prod.example.org
        audiences: [credgate]
        jwksFile: /run/spire/bundle.jwks
extraVolumes:
  - {name: spire-jwt, configMap: {name: spire-jwt-bundle}}
extraVolumeMounts:
  - {name: spire-jwt, mountPath: /run/spire, readOnly: true}
`, `
jwt:
  clock_skew: 30s
  max_token_bytes: 16384
  cache_size: 10000
  issuers:
    - issuer: https://token.actions.githubusercontent.com
      profile: github-actions
      audiences: [https://github.com/example]
      discovery_url: https://token.actions.githubusercontent.com/.well-known/openid-configuration
      algorithms: [RS256]
      refresh_interval: 30m
      min_refetch_interval: 1m
      fetch_timeout: 5s
    - issuer: https://idp.example.org
      audiences: [credgate]
      jwks_url: https://idp.example.org/keys
      ca_file: /run/idp/ca.pem
      bearer_token_file: /run/idp/token
      claims: {team: team}
    - profile: spiffe
      trust_domain: prod.example.org
      audiences: [credgate]
      jwks_file: /run/spire/bundle.jwks`},
		{"token review", `
identity:
  tokenReview:
    enabled: true
    audiences: [credgate]
    issuers: [https://kubernetes.default.svc.cluster.local]
    cacheTTL: 30s
    timeout: 3s
    cacheSize: 5000
    negativeCacheTTL: 10s
    negativeCacheSize: 2000
    reviewRate: 0.5
    reviewBurst: 4
    reviewSources: 3000
    allowTokensWithoutExp: true
`, `
kubernetes:
  api_server: https://kubernetes.default.svc
  ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
  token_file: /var/run/secrets/kubernetes.io/serviceaccount/token
  audiences: [credgate]
  issuers: [https://kubernetes.default.svc.cluster.local]
  cache_ttl: 30s
  cache_size: 5000
  negative_cache_ttl: 10s
  negative_cache_size: 2000
  review_rate: 0.5
  review_burst: 4
  review_sources: 3000
  timeout: 3s
  allow_tokens_without_exp: true`},
		{"posture endpoint", `
identity:
  posture:
    url: https://posture.internal/v1/workloads
    caFile: /run/posture/ca.pem
    bearerTokenFile: /run/posture/token
    interval: 1m
    maxAge: 10m
`, `
posture:
  url: https://posture.internal/v1/workloads
  ca_file: /run/posture/ca.pem
  bearer_token_file: /run/posture/token
  interval: 1m
  timeout: 10s
  max_age: 10m`},
		{"listener-verified certificates of one trust domain", `
tls: {enabled: true, existingSecret: gw-tls, clientCAConfigMap: clients-ca}
identity:
  mtls: {trustDomains: [prod.example.org], requireSPIFFE: true}
`, `
mtls:
  trust_domains: [prod.example.org]
  require_spiffe: true
  reload_interval: 10s`},
		{"trust bundles", `
tls: {enabled: true, existingSecret: gw-tls}
identity:
  mtls:
    bundles:
      - {configMap: spire-bundle, key: bundle.crt, trustDomain: prod.example.org}
      - {configMap: corp-ca, key: ca.pem}
      - {file: /run/partner/ca.pem, trustDomain: partner.example.com}
    reloadInterval: 30s
extraVolumes:
  - {name: partner-ca, configMap: {name: partner-ca}}
extraVolumeMounts:
  - {name: partner-ca, mountPath: /run/partner, readOnly: true}
`, `
mtls:
  bundles:
    - {file: identity/bundles/0/bundle.crt, trust_domain: prod.example.org}
    - {file: identity/bundles/1/ca.pem}
    - {file: /run/partner/ca.pem, trust_domain: partner.example.com}
  require_spiffe: false
  reload_interval: 30s`},
		{"SPIRE agent with the SVID listener", `
tls: {enabled: true}
spire:
  enabled: true
  spiffeID: spiffe://prod.example.org/ns/egress/sa/credgate
identity:
  mtls: {requireSPIFFE: true}
`, `
mtls:
  workload_api:
    socket: unix:///spiffe-workload-api/spire-agent.sock
    spiffe_id: spiffe://prod.example.org/ns/egress/sa/credgate
    start_timeout: 30s
  require_spiffe: true
  reload_interval: 10s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var want any
			if err := yaml.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatalf("bad want: %v", err)
			}
			objs := parse(t, run(t, helmBin, templateArgs(valuesArgs(t, variant{name: "identity-config", values: tt.values})...)...))
			if diff := cmp.Diff(want, gatewayConfig(t, objs)["identity"]); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
			validateRendered(t, objs)
		})
	}
}
