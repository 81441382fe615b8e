package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/headerset"
	"github.com/credgate/credgate/policy"
)

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, text string
		want       string // regexp over the error
	}{
		{"unknown-key", "policy: p.yaml\nca: {cert: c, key: k}\nlisten_addr: x\n", `^c\.yaml:3:1: unknown field "listen_addr"`},
		{"unknown-nested", "policy: p.yaml\nca: {cert: c, key: k}\nupstream:\n  dial_timout: 1s\n", `^c\.yaml:4:3: unknown field "dial_timout"`},
		{"no-policy", "ca: {cert: c, key: k}\n", `policy: is required`},
		{"no-ca", "policy: p.yaml\n", `ca\.cert and ca\.key are required`},
		{"bad-duration", "policy: p.yaml\nca: {cert: c, key: k}\nshutdown_timeout: soon\n", `^c\.yaml:3:19: shutdown_timeout: want a duration`},
		{"bad-listen", "policy: p.yaml\nca: {cert: c, key: k}\nlisten: 3128\n", `^c\.yaml:3:1: listen: "3128" is not host:port`},
		{"tls-without-cert", "policy: p.yaml\nca: {cert: c, key: k}\ntls_listen: :3129\n", `tls_listen needs tls\.cert`},
		{"svid-without-workload-api", "policy: p.yaml\nca: {cert: c, key: k}\ntls_listen: :3129\ntls: {svid: true}\n", `^c\.yaml:4:7: tls\.svid needs identity\.mtls\.workload_api`},
		{"svid-and-cert", "policy: p.yaml\nca: {cert: c, key: k}\ntls_listen: :3129\ntls: {svid: true, cert: c, key: k}\nidentity: {mtls: {workload_api: {socket: \"unix:///s\"}}}\n", `set either svid: true .* or cert and key, not both`},
		{"client-ca-and-workload-api", "policy: p.yaml\nca: {cert: c, key: k}\ntls_listen: :3129\ntls: {cert: c, key: k, client_ca: ca}\nidentity: {mtls: {workload_api: {socket: \"unix:///s\"}}}\n", `tls\.client_ca .* or identity\.mtls\.bundles / identity\.mtls\.workload_api`},
		{"bad-workload-api-socket", "policy: p.yaml\nca: {cert: c, key: k}\nidentity: {mtls: {workload_api: {socket: /run/spire/agent.sock}}}\n", `identity\.mtls\.workload_api\.socket: "/run/spire/agent\.sock"`},
		{"bad-resolve", "policy: p.yaml\nca: {cert: c, key: k}\nresolve:\n  \"a.test:443\": localhost:1\n", `^c\.yaml:4:3: resolve: .* must be an IP address and port`},
		{"resolve-no-port", "policy: p.yaml\nca: {cert: c, key: k}\nresolve:\n  a.test: 127.0.0.1:1\n", `resolve: key "a\.test" is not host:port; write host:port as a CONNECT names it`},
		{"bad-level", "policy: p.yaml\nca: {cert: c, key: k}\nlog: {level: loud}\n", `^c\.yaml:3:7: log\.level: unknown level "loud"`},
		{"syntax", "policy: [\n", `^c\.yaml:\d+:\d+: invalid YAML: `},
		{"not-a-mapping", "- a\n", `^c\.yaml:1:1: the config must be a YAML mapping`},
		{"redis-no-keys", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    addrs: [r:6379]\n", `^c\.yaml:4:3: cache\.redis\.encryption_keys: at least one key is required`},
		{"redis-bad-addr", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    addrs: [redis]\n    encryption_keys: [{id: a, env: K}]\n", `^c\.yaml:5:5: cache\.redis\.addrs: "redis" is not host:port`},
		{"redis-inline-password", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    password: x\n", `^c\.yaml:5:5: unknown field "password"`},
		{"redis-two-passwords", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    addrs: [r:6379]\n    password_file: f\n    password_env: E\n    encryption_keys: [{id: a, env: K}]\n", `password_file or password_env, not both`},
		{"redis-key-both", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    addrs: [r:6379]\n    encryption_keys: [{id: a, env: K, file: f}]\n", `encryption_keys\[0\]: set exactly one of file or env`},
		{"redis-key-dup", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    addrs: [r:6379]\n    encryption_keys: [{id: a, env: K}, {id: a, env: L}]\n", `id "a" appears twice`},
		{"redis-namespace", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    addrs: [r:6379]\n    namespace: \"a b*\"\n    encryption_keys: [{id: a, env: K}]\n", `cache\.redis\.namespace: "a b\*"`},
		{"admin-tls-cert-without-key", "policy: p.yaml\nca: {cert: c, key: k}\nadmin:\n  tls:\n    cert: admin.pem\n", `^c\.yaml:5:5: admin\.tls: cert is set but key is not`},
		{"admin-tls-key-without-cert", "policy: p.yaml\nca: {cert: c, key: k}\nadmin:\n  tls: {key: admin-key.pem}\n", `^c\.yaml:4:9: admin\.tls: key is set but cert is not`},
		{"admin-tls-client-ca-alone", "policy: p.yaml\nca: {cert: c, key: k}\nadmin:\n  tls: {client_ca: ops.pem}\n", `^c\.yaml:4:3: admin\.tls: set cert and key`},
		{"admin-tls-unknown-key", "policy: p.yaml\nca: {cert: c, key: k}\nadmin:\n  tls: {cert: a, key: b, svid: true}\n", `^c\.yaml:4:\d+: unknown field "svid" in admin\.tls; known fields are`},
		// A verifier plugin's settings are the plugin's to check: the
		// gateway's unknown-key check took yaml.Node's Go fields for
		// their schema and refused every setting.
		{"verifier-settings-not-the-gateways", "policy: p.yaml\nca: {cert: c, key: k}\nidentity:\n  verifiers:\n    build-attestation:\n      trust_root: /etc/root.pem\n", `^c\.yaml:\d+:\d+: .*identity\.verifiers\.build-attestation: no verifier plugin "build-attestation" is compiled in`},
		{"redis-keys-without-addrs", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    encryption_keys: [{id: a, env: K}]\n", `cache\.redis: addrs is required`},
		{"redis-tls-ca-not-enabled", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    addrs: [r:6379]\n    encryption_keys: [{id: a, env: K}]\n    tls: {ca: ca.pem}\n", `cache\.redis\.tls: set enabled: true`},
		{"redis-tls-cert-not-enabled", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    addrs: [r:6379]\n    encryption_keys: [{id: a, env: K}]\n    tls: {cert: c.pem, key: k.pem}\n", `cache\.redis\.tls: set enabled: true`},
		{"redis-tls-server-name-not-enabled", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    addrs: [r:6379]\n    encryption_keys: [{id: a, env: K}]\n    tls: {server_name: redis.internal}\n", `cache\.redis\.tls: set enabled: true`},
		{"redis-tls-enabled-false-not-enabled", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    addrs: [r:6379]\n    encryption_keys: [{id: a, env: K}]\n    tls: {enabled: false, server_name: redis.internal}\n", `cache\.redis\.tls: set enabled: true`},
		{"redis-tls-without-addrs", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    tls: {enabled: true}\n", `cache\.redis: addrs is required`},
		{"redis-namespace-without-addrs", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    namespace: prod\n", `cache\.redis: addrs is required`},
		{"redis-username-without-addrs", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    username: credgate\n", `cache\.redis: addrs is required`},
		{"redis-master-name-without-addrs", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    master_name: mymaster\n", `cache\.redis: addrs is required`},
		{"redis-db-without-addrs", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    db: 2\n", `cache\.redis: addrs is required`},
		{"redis-timeout-without-addrs", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    timeout: 1s\n", `cache\.redis: addrs is required`},
		{"redis-password-without-addrs", "policy: p.yaml\nca: {cert: c, key: k}\ncache:\n  redis:\n    password_env: P\n", `cache\.redis: addrs is required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("c.yaml", []byte(tt.text))
			if err == nil {
				t.Fatalf("no error, want %s", tt.want)
			}
			if !regexp.MustCompile(tt.want).MatchString(err.Error()) {
				t.Errorf("error %q does not match %s", err, tt.want)
			}
		})
	}
}

func TestParseConfigDefaultsAndPaths(t *testing.T) {
	cfg, err := ParseConfig("/etc/credgate/credgate.yaml", []byte("policy: policy.yaml\nca: {cert: ca.pem, key: /abs/ca-key.pem}\nresolve: {\"API.Example.COM:443\": \"127.0.0.1:9443\"}\naudit: {output: audit.log}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := []any{cfg.PolicyPath(), cfg.CA.Cert, cfg.CA.Key, cfg.Audit.Output, cfg.Listen, cfg.AdminListen,
		cfg.ShutdownTimeout.D(), cfg.Limits.MaxHeaderBytes, cfg.resolve["api.example.com:443"]}
	want := []any{"/etc/credgate/policy.yaml", "/etc/credgate/ca.pem", "/abs/ca-key.pem", "/etc/credgate/audit.log", ":3128", "127.0.0.1:9090",
		30 * time.Second, 65536, netip.MustParseAddrPort("127.0.0.1:9443")}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestResolveKeysAsDestinations is the class of "a resolve pin the
// config accepts that never applies, or applies by chance": a key is read
// as a CONNECT target is, so every spelling of a destination pins that
// destination (the port with leading zeros, an IPv4-mapped or
// non-canonical IPv6 literal, upper case and a trailing dot); a key no
// destination can have is refused naming the key and the cause, and two
// keys naming one destination are refused, not left to map order. Before,
// the four spellings after the first pinned nothing (the gateway asked
// DNS or dialled the literal instead), the first three bad keys were
// accepted, and of two keys for api.example.com one won by map order
// (or the :0443 one was never used).
func TestResolveKeysAsDestinations(t *testing.T) {
	const head = "policy: p.yaml\nca: {cert: c, key: k}\nresolve:\n"
	for _, tt := range []struct{ key, connect string }{
		{"API.Example.COM.:443", "api.example.com:443"},
		{"api.example.com:0443", "api.example.com:443"},
		{"[::FFFF:127.0.0.1]:443", "127.0.0.1:443"},
		{"[2001:0DB8:0::1]:443", "[2001:db8::1]:443"},
		{"[::ffff:a00:1]:8443", "10.0.0.1:8443"},
	} {
		cfg, err := ParseConfig("c.yaml", []byte(head+fmt.Sprintf("  %q: 127.0.0.1:9443\n", tt.key)))
		if err != nil {
			t.Errorf("%s: %v", tt.key, err)
			continue
		}
		dest, err := parseTarget(tt.connect, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ap, ok := cfg.Pinned(dest.host, dest.port); !ok || ap != netip.MustParseAddrPort("127.0.0.1:9443") {
			t.Errorf("resolve key %q: CONNECT %s is pinned to %v (%v), want 127.0.0.1:9443", tt.key, tt.connect, ap, ok)
		}
		r := &resolver{pins: cfg.resolve}
		if a, err := r.lookup(t.Context(), dest.host, dest.port); err != nil || len(a) != 1 || a[0] != netip.MustParseAddrPort("127.0.0.1:9443") {
			t.Errorf("resolve key %q: the resolver finds %v, %v for %s", tt.key, a, err, tt.connect)
		}
	}
	for _, tt := range []struct{ keys, want string }{
		{"  \"127.1:443\": 127.0.0.1:1\n", `resolve: key "127\.1:443": the host ends in a number`},
		{"  \"bücher.test:443\": 127.0.0.1:1\n", `resolve: key "bücher\.test:443" is not a valid host name`},
		{"  \"[fe80::1%eth0]:443\": 127.0.0.1:1\n", `resolve: key "\[fe80::1%eth0\]:443": zoned addresses are not allowed`},
		{"  \"a.test:0\": 127.0.0.1:1\n", `resolve: key "a\.test:0" has no valid port`},
		{"  \"::1:443\": 127.0.0.1:1\n", `resolve: key "::1:443" is not host:port`},
		{"  \"api.example.com.:443\": 127.0.0.1:1\n  \"API.example.com:443\": 127.0.0.1:2\n",
			`resolve: keys "API\.example\.com:443" and "api\.example\.com\.:443" name the same destination api\.example\.com:443; keep one`},
		{"  \"api.example.com:443\": 127.0.0.1:1\n  \"api.example.com:0443\": 127.0.0.1:2\n",
			`resolve: keys "api\.example\.com:0443" and "api\.example\.com:443" name the same destination`},
	} {
		_, err := ParseConfig("c.yaml", []byte(head+tt.keys))
		if err == nil || !regexp.MustCompile(tt.want).MatchString(err.Error()) {
			t.Errorf("resolve:\n%s: %v, want an error matching %s", tt.keys, err, tt.want)
		}
	}
}

func TestIsRestricted(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "127.9.9.9": true, "10.1.2.3": true, "172.16.0.1": true, "192.168.1.1": true,
		"169.254.169.254": true, "169.254.0.1": true, "100.64.0.1": true, "0.0.0.0": true, "255.255.255.255": true,
		"224.0.0.1": true, "::1": true, "fe80::1": true, "fc00::1": true, "fd00:ec2::254": true, "::": true,
		"::ffff:127.0.0.1": true, "::ffff:10.0.0.1": true, "64:ff9b::a9fe:a9fe": true, "2002:7f00:1::": true,
		"8.8.8.8": false, "93.184.216.34": false, "2606:4700::1111": false, "64:ff9b::808:808": false, "172.32.0.1": false,
	} {
		if got := isRestricted(netip.MustParseAddr(addr)); got != want {
			t.Errorf("isRestricted(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestResolverAllowed(t *testing.T) {
	r := &resolver{pins: map[string]netip.AddrPort{
		"pinned.test:443": netip.MustParseAddrPort("127.0.0.1:9443"),
		"public.test:443": netip.MustParseAddrPort("93.184.216.34:443"),
	}}
	ctx := context.Background()
	if _, err := r.allowed(ctx, "pinned.test", 443, false); !errors.Is(err, errPrivateAddress) {
		t.Errorf("pinned to loopback without allow_private: %v, want errPrivateAddress", err)
	}
	if a, err := r.allowed(ctx, "pinned.test", 443, true); err != nil || a[0].String() != "127.0.0.1:9443" {
		t.Errorf("with allow_private: %v %v", a, err)
	}
	if a, err := r.allowed(ctx, "public.test", 443, false); err != nil || a[0].String() != "93.184.216.34:443" {
		t.Errorf("public: %v %v", a, err)
	}
	if _, err := r.allowed(ctx, "169.254.169.254", 80, false); !errors.Is(err, errPrivateAddress) {
		t.Errorf("metadata literal: %v", err)
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		def     int
		want    target
		wantErr bool
	}{
		{in: "API.Example.com.:443", want: target{host: "api.example.com", port: 443}},
		{in: "[::1]:8443", want: target{host: "::1", port: 8443, ip: true}},
		{in: "[::ffff:127.0.0.1]:443", want: target{host: "127.0.0.1", port: 443, ip: true}},
		{in: "example.com", def: 80, want: target{host: "example.com", port: 80}},
		{in: "example.com", wantErr: true},
		{in: ":443", wantErr: true},
		{in: "example.com:99999", wantErr: true},
		{in: "example.com:0", wantErr: true},
		{in: "exa mple.com:443", wantErr: true},
		{in: "[fe80::1%eth0]:443", wantErr: true},
		{in: "a..b:443", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseTarget(tt.in, tt.def)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("parseTarget(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestCanonicalRequest covers the gateway's use of internal/canonical on
// parsed requests: the path it judges is url.URL's EscapedPath, what
// net/http sends upstream (the class of spellings is tested there).
func TestCanonicalRequest(t *testing.T) {
	for _, tt := range []struct {
		method, target string
		decoded, raw   string // "" decoded: refused
		code           string
	}{
		{"GET", "/v1/charges", "/v1/charges", "/v1/charges", ""},
		{"GET", "", "/", "/", ""},
		{"GET", "/v1/a%20b", "/v1/a b", "/v1/a%20b", ""},
		{"GET", "/v1/%61dmin", "/v1/admin", "/v1/%61dmin", ""},
		{"GET", "/v1/x%2Fy", "/v1/x/y", "/v1/x%2Fy", ""},
		{"GET", "/v1/...", "/v1/...", "/v1/...", ""},
		{"GET", "/v1/..hidden/file", "/v1/..hidden/file", "/v1/..hidden/file", ""},
		{"GET", "/v1/../admin", "", "", codeBadPath},
		{"GET", "/v1/%2e%2e/admin", "", "", codeBadPath},
		{"GET", "/v1%2f..%2fadmin", "", "", codeBadPath},
		{"GET", "/v1/..%2fadmin", "", "", codeBadPath},
		{"GET", "/v1/%00", "", "", codeBadPath},
		{"GET", "//v1/admin", "", "", codeBadPath},
		{"GET", "/v1//admin", "", "", codeBadPath},
		{"GET", "/v1\\admin", "", "", codeBadPath},
		{"GET", "/v1/%5Cadmin", "", "", codeBadPath},
		{"GET", "/v1/..;/admin", "", "", codeBadPath},
		{"GET", "/v1/admin;jsessionid=1", "", "", codeBadPath},
		{"GET", "/v1/%252e%252e/admin", "", "", codeBadPath},
		{"GET", "http://user:pw@api.example.com/v1", "", "", codeBadPath},
		{"get", "/v1/charges", "", "", policy.CodeBadMethod},
		{"Delete", "/v1/charges", "", "", policy.CodeBadMethod},
	} {
		// As http.ReadRequest parses a request target.
		u, err := url.ParseRequestURI(tt.target)
		if tt.target == "" {
			u, err = &url.URL{}, nil
		}
		if err != nil {
			t.Fatalf("parse %q: %v", tt.target, err)
		}
		p, f := canonicalRequest(&http.Request{Method: tt.method, URL: u})
		switch {
		case tt.decoded == "" && f == nil:
			t.Errorf("%s %q: accepted as %+v, want %s", tt.method, tt.target, p, tt.code)
		case tt.decoded == "" && f.Code != tt.code:
			t.Errorf("%s %q: code %q, want %q", tt.method, tt.target, f.Code, tt.code)
		case tt.decoded != "" && f != nil:
			t.Errorf("%s %q: refused %s: %s", tt.method, tt.target, f.Code, f.Reason)
		case tt.decoded != "" && (p.Decoded != tt.decoded || p.Raw != tt.raw):
			t.Errorf("%s %q: decoded %q raw %q, want %q %q", tt.method, tt.target, p.Decoded, p.Raw, tt.decoded, tt.raw)
		}
	}
}

func TestStripConnectionNamed(t *testing.T) {
	for _, tt := range []struct {
		in   http.Header
		want http.Header
	}{
		{http.Header{"Connection": {"Authorization"}, "Authorization": {"client"}, "X-A": {"1"}},
			http.Header{"X-A": {"1"}}},
		{http.Header{"Connection": {"close, x-api-key", " DD-API-KEY "}, "X-Api-Key": {"c"}, "Dd-Api-Key": {"c"}, "X-A": {"1"}},
			http.Header{"X-A": {"1"}}},
		{http.Header{"Connection": {"Upgrade, Authorization"}, "Upgrade": {"websocket"}, "Authorization": {"c"}},
			http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}},
		{http.Header{"Connection": {"keep-alive"}, "X-A": {"1"}}, http.Header{"X-A": {"1"}}},
		{http.Header{"X-A": {"1"}}, http.Header{"X-A": {"1"}}},
	} {
		h := tt.in.Clone()
		stripConnectionNamed(h)
		if diff := cmp.Diff(tt.want, h); diff != "" {
			t.Errorf("stripConnectionNamed(%v) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestMITMIssuer(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, err := mitm.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode: %v %v", st.Mode(), err)
	}
	if _, _, err := mitm.WriteCA(dir); err == nil {
		t.Fatal("WriteCA overwrote an existing CA")
	}
	if _, err := mitm.LoadCA(certPath, filepath.Join(dir, "nope.pem")); err == nil {
		t.Fatal("LoadCA with a missing key succeeded")
	}
	ca, err := mitm.LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	is := mitm.NewIssuer(ca, mitm.IssuerOptions{LeafTTL: time.Hour, CacheSize: 2})
	ctx := context.Background()
	a1, err := is.Certificate(ctx, "", "A.example.com.")
	if err != nil {
		t.Fatal(err)
	}
	if got := a1.Leaf.DNSNames; len(got) != 1 || got[0] != "a.example.com" {
		t.Errorf("DNS names %v", got)
	}
	if err := a1.Leaf.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("leaf not signed by the CA: %v", err)
	}
	if d := a1.Leaf.NotAfter.Sub(a1.Leaf.NotBefore); d > time.Hour+10*time.Minute {
		t.Errorf("leaf lifetime %s, want about 1h", d)
	}
	a2, _ := is.Certificate(ctx, "", "a.example.com")
	if a1 != a2 {
		t.Errorf("second call signed a new certificate instead of using the cache")
	}
	ip, err := is.Certificate(ctx, "", "127.0.0.1")
	if err != nil || len(ip.Leaf.IPAddresses) != 1 || len(ip.Leaf.DNSNames) != 0 {
		t.Errorf("IP leaf: %v %v", ip.Leaf.IPAddresses, err)
	}
	_, _ = is.Certificate(ctx, "", "c.example.com")
	if is.Len() != 2 {
		t.Errorf("cache holds %d, want the bound 2", is.Len())
	}
}

// FuzzRequestParse feeds arbitrary bytes to the proxy as a request: the
// parser must refuse or the gateway must answer with a refusal, never
// panic, and never forward (the policy allows nothing reachable).
func FuzzRequestParse(f *testing.F) {
	for _, s := range []string{
		"GET http://plain.test/v1/x HTTP/1.1\r\nHost: plain.test\r\n\r\n",
		"GET http://plain.test/v1/../admin HTTP/1.1\r\nHost: plain.test\r\n\r\n",
		"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
		"CONNECT :443 HTTP/1.1\r\n\r\n",
		"GET http://[::1]:80/ HTTP/1.1\r\nHost: [::1]\r\n\r\n",
		"POST http://plain.test/ HTTP/1.1\r\nHost: other.test\r\nContent-Length: 3\r\n\r\nabc",
	} {
		f.Add([]byte(s))
	}
	g := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		g.serveProxy(rec, req)
		if rec.Code < 400 {
			t.Fatalf("answered %d to %q; nothing is reachable, want a refusal", rec.Code, data)
		}
		if rec.Header().Get(ReasonHeader) == "" {
			t.Fatalf("refusal %d without %s", rec.Code, ReasonHeader)
		}
	})
}

// fuzzGateway builds a gateway (not running) whose only rule injects for
// a destination pinned to an unroutable address.
func fuzzGateway(tb testing.TB) *Gateway {
	dir := tb.TempDir()
	certPath, keyPath, err := mitm.WriteCA(dir)
	if err != nil {
		tb.Fatal(err)
	}
	pol := "workloads: {local: {cidrs: [127.0.0.1/32]}}\ndestinations: {plain: {hosts: [plain.test], ports: [80]}}\n" +
		"rules:\n  - {name: deny-all, from: local, to: plain, action: deny}\ndefault: deny\n"
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(pol), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg, err := ParseConfig(filepath.Join(dir, "c.yaml"), []byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\npolicy: policy.yaml\nca: {cert: "+certPath+", key: "+keyPath+"}\n"))
	if err != nil {
		tb.Fatal(err)
	}
	g, err := New(context.Background(), cfg, Options{Audit: discard{}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	return g
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestRefusalBodies(t *testing.T) {
	g := fuzzGateway(t)
	for _, tc := range []struct {
		req        string
		wantStatus int
		wantCode   string
	}{
		{"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 400, codeNotProxyRequest},
		{"GET http://plain.test/v1/../x HTTP/1.1\r\nHost: plain.test\r\n\r\n", 400, codeBadPath},
		{"GET http://plain.test/x HTTP/1.1\r\nHost: plain.test\r\n\r\n", 403, "denied_by_rule"},
		{"GET http://nowhere.test/x HTTP/1.1\r\nHost: nowhere.test\r\n\r\n", 403, "no_rule"},
		{"GET ftp://plain.test/x HTTP/1.1\r\nHost: plain.test\r\n\r\n", 400, codeBadRequest},
	} {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tc.req)))
		if err != nil {
			t.Fatal(err)
		}
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		g.serveProxy(rec, req)
		if rec.Code != tc.wantStatus || rec.Header().Get(ReasonHeader) != tc.wantCode || !strings.Contains(rec.Body.String(), `"code":"`+tc.wantCode+`"`) {
			t.Errorf("%q: %d %s %s, want %d %s", tc.req, rec.Code, rec.Header().Get(ReasonHeader), rec.Body, tc.wantStatus, tc.wantCode)
		}
	}
}

func TestAuditLineIsJSON(t *testing.T) {
	ev := &event{
		Time: time.Date(2026, 11, 25, 4, 0, 0, 123456789, time.FixedZone("x", 3600)), Workload: "billing \"api\"",
		Factors: []identity.Factor{{Kind: "source", Subject: "10.0.0.1"}, {Kind: "mtls", Subject: "spiffe://example.org/billing", Attributes: map[string]string{"trust_domain": "example.org"}}},
		Source:  "10.0.0.1", Method: "GET", Scheme: "https", Host: "api.example.com",
		Port: 443, Path: "/v1/\x00\n\t\\é\xff\u2028", Rule: "r", Decision: "inject", Credential: "c", CacheHit: true,
		Status: 200, BytesIn: 5, BytesOut: 7, Duration: 1500 * time.Microsecond, Upstream: 250 * time.Microsecond,
	}
	line := appendEvent(nil, ev)
	if bytes.Contains(line, []byte("spiffe")) || bytes.Contains(line, []byte("trust_domain")) {
		t.Errorf("the line holds more of a factor than its kind: %s", line)
	}
	if bytes.Count(line, []byte("\n")) != 0 || line[len(line)-1] != '}' {
		t.Fatalf("not one JSON object without a newline (the writer adds the chain fields): %q", line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("not JSON: %v: %s", err, line)
	}
	want := map[string]any{
		"time": "2026-11-25T03:00:00.123Z", "workload": "billing \"api\"", "factors": []any{"source", "mtls"},
		"source": "10.0.0.1", "method": "GET", "scheme": "https", "host": "api.example.com", "port": 443.0,
		"path": "/v1/\x00\n\t\\é\ufffd\u2028", "rule": "r", "decision": "inject", "code": "", "credential": "c",
		"cache_hit": true, "status": 200.0, "bytes_in": 5.0, "bytes_out": 7.0, "duration_ms": 1.5, "upstream_ms": 0.25,
		"policy_version": "",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAuditorFlushes(t *testing.T) {
	var buf lockedBuffer
	a, err := newAuditor(t.Context(), Audit{}, &buf, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.write(&event{Path: "/one"})
	waitFor(t, 5*time.Second, "the periodic flush", func() bool { return strings.Contains(buf.String(), `"/one"`) })
	a.write(&event{Path: "/two"})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"/two"`) {
		t.Errorf("Close did not flush")
	}
	a.write(&event{Path: "/three"})
	if !strings.Contains(buf.String(), `"/three"`) {
		t.Errorf("a write after Close was not written through")
	}
}

func TestGatewayHeadersAreCanonical(t *testing.T) {
	for _, h := range append(append(append([]string(nil), headerset.ProxyScoped...), headerset.Hop...), ReasonHeader) {
		if c := http.CanonicalHeaderKey(h); c != h {
			t.Errorf("%q is removed from headers by name, want the canonical %q (keys are matched exactly)", h, c)
		}
		if !gatewayHeaders.Has(h) && !hopHeaders.Has(h) {
			t.Errorf("%q is removed by neither gatewayHeaders nor hopHeaders", h)
		}
	}
}

// TestInjectRefusal: an injector's sentinel errors choose the status; the
// injector's own error text never reaches the client.
func TestInjectRefusal(t *testing.T) {
	d := policy.Decision{Rule: "s3", Inject: &policy.InjectPlan{Credential: "aws", As: "sigv4"}}
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("sigv4: body of 9 bytes SECRET_DETAIL: %w", injectors.ErrBodyTooLarge), http.StatusRequestEntityTooLarge, codeBodyTooLarge},
		{fmt.Errorf("sigv4: presigned SECRET_DETAIL: %w", injectors.ErrUnsupportedRequest), http.StatusBadRequest, codeUnsupportedRequest},
		{fmt.Errorf("sigv4: SECRET_DETAIL: %w", injectors.ErrMissingField), http.StatusBadGateway, codeInjectFailed},
		{fmt.Errorf("sigv4: read body to hash it: %w", errBodyIdle), http.StatusRequestTimeout, codeBodyTimeout},
	} {
		f := injectRefusal(tc.err, d)
		if f.Status != tc.status || f.Code != tc.code || f.Rule != "s3" {
			t.Errorf("%v: got %d %s rule %q, want %d %s", tc.err, f.Status, f.Code, f.Rule, tc.status, tc.code)
		}
		if strings.Contains(string(f.body()), "SECRET_DETAIL") {
			t.Errorf("the injector's error reached the client: %s", f.body())
		}
	}
}
