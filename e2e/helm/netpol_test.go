package helm_test

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"gopkg.in/yaml.v3"
)

// endpointsValues name every endpoint the gateway dials besides upstreams,
// on ports other than the upstream ones: the API server, JWKS and OIDC
// discovery of two issuers, the posture feed, Redis, both OTLP receivers
// and Vault's transit engine.
const endpointsValues = `
identity:
  apiServer: https://10.96.0.1:8444
  jwt:
    kubernetes:
      enabled: true
    issuers:
      - issuer: https://dex.auth.svc:5556
        audiences: [credgate]
        jwksURL: https://dex.auth.svc:5556/keys
      - issuer: https://sso.example.org/realms/platform
        audiences: [credgate]
        discoveryURL: https://sso.example.org:8443/realms/platform/.well-known/openid-configuration
  tokenReview:
    enabled: true
  posture:
    url: https://posture.security.svc:9443/v1/records
redis:
  enabled: true
  address: redis.cache.svc:6390
  encryptionKeys:
    - {id: k1, secretName: redis-keys, secretKey: k1}
config:
  tracing:
    enabled: true
    endpoint: otel.monitoring.svc:4317
  audit:
    otlp:
      endpoint: otel-logs.monitoring.svc:14318
      protocol: http
    checkpoint:
      vaultTransit:
        key: credgate-audit
        address: https://vault.vault.svc:8200
        auth: {role: credgate}
networkPolicy:
  gateway:
    enabled: true
`

// dialedPorts returns the TCP port of every endpoint the rendered gateway
// config dials besides upstreams (which networkPolicy.gateway.egressPorts
// covers), by the config key that names it.
func dialedPorts(t *testing.T, cfg map[string]any) map[string]int {
	t.Helper()
	out := map[string]int{}
	hostPort := func(key, hp string) {
		_, p, err := net.SplitHostPort(hp)
		n, aerr := strconv.Atoi(p)
		if err != nil || aerr != nil {
			t.Fatalf("%s = %q: not host:port", key, hp)
		}
		out[key] = n
	}
	urlPort := func(key string, v any) {
		s, _ := v.(string)
		if s == "" {
			return
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("%s = %q: %v", key, s, err)
		}
		if p := u.Port(); p != "" {
			hostPort(key, u.Host)
			return
		}
		out[key] = map[string]int{"https": 443, "http": 80}[u.Scheme]
	}
	addrs, _ := get(cfg, "cache.redis.addrs").([]any)
	for i, a := range addrs {
		hostPort(fmt.Sprintf("cache.redis.addrs.%d", i), fmt.Sprint(a))
	}
	for _, k := range []string{"tracing.endpoint", "audit.otlp.endpoint"} {
		if hp, ok := get(cfg, k).(string); ok {
			hostPort(k, hp)
		}
	}
	urlPort("audit.checkpoint.signer.vault_transit.server.address", get(cfg, "audit.checkpoint.signer.vault_transit.server.address"))
	urlPort("identity.kubernetes.api_server", get(cfg, "identity.kubernetes.api_server"))
	urlPort("identity.posture.url", get(cfg, "identity.posture.url"))
	issuers, _ := get(cfg, "identity.jwt.issuers").([]any)
	for i, is := range issuers {
		for _, k := range []string{"jwks_url", "discovery_url"} {
			urlPort(fmt.Sprintf("identity.jwt.issuers.%d.%s", i, k), get(is, k))
		}
	}
	return out
}

// TestNetworkPolicyAllowsEndpoints checks, over every variant with the
// gateway's NetworkPolicy and one that puts every endpoint on a port of
// its own, that the policy lets the gateway reach every endpoint its
// config dials (the API server, JWKS and discovery URLs, the posture
// feed, Redis, OTLP receivers, Vault): a port left out fails the gateway
// at start or on its first token, with nothing in the chart to say why.
func TestNetworkPolicyAllowsEndpoints(t *testing.T) {
	vs := append(variants(), variant{name: "endpoints", values: endpointsValues}, variant{name: "endpoints-on-port-80", values: endpointsOn80Values})
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			objs := parse(t, render(t, v))
			np := find(objs, "NetworkPolicy", fullname)
			if np == nil {
				t.Skip("no gateway NetworkPolicy in this variant")
			}
			var allowed []int
			rules, _ := get(np, "spec.egress").([]any)
			for _, r := range rules {
				ports, _ := get(r, "ports").([]any)
				for _, p := range ports {
					if get(p, "protocol") == "TCP" {
						allowed = append(allowed, num(get(p, "port")))
					}
				}
			}
			var cfg map[string]any
			raw, _ := get(mustFind(t, objs, "ConfigMap", fullname+"-config"), "data.[config.yaml]").(string)
			if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatalf("config.yaml: %v", err)
			}
			for key, port := range dialedPorts(t, cfg) {
				if !slices.Contains(allowed, port) {
					t.Errorf("%s dials port %d, which the gateway's NetworkPolicy does not allow (egress TCP ports %v)", key, port, allowed)
				}
			}
		})
	}
}

// metadataAddrs are the cloud instance metadata services (AWS IMDS over
// IPv4 and IPv6, GCP, Azure, Oracle on 169.254.169.254; Alibaba Cloud) and
// an IPv6 link-local address: what a default-deny egress gateway must
// never reach on its own.
var metadataAddrs = []string{"169.254.169.254", "fd00:ec2::254", "100.100.100.200", "fe80::a9fe:a9fe"}

// endpointsOn80Values put every endpoint the gateway config dials besides
// upstreams and may be on port 80 (plain HTTP): the API server
// (kubernetesAPIPorts), Redis, the OTLP receivers and the posture feed
// (Vault and the API server's URL must be https).
const endpointsOn80Values = `
networkPolicy:
  gateway:
    enabled: true
    kubernetesAPIPorts: [80]
identity:
  tokenReview: {enabled: true}
  posture: {url: "http://posture.platform.svc/v1/records"}
redis:
  enabled: true
  address: redis.cache.svc:80
  encryptionKeys: [{id: k1, secretName: redis-keys, secretKey: k1}]
config:
  tracing: {enabled: true, endpoint: "otel-collector.monitoring.svc:80", insecure: true}
  audit:
    otlp: {endpoint: "otel-collector.monitoring.svc:80", insecure: true}
`

// TestNetworkPolicyRefusesMetadata checks that the gateway's NetworkPolicy,
// in every variant that renders it and one that puts every endpoint on
// port 80, lets the gateway reach no metadata address on port 80, where
// those services listen (plain HTTP): defence in depth under invariant 8,
// for IPv4 and IPv6 alike. Rules for endpoints that may be in the cluster,
// the API server among them, name only ports, since selectors and
// ipBlocks do not reach in-cluster peers alike on every CNI; one on port
// 80 is limited to the cluster's pods and the upstream CIDRs
// (credgate.portEgress). Before, a posture feed, OTLP receiver, Redis or
// API server port on 80 opened port 80 to every address, the metadata
// services' included.
func TestNetworkPolicyRefusesMetadata(t *testing.T) {
	for _, v := range append(variants(), variant{name: "endpoints-on-port-80", values: endpointsOn80Values}) {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			np := find(parse(t, render(t, v)), "NetworkPolicy", fullname)
			if np == nil {
				t.Skip("no gateway NetworkPolicy in this variant")
			}
			rules, _ := get(np, "spec.egress").([]any)
			for _, a := range append([]string{"169.254.170.2"}, metadataAddrs...) {
				addr := netip.MustParseAddr(a)
				for i, r := range rules {
					if egressAllows(t, r, addr, 80) {
						t.Errorf("egress rule %d lets the gateway reach %s port 80", i, addr)
					}
				}
			}
		})
	}
}

// egressAllows reports whether a NetworkPolicy egress rule admits port on
// addr, an address outside the cluster, by any protocol (npPeerAdmits).
func egressAllows(t *testing.T, rule any, addr netip.Addr, port int) bool {
	t.Helper()
	return npPeerAdmits(rule, addr, port, "")
}
