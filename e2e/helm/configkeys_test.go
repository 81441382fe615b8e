package helm_test

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/gateway"
)

// configKeyPaths appends to out every key path of the gateway config type
// t: yaml keys joined by dots, "[]" for the elements of a list, and
// "{}" for the values of a map keyed by the user (resolve, headers).
// A type that decodes itself (a Duration) or a scalar is a leaf.
func configKeyPaths(t reflect.Type, prefix string, depth int, out *[]string) {
	unmarshaler := reflect.TypeFor[yaml.Unmarshaler]()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if depth > 10 || t == reflect.TypeFor[yaml.Node]() || t.Implements(unmarshaler) || reflect.PointerTo(t).Implements(unmarshaler) {
		*out = append(*out, prefix)
		return
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if e := t.Elem(); e.Kind() == reflect.Struct || e.Kind() == reflect.Pointer && e.Elem().Kind() == reflect.Struct {
			configKeyPaths(e, prefix+"[]", depth+1, out)
			return
		}
		*out = append(*out, prefix)
	case reflect.Map:
		if e := t.Elem(); e != reflect.TypeFor[yaml.Node]() && e.Kind() == reflect.Struct || e.Kind() == reflect.Pointer && e.Elem().Kind() == reflect.Struct {
			configKeyPaths(e, prefix+".{}", depth+1, out)
			return
		}
		*out = append(*out, prefix)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			switch {
			case tag == "-" || !f.IsExported():
			case tag == "" && strings.Contains(opts, "inline"):
				configKeyPaths(f.Type, prefix, depth+1, out)
			default:
				if tag == "" {
					tag = strings.ToLower(f.Name)
				}
				p := tag
				if prefix != "" {
					p = prefix + "." + tag
				}
				configKeyPaths(f.Type, p, depth+1, out)
			}
		}
	default:
		*out = append(*out, prefix)
	}
}

// renderedKeyPaths adds to set the key paths of a rendered config, in
// configKeyPaths' form: leaves (as the type says) are where it stops.
func renderedKeyPaths(v any, prefix string, leaves map[string]bool, set map[string]bool) {
	if leaves[prefix] {
		set[prefix] = true
		return
	}
	switch v := v.(type) {
	case map[string]any:
		set[prefix] = true
		for k, c := range v {
			p := k
			switch {
			case leaves[prefix+".{}"] || hasPrefixPath(leaves, prefix+".{}."):
				p = prefix + ".{}"
			case prefix != "":
				p = prefix + "." + k
			}
			renderedKeyPaths(c, p, leaves, set)
		}
	case []any:
		for _, c := range v {
			renderedKeyPaths(c, prefix+"[]", leaves, set)
		}
	default:
		set[prefix] = true
	}
}

func hasPrefixPath(leaves map[string]bool, prefix string) bool {
	for l := range leaves {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// notFromChart lists the gateway config keys the chart deliberately does
// not write, each with the reason; every other key of gateway.Config must
// be written by some values (TestChartSetsEveryConfigKey).
var notFromChart = map[string]string{
	// Secrets reach the pod only as files or environment variables from
	// Kubernetes Secrets, never in the ConfigMap; the chart picks one form.
	"admin.token_env": "the token Secret is mounted as a file (admin.token_file), re-read at every request, so it rotates without a restart",
	// Every other secret is a file of a Secret volume: an environment
	// variable is readable in /proc/PID/environ, inherited by child
	// processes and copied into crash reports (TestSecretsAreFiles).
	"cache.redis.password_env":          "the password Secret is mounted as a file (password_file)",
	"cache.redis.encryption_keys[].env": "each encryption key Secret is mounted as a file (file)",
	"audit.otlp.headers.{}.value":       "a header value in the config would put a secret into the ConfigMap; headers are files of Secrets",
	"audit.otlp.headers.{}.env":         "headers are files of Secrets (file)",
	"tracing.headers.{}.value":          "a header value in the config would put a secret into the ConfigMap; headers are files of Secrets",
	"tracing.headers.{}.env":            "headers are files of Secrets (file)",
	// Not exposed by the chart (yet): they need volumes of their own.
	"cache.redis.master_name": "the chart connects to one standalone Redis (redis.address); Sentinel and Cluster need a list of addresses the chart does not take",
	"cache.redis.tls.ca":      "Redis TLS is verified against the system roots; a private CA would need a ConfigMap mount the chart does not make",
	"cache.redis.tls.cert":    "no client certificate towards Redis: it would need a Secret mount the chart does not make",
	"cache.redis.tls.key":     "no client certificate towards Redis: it would need a Secret mount the chart does not make",
	// Only in custom builds.
	"identity.verifiers": "identity verifier plugins exist only in custom builds (docs/plugins.md); the chart's image has none",
}

// everyKeyVariant sets, beyond variants(), the values whose keys no
// variant writes: issuers' optional keys and a posture endpoint. It is
// rendered only here (credgate validate would need its files).
var everyKeyVariant = variant{name: "every-config-key", values: `
config:
  limits:
    maxConnections: 5000000
    maxConnectionsPerSource: 0
  proxyProtocol:
    listen: {trusted: [10.0.128.0/24], required: true}
    tlsListen: {trusted: ["fd00::/64"]}
tls:
  enabled: true
  existingSecret: listener-tls
admin:
  tls:
    enabled: true
    existingSecret: admin-tls
redis:
  enabled: true
  address: redis.cache.svc:6379
  tls: true
  tlsServerName: redis.internal
  encryptionKeys: [{id: k1, secretName: redis-keys, secretKey: k1}]
identity:
  tokenReview:
    enabled: true
    allowTokensWithoutExp: true
  jwt:
    issuers:
      - issuer: https://token.actions.githubusercontent.com
        audiences: [https://github.com/example]
        discoveryURL: https://token.actions.githubusercontent.com/.well-known/openid-configuration
        algorithms: [RS256]
        claims: {repository_owner: example}
        refreshInterval: 30m
        minRefetchInterval: 1m
        fetchTimeout: 5s
        maxLifetime: 1h
  posture:
    url: https://posture.example.org/v1/records
    caFile: /run/posture/ca.pem
    bearerTokenFile: /run/posture/token
`}

// TestChartSetsEveryConfigKey is the class test of the chart against the
// gateway config: every key of gateway.Config (walked from its yaml tags,
// so a new key counts) is written into the rendered config.yaml by some
// values of the chart (the union over every variant the chart tests
// render), unless notFromChart below says why the chart leaves it out.
func TestChartSetsEveryConfigKey(t *testing.T) {
	var paths []string
	configKeyPaths(reflect.TypeFor[gateway.Config](), "", 0, &paths)
	leaves := map[string]bool{}
	for _, p := range paths {
		leaves[p] = true
	}
	rendered := map[string]bool{}
	for _, v := range append(variants(), everyKeyVariant) {
		cfg := gatewayConfig(t, parse(t, render(t, v)))
		renderedKeyPaths(cfg, "", leaves, rendered)
	}
	var missing []string
	for _, p := range paths {
		if _, deliberate := notFromChart[p]; !rendered[p] && !deliberate {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	for _, p := range missing {
		t.Errorf("gateway config key %s: no chart values write it; add a value for it (values.yaml, values.schema.json, templates/_helpers.tpl, README.md), or add it to notFromChart with the reason", p)
	}
	// The allow-list holds real keys that the chart indeed leaves out.
	for p := range notFromChart {
		if !slices.Contains(paths, p) {
			t.Errorf("notFromChart names %s, which is not a key of the gateway config", p)
		}
		if rendered[p] {
			t.Errorf("notFromChart names %s, but the chart writes it", p)
		}
	}
	if len(paths) < 100 {
		t.Errorf("only %d config keys found; the walk over gateway.Config is broken", len(paths))
	}
}
