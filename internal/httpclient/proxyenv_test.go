package httpclient_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/internal/oauth2test"
	"github.com/credgate/credgate/internal/vaulttest"
	"github.com/credgate/credgate/providers"
	_ "github.com/credgate/credgate/providers/awssts"
	_ "github.com/credgate/credgate/providers/oauth2"
	_ "github.com/credgate/credgate/providers/vault"
)

// proxyConns counts connections to the proxy that the environment names.
var proxyConns atomic.Int64

// probeHost is a name that never resolves (RFC 2606). A client that
// honours HTTPS_PROXY connects to the proxy for it (the proxy would
// resolve it); a client that ignores the proxy fails at DNS.
const probeHost = "proxy-probe.invalid"

// TestMain points every proxy variable at a listener that counts and
// drops connections before any test runs: net/http reads the proxy
// environment once per process, so setting it in a test would be too
// late for transports that consult it.
func TestMain(m *testing.M) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			proxyConns.Add(1) // before Close: a client sees the close after the count
			_ = c.Close()
		}
	}()
	proxy := "http://" + ln.Addr().String()
	for _, k := range []string{"HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy", "VAULT_PROXY_ADDR", "VAULT_HTTP_PROXY"} {
		os.Setenv(k, proxy)
	}
	for _, k := range []string{"NO_PROXY", "no_proxy"} {
		os.Unsetenv(k)
	}
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	code := m.Run()
	_ = ln.Close()
	os.Exit(code)
}

// endpoint is a real endpoint on 127.0.0.1 that counts its requests.
type endpoint struct {
	*httptest.Server
	hits   atomic.Int64
	caFile string // set for TLS endpoints
}

func newEndpoint(t *testing.T, tls bool, h http.HandlerFunc) *endpoint {
	t.Helper()
	e := &endpoint{}
	wrapped := func(w http.ResponseWriter, r *http.Request) { e.hits.Add(1); h(w, r) }
	if tls {
		e.Server = httptest.NewTLSServer(http.HandlerFunc(wrapped))
		e.caFile = filepath.Join(t.TempDir(), "ca.pem")
		pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.Certificate().Raw})
		if err := os.WriteFile(e.caFile, pemData, 0o600); err != nil {
			t.Fatal(err)
		}
	} else {
		e.Server = httptest.NewServer(http.HandlerFunc(wrapped))
	}
	t.Cleanup(e.Close)
	return e
}

func loadProvider(t *testing.T, name, settings string) providers.Provider {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &doc); err != nil {
		t.Fatal(err)
	}
	p, err := providers.Load(context.Background(), name, doc.Content[0])
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	if c, ok := p.(providers.CleanerUpper); ok {
		t.Cleanup(func() { _ = c.Cleanup() })
	}
	return p
}

func fetch(ctx context.Context, p providers.Provider) error {
	_, err := p.Fetch(ctx, providers.Request{Credential: "c", Workload: identity.Workload{Name: "w"}})
	return err
}

var quiet = identity.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// client is one outbound client credgate builds for itself. run makes it
// call base (an endpoint URL without trailing slash): it returns nil when
// the call reached the endpoint and worked.
type client struct {
	name string
	// real starts the real endpoint for the client and returns its base
	// URL, its CA file ("" for plain http on loopback) and a count of
	// the requests it served.
	real func(t *testing.T) (base, caFile string, hits func() int64)
	run  func(t *testing.T, ctx context.Context, base, caFile string) error
}

func clients(t *testing.T) []client {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("gateway-sa-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []client{
		{
			name: "oauth2 token endpoint",
			real: func(t *testing.T) (string, string, func() int64) {
				as := oauth2test.New(oauth2test.Options{})
				t.Cleanup(as.Close)
				as.AddSecretClient("credgate", "client-secret-value")
				return as.URL, "", func() int64 { return int64(as.TokenRequests()) }
			},
			run: func(t *testing.T, ctx context.Context, base, caFile string) error {
				p := loadProvider(t, "oauth2", fmt.Sprintf(`
token_url: %s/token
client_id: credgate
client_secret: {value: client-secret-value}
retries: 0
ca_cert: %q
`, base, caFile))
				return fetch(ctx, p)
			},
		},
		{
			name: "vault",
			real: func(t *testing.T) (string, string, func() int64) {
				v := vaulttest.NewServer(vaulttest.Options{RootToken: "root-token"})
				t.Cleanup(v.Close)
				put(t, v.URL+"/v1/secret/data/x", "root-token", `{"data":{"v":"secret-value"}}`)
				return v.URL, "", func() int64 { return int64(v.Count("read kv")) }
			},
			run: func(t *testing.T, ctx context.Context, base, caFile string) error {
				t.Setenv("CREDGATE_TEST_VAULT_TOKEN", "root-token")
				p := loadProvider(t, "vault", fmt.Sprintf(`
server: {address: %q, ca_cert: %q, retries: 0, auth: {method: token, token_env: CREDGATE_TEST_VAULT_TOKEN}}
path: secret/data/x
field: v
`, base, caFile))
				return fetch(ctx, p)
			},
		},
		{
			name: "awssts (AWS SDK)",
			real: func(t *testing.T) (string, string, func() int64) {
				ep := newEndpoint(t, false, func(w http.ResponseWriter, r *http.Request) {
					exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
					fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials>
<AccessKeyId>ASIAFAKE</AccessKeyId><SecretAccessKey>issued-secret</SecretAccessKey><SessionToken>issued-token</SessionToken><Expiration>%s</Expiration>
</Credentials></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`, exp)
				})
				return ep.URL, ep.caFile, ep.hits.Load
			},
			run: func(t *testing.T, ctx context.Context, base, caFile string) error {
				ca := ""
				if caFile != "" {
					ca = "ca_file: " + caFile
				}
				p := loadProvider(t, "awssts", fmt.Sprintf(`
role_arn: arn:aws:iam::123456789012:role/r
endpoint: %s
web_identity_token_file: %s
retries: 0
%s
`, base, tokenFile, ca))
				return fetch(ctx, p)
			},
		},
		{
			name: "identity jwks_url",
			real: func(t *testing.T) (string, string, func() int64) {
				ep := newEndpoint(t, true, func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.WriteString(w, `{"keys":[]}`)
				})
				return ep.URL, ep.caFile, ep.hits.Load
			},
			run: func(t *testing.T, ctx context.Context, base, caFile string) error {
				r, err := identity.New(ctx, identity.Config{JWT: identity.JWTConfig{Issuers: []identity.IssuerConfig{{
					Issuer: "https://issuer.example", Audiences: []string{"credgate"}, JWKSURL: base + "/jwks", CAFile: caFile,
				}}}}, quiet)
				if err != nil {
					return err
				}
				return r.Close()
			},
		},
		{
			name: "identity discovery_url",
			real: func(t *testing.T) (string, string, func() int64) {
				ep := newEndpoint(t, true, func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.WriteString(w, `{"issuer":"https://issuer.example","jwks_uri":"https://issuer.example/jwks"}`)
				})
				return ep.URL, ep.caFile, ep.hits.Load
			},
			run: func(t *testing.T, ctx context.Context, base, caFile string) error {
				r, err := identity.New(ctx, identity.Config{JWT: identity.JWTConfig{Issuers: []identity.IssuerConfig{{
					Issuer: "https://issuer.example", Audiences: []string{"credgate"}, DiscoveryURL: base + "/.well-known/openid-configuration", CAFile: caFile,
				}}}}, quiet)
				if err != nil {
					return err
				}
				return r.Close()
			},
		},
		{
			name: "identity kubernetes api_server (TokenReview)",
			real: func(t *testing.T) (string, string, func() int64) {
				ep := newEndpoint(t, true, func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.WriteString(w, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":false}}`)
				})
				return ep.URL, ep.caFile, ep.hits.Load
			},
			run: func(t *testing.T, ctx context.Context, base, caFile string) error {
				r, err := identity.New(ctx, identity.Config{Kubernetes: &identity.KubernetesConfig{
					APIServer: base, CAFile: caFile, TokenFile: tokenFile, Audiences: []string{"credgate"},
				}}, quiet)
				if err != nil {
					return err
				}
				defer r.Close()
				_, err = r.Resolve(ctx, identity.Evidence{ProxyAuthorization: "Bearer opaque-workload-token"}, nil)
				return err
			},
		},
		{
			name: "identity posture url",
			real: func(t *testing.T) (string, string, func() int64) {
				ep := newEndpoint(t, true, func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.WriteString(w, `{}`)
				})
				return ep.URL, ep.caFile, ep.hits.Load
			},
			run: func(t *testing.T, ctx context.Context, base, caFile string) error {
				f, err := identity.NewPostureFeed(ctx, identity.PostureConfig{URL: base + "/posture", CAFile: caFile, BearerTokenFile: tokenFile}, quiet)
				if err != nil {
					return err
				}
				return f.Close()
			},
		},
	}
}

// put writes body to a Vault emulator with a client that, like the
// gateway's, uses no proxy.
func put(t *testing.T, url, token, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := (&http.Client{Transport: httpclient.NewTransport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %s", url, resp.Status)
	}
}

// TestProviderClientsIgnoreProxyEnvironment is the test of the class
// "credgate's own outbound clients ignore the proxy environment": with
// HTTPS_PROXY, HTTP_PROXY and ALL_PROXY pointing at a listener, every
// client reaches its real endpoint, and a call to a name only a proxy
// could resolve never connects to the proxy.
func TestProviderClientsIgnoreProxyEnvironment(t *testing.T) {
	for _, c := range clients(t) {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			before := proxyConns.Load()

			base, caFile, hits := c.real(t)
			err := c.run(t, ctx, base, caFile)
			if hits() == 0 {
				t.Fatalf("the real endpoint saw no request (call: %v)", err)
			}

			// The probe: direct DNS fails; through a proxy the listener
			// would see a connection.
			_ = c.run(t, ctx, "https://"+probeHost, "")
			if n := proxyConns.Load() - before; n != 0 {
				t.Fatalf("the proxy from the environment saw %d connection(s); provider traffic must go direct", n)
			}
		})
	}
}
