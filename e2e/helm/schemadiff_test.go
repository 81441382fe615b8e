package helm_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSchemaAgreesWithGateway is a differential test of the chart's value
// checks (values.schema.json and the templates' guards) against the
// gateway's own config validation: for each value set, `helm template`
// refuses it exactly when `credgate validate` refuses the config the
// chart would render from it (laid out in the pod's files, as
// TestGatewayAcceptsRenderedConfig does). A value the chart accepts and
// the gateway refuses installs a Deployment whose pods crash-loop at
// start; one the chart refuses and the gateway would take is a setting
// users cannot have. The table walks the boundaries of the gateway's
// range checks, each with a value just inside.
func TestSchemaAgreesWithGateway(t *testing.T) {
	redis := []string{"--set", "redis.enabled=true", "--set", "redis.address=redis.cache.svc:6379",
		"--set", "redis.encryptionKeys[0].id=k1", "--set", "redis.encryptionKeys[0].secretName=redis-keys", "--set", "redis.encryptionKeys[0].secretKey=k1"}
	runTokens := []string{"--set", "config.runTokens.enabled=true", "--set", "config.runTokens.workloads[0]=agent",
		"--set", "admin.tokenSecret.name=credgate-admin", "--set", "config.runTokens.keySecret.name=credgate-run-tokens",
		"--set", "config.runTokens.keySecret.key=signing.pem"}
	checkpoint := []string{"--set", "config.audit.checkpoint.keySecret.name=credgate-audit-keys", "--set", "config.audit.checkpoint.keySecret.key=checkpoint.pem"}
	tracing := []string{"--set", "config.tracing.enabled=true", "--set", "config.tracing.endpoint=otel.monitoring.svc:4317"}
	auditFile := []string{"--set", "config.auditOutput=/var/log/credgate/audit.log",
		"--set", "extraVolumes[0].name=audit", "--set", "extraVolumes[0].emptyDir.sizeLimit=1Gi",
		"--set", "extraVolumeMounts[0].name=audit", "--set", "extraVolumeMounts[0].mountPath=/var/log/credgate"}
	with := func(base []string, more ...string) []string { return append(append([]string(nil), base...), more...) }
	set := func(kv ...string) []string {
		var out []string
		for _, s := range kv {
			out = append(out, "--set", s)
		}
		return out
	}
	tests := []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		// proxy_protocol: CIDRs of the load balancers only.
		{"proxy protocol", set("config.proxyProtocol.listen.trusted[0]=10.0.128.0/24", "config.proxyProtocol.listen.required=true")},
		{"proxy protocol bare address", set("config.proxyProtocol.listen.trusted[0]=10.0.128.1")},
		{"proxy protocol every peer", set("config.proxyProtocol.listen.trusted[0]=0.0.0.0/0")},
		{"proxy protocol every v6 peer", set("config.proxyProtocol.listen.trusted[0]=::/0")},
		{"proxy protocol required alone", set("config.proxyProtocol.listen.required=true")},
		{"proxy protocol tls without tls", set("config.proxyProtocol.tlsListen.trusted[0]=10.0.128.0/24")},
		{"proxy protocol tls", set("tls.enabled=true", "tls.existingSecret=gw-tls", "config.proxyProtocol.tlsListen.trusted[0]=fd00::/64")},
		// ca.leaf_ttl: 1m to 397 days.
		{"leaf TTL 1m", set("config.ca.leafTTL=1m")},
		{"leaf TTL 59s", set("config.ca.leafTTL=59s")},
		{"leaf TTL 397 days", set("config.ca.leafTTL=9528h")},
		{"leaf TTL 398 days", set("config.ca.leafTTL=9552h")},
		{"negative leaf cache", set("config.ca.leafCacheSize=-1")},
		{"leaf cache 0", set("config.ca.leafCacheSize=0")},
		// upstream.max_response_header_bytes: 1 KiB to 16 MiB.
		{"response header 1 KiB", set("config.upstream.maxResponseHeaderBytes=1024")},
		{"response header 1023", set("config.upstream.maxResponseHeaderBytes=1023")},
		{"response header 16 MiB", set("config.upstream.maxResponseHeaderBytes=16777216")},
		{"response header over 16 MiB", set("config.upstream.maxResponseHeaderBytes=16777217")},
		{"negative idle conns", set("config.upstream.maxIdleConnsPerHost=-1")},
		{"unknown http2", set("config.upstream.http2=sometimes")},
		// Durations the gateway holds to at least 100ms.
		{"response idle 100ms", set("config.upstream.responseIdleTimeout=100ms")},
		{"response idle 50ms", set("config.upstream.responseIdleTimeout=50ms")},
		{"body idle 50ms", set("config.limits.bodyIdleTimeout=50ms")},
		{"write idle 50ms", set("config.limits.writeIdleTimeout=50ms")},
		{"identity grace 50ms", set("config.limits.inFlightIdentityGrace=50ms")},
		{"long-lived idle 50ms", set("config.limits.longLived.idleTimeout=50ms")},
		{"long-lived lifetime 50ms", set("config.limits.longLived.maxLifetime=50ms", "config.limits.longLived.idleTimeout=0s")},
		{"long-lived idle above lifetime", set("config.limits.longLived.idleTimeout=48h")},
		{"long-lived idle at lifetime", set("config.limits.longLived.idleTimeout=24h")},
		// limits: counts that must not be negative.
		{"negative header bytes", set("config.limits.maxHeaderBytes=-1")},
		{"negative max connections", set("config.limits.maxConnections=-1")},
		{"max connections off", set("config.limits.maxConnections=0")},
		{"negative per-source connections", set("config.limits.maxConnectionsPerSource=-1")},
		{"negative body rate", set("config.limits.bodyMinRate=-1")},
		// cache: max_ttl at least 1s, default_ttl within it.
		{"max TTL 1s", set("config.cache.maxTTL=1s", "config.cache.defaultTTL=1s")},
		{"max TTL 500ms", set("config.cache.maxTTL=500ms", "config.cache.defaultTTL=100ms")},
		{"default TTL above max TTL", set("config.cache.defaultTTL=48h")},
		{"default TTL at max TTL", set("config.cache.defaultTTL=24h")},
		// log.level.
		{"log level WARN", set("config.logLevel=WARN")},
		{"log level trace", set("config.logLevel=trace")},
		// audit.
		{"audit buffer 64 KiB", set("config.audit.bufferBytes=65536")},
		{"audit buffer below 64 KiB", set("config.audit.bufferBytes=65535")},
		{"negative checkpoint lines", with(checkpoint, "--set", "config.audit.checkpoint.lines=-1")},
		{"checkpoint lines 1", with(checkpoint, "--set", "config.audit.checkpoint.lines=1")},
		{"negative rotation size", with(auditFile, "--set", "config.audit.rotate.maxBytes=-1")},
		{"unknown stall policy", set("config.audit.onStall=retry")},
		{"replica with a slash", set("config.audit.replica=gw/0")},
		{"replica with a dot", set("config.audit.replica=gw.0")},
		// tracing.
		{"sampling ratio 0", with(tracing, "--set", "config.tracing.samplingRatio=0")},
		{"negative sampling ratio", with(tracing, "--set", "config.tracing.samplingRatio=-0.1")},
		{"unknown client sampling", with(tracing, "--set", "config.tracing.clientSampling=always")},
		// run_tokens.
		{"run token TTL 1m", with(runTokens, "--set", "config.runTokens.ttl=1m")},
		{"run token TTL 30s", with(runTokens, "--set", "config.runTokens.ttl=30s")},
		{"run token max TTL below TTL", with(runTokens, "--set", "config.runTokens.maxTTL=5m")},
		{"run token rotation 30s", with(runTokens, "--set", "config.runTokens.rotateInterval=30s")},
		// cache.redis.
		{"redis", redis},
		{"redis namespace with a space", with(redis, "--set", "redis.namespace=prod eu")},
		{"redis namespace of 65", with(redis, "--set", "redis.namespace="+strings.Repeat("n", 65))},
		{"negative redis db", with(redis, "--set", "redis.db=-1")},
		{"redis address without port", with(redis, "--set", "redis.address=redis.cache.svc")},
		{"redis key id of 65", with(redis, "--set", "redis.encryptionKeys[0].id="+strings.Repeat("k", 65))},
		{"redis key ids twice", with(redis, "--set", "redis.encryptionKeys[1].id=k1", "--set", "redis.encryptionKeys[1].secretName=redis-keys", "--set", "redis.encryptionKeys[1].secretKey=k2")},
		// resolve.
		{"resolve to an address", set(`config.resolve.api\.partner\.test:443=10.20.0.5:8443`)},
		{"resolve to a name", set(`config.resolve.api\.partner\.test:443=partner.internal:8443`)},
		// Intervals and limits with no lower bound but zero in the gateway.
		{"session ticket rotation 1s", set("config.sessionTickets.rotation=1s")},
		{"CA reload 1ms", set("config.ca.reloadInterval=1ms")},
		{"refresh ahead 1ms", set("config.cache.refreshAhead=1ms")},
		{"error backoff 1ms", set("config.cache.errorBackoff=1ms")},
		{"fetch timeout 1ms", set("config.cache.fetchTimeout=1ms")},
		{"dial timeout 1ms", set("config.upstream.dialTimeout=1ms")},
		{"read header timeout 1ms", set("config.limits.readHeaderTimeout=1ms")},
		{"audit stall timeout 1ms", set("config.audit.stallTimeout=1ms")},
		{"checkpoint every 1ms", with(checkpoint, "--set", "config.audit.checkpoint.every=1ms")},
		{"admin read timeout 1ms", set("admin.limits.readTimeout=1ms")},
		{"admin max connections 1", set("admin.limits.maxConnections=1")},
		{"admin header bytes 1", set("admin.limits.maxHeaderBytes=1")},
		{"redis timeout 1ms", with(redis, "--set", "redis.timeout=1ms")},
		{"redis lock TTL 1ms", with(redis, "--set", "redis.lockTTL=1ms")},
		{"redis resync 1ms", with(redis, "--set", "admin.resyncInterval=1ms")},
		{"TLS reload 1ms", set("tls.enabled=true", "tls.existingSecret=gw-tls", "tls.reloadInterval=1ms")},
		{"token max bytes 1", set("identity.jwt.kubernetes.enabled=true", "identity.jwt.maxTokenBytes=1")},
		{"token cache 0", set("identity.jwt.kubernetes.enabled=true", "identity.jwt.cacheSize=0")},
		{"review rate 0", set("identity.tokenReview.enabled=true", "identity.tokenReview.reviewRate=0")},
		{"review burst 0", set("identity.tokenReview.enabled=true", "identity.tokenReview.reviewBurst=0")},
		{"review cache TTL 1ms", set("identity.tokenReview.enabled=true", "identity.tokenReview.cacheTTL=1ms")},
		{"review timeout 1ms", set("identity.tokenReview.enabled=true", "identity.tokenReview.timeout=1ms")},
		{"review rate 10000", set("identity.tokenReview.enabled=true", "identity.tokenReview.reviewRate=10000")},
		{"review rate 10001", set("identity.tokenReview.enabled=true", "identity.tokenReview.reviewRate=10001")},
		{"review sources 0", set("identity.tokenReview.enabled=true", "identity.tokenReview.reviewSources=0")},
		{"token max bytes 0", set("identity.jwt.kubernetes.enabled=true", "identity.jwt.maxTokenBytes=0")},
		{"admin header bytes 1024", set("admin.limits.maxHeaderBytes=1024")},
		{"admin header bytes 1023", set("admin.limits.maxHeaderBytes=1023")},
		{"admin max connections 0", set("admin.limits.maxConnections=0")},
		{"sampling ratio above 1", with(tracing, "--set", "config.tracing.samplingRatio=1.5")},
		// identity.
		{"clock skew 5m", with(set("identity.jwt.kubernetes.enabled=true"), "--set", "identity.jwt.clockSkew=5m")},
		{"clock skew 6m", with(set("identity.jwt.kubernetes.enabled=true"), "--set", "identity.jwt.clockSkew=6m")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, helmErr := runErr(helmBin, templateArgs(tt.args...)...)
			var gwErr error
			var gwOut []byte
			if helmErr == nil {
				gwOut, gwErr = validateConfigOf(t, parse(t, out))
			}
			switch {
			case helmErr == nil && gwErr != nil:
				t.Errorf("the chart accepts %v, the gateway refuses the config it renders (pods would crash-loop): %v: %s", tt.args, gwErr, gwOut)
			case helmErr != nil && !chartRefusal(helmErr):
				t.Fatalf("helm template %v: %v", tt.args, helmErr)
			}
			if helmErr != nil {
				// The chart refuses: the gateway must refuse the value too.
				// Render it without the chart's checks to ask the gateway.
				if ok, why := gatewayAcceptsUnchecked(t, tt.args); ok {
					t.Errorf("the chart refuses %v, the gateway accepts it (%s):\n%v", tt.args, why, helmErr)
				}
			}
		})
	}
}

// chartRefusal reports whether helm's error is the chart refusing values
// (the schema or a template's fail), not a broken chart.
func chartRefusal(err error) bool {
	s := err.Error()
	return strings.Contains(s, "values don't meet the specifications of the schema") || strings.Contains(s, "execution error at")
}

// validateConfigOf runs `credgate validate` on rendered objects laid out
// as the pod's files.
func validateConfigOf(t *testing.T, objs []object) ([]byte, error) {
	t.Helper()
	p := newPod(t, objs, fixtures(t))
	p.rootConfig("/etc/credgate/config.yaml")
	cmd := exec.Command(credgateBin(t), "validate", "-c", p.path("/etc/credgate/config.yaml"))
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), p.env()...)
	return cmd.CombinedOutput()
}

// gatewayAcceptsUnchecked renders args without values.schema.json
// (--skip-schema-validation) and reports whether the gateway accepts the
// config, with its answer. A value a template guard refuses cannot be
// rendered so; it counts as refused by the gateway only when the guard
// names a gateway check, which the table avoids: it reports false then.
func gatewayAcceptsUnchecked(t *testing.T, args []string) (bool, string) {
	t.Helper()
	out, err := runErr(helmBin, templateArgs(append([]string{"--skip-schema-validation"}, args...)...)...)
	if err != nil {
		return false, "the templates refuse it too"
	}
	gwOut, gwErr := validateConfigOf(t, parse(t, out))
	if gwErr != nil {
		return false, string(gwOut)
	}
	return true, strings.TrimSpace(string(gwOut))
}
