package pluginbench_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	_ "github.com/credgate/credgate/injectors/all"
	"github.com/credgate/credgate/providers"
	_ "github.com/credgate/credgate/providers/all"
)

// plugin is one provider + injector pair as a rule would use it.
type plugin struct {
	name               string
	provider, settings string
	as, injSettings    string
	url                string            // the representative request
	fields             map[string]string // the cached credential's fields
}

// plugins are the compiled-in plugins at a warm cache. KEY is replaced by
// an RSA key file, SA by a service-account JSON key file.
var plugins = []plugin{
	{name: "static+bearer (baseline)", provider: "static", settings: "env: PLUGINBENCH_TOKEN", as: "bearer",
		url: "https://api.example.com/v1/items", fields: map[string]string{"token": "sk-static-0123456789"}},
	{name: "github-app+bearer", provider: "github-app", settings: "app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777\nrepositories: [widgets]\npermissions: {contents: read}", as: "bearer",
		url: "https://api.github.com/repos/acme/widgets/issues", fields: map[string]string{"token": "ghs_0123456789abcdef", "username": "x-access-token", "password": "ghs_0123456789abcdef"}},
	{name: "github-app+basic (git)", provider: "github-app", settings: "app_id: 4242\nprivate_key: {file: KEY}\ninstallation_id: 777", as: "basic",
		url: "https://github.com/acme/widgets.git/info/refs?service=git-upload-pack", fields: map[string]string{"token": "ghs_0123456789abcdef", "username": "x-access-token", "password": "ghs_0123456789abcdef"}},
	{name: "google+bearer", provider: "google", settings: "key: {file: SA}\nscopes: [https://www.googleapis.com/auth/cloud-platform]", as: "bearer",
		url: "https://pubsub.googleapis.com/v1/projects/p/topics", fields: map[string]string{"token": "ya29.0123456789abcdef"}},
	{name: "oauth2+bearer", provider: "oauth2", settings: "token_url: https://auth.example.com/token\nclient_id: credgate\nclient_secret: {value: bench-client-secret}\nscopes: [read]", as: "bearer",
		url: "https://api.example.com/v1/items", fields: map[string]string{"token": "at-0123456789abcdef"}},
	{name: "awssts+sigv4", provider: "awssts", settings: "role_arn: arn:aws:iam::123456789012:role/r\nregion: eu-west-1\nsession_name: \"credgate-{{.workload.name}}\"\nweb_identity_token_file: KEY", as: "sigv4",
		url: "https://bucket.s3.eu-west-1.amazonaws.com/key.txt", fields: map[string]string{"access_key_id": "ASIAEXAMPLE0123", "secret_access_key": "secret-0123456789abcdef", "session_token": "session-0123456789abcdef"}},
	{name: "vault+bearer", provider: "vault", settings: "server: {address: https://vault.example.com:8200, auth: {method: token, token_env: PLUGINBENCH_TOKEN}}\npath: secret/data/x\nfield: v", as: "bearer",
		url: "https://api.example.com/v1/items", fields: map[string]string{"token": "vault-value-0123456789"}},
	{name: "static+openai", provider: "static", settings: "env: PLUGINBENCH_TOKEN", as: "openai", injSettings: "organization: org-123",
		url: "https://api.openai.com/v1/chat/completions", fields: map[string]string{"token": "sk-static-0123456789"}},
	{name: "static+anthropic", provider: "static", settings: "env: PLUGINBENCH_TOKEN", as: "anthropic",
		url: "https://api.anthropic.com/v1/messages", fields: map[string]string{"token": "sk-static-0123456789"}},
	{name: "static+gemini", provider: "static", settings: "env: PLUGINBENCH_TOKEN", as: "gemini",
		url: "https://generativelanguage.googleapis.com/v1beta/models", fields: map[string]string{"token": "sk-static-0123456789"}},
	{name: "static+hmac (Binance-style)", provider: "static", settings: "env: PLUGINBENCH_TOKEN", as: "hmac",
		injSettings: "key_field: token\nstring_to_sign: \"{{.query}}\"\ntimestamp: {format: unix_ms, query: timestamp}\nsignature: {query: signature}\nheaders: {X-MBX-APIKEY: \"{{.api_key}}\"}",
		url:         "https://api.binance.com/api/v3/account?recvWindow=5000", fields: map[string]string{"token": "hmac-secret-0123456789", "api_key": "api-key-0123456789"}},
	{name: "static+sigv4", provider: "static", settings: "env: PLUGINBENCH_TOKEN", as: "sigv4",
		url: "https://bucket.s3.eu-west-1.amazonaws.com/key.txt", fields: map[string]string{"access_key_id": "AKIAEXAMPLE0123", "secret_access_key": "secret-0123456789abcdef"}},
}

func node(t testing.TB, settings string) *yaml.Node {
	t.Helper()
	if settings == "" {
		return nil
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &n); err != nil {
		t.Fatalf("settings %q: %v", settings, err)
	}
	return n.Content[0]
}

// keyFiles writes an RSA key (PEM) and a service-account JSON key.
func keyFiles(t testing.TB) (pemFile, saFile string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	dir := t.TempDir()
	pemFile, saFile = filepath.Join(dir, "key.pem"), filepath.Join(dir, "sa.json")
	sa := `{"type":"service_account","private_key_id":"k1","client_email":"sa@p.iam.gserviceaccount.com","token_uri":"https://oauth2.googleapis.com/token","private_key":` +
		strings.ReplaceAll(`"`+strings.ReplaceAll(string(p), "\n", `\n`)+`"`, "\t", "") + `}`
	if err := os.WriteFile(pemFile, p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(saFile, []byte(sa), 0o600); err != nil {
		t.Fatal(err)
	}
	return pemFile, saFile
}

// warm is one plugin loaded, with its credential in a cache.
type warm struct {
	p     providers.Provider
	inj   injectors.Injector
	cache *providers.Cache
	key   providers.CacheKey
	wl    identity.Workload
	req   *http.Request
	hdr   http.Header
}

func setup(t testing.TB, pl plugin, pemFile, saFile string) *warm {
	t.Helper()
	ctx := context.Background()
	expand := strings.NewReplacer("SA", saFile, "KEY", pemFile).Replace
	p, err := providers.Load(ctx, pl.provider, node(t, expand(pl.settings)))
	if err != nil {
		t.Fatalf("%s: load provider: %v", pl.name, err)
	}
	if cu, ok := p.(providers.CleanerUpper); ok {
		t.Cleanup(func() { _ = cu.Cleanup() })
	}
	inj, err := injectors.Load(ctx, pl.as, node(t, pl.injSettings))
	if err != nil {
		t.Fatalf("%s: load injector: %v", pl.name, err)
	}
	w := &warm{p: p, inj: inj, cache: providers.NewCache(providers.CacheOptions{}),
		key: providers.CacheKey{Credential: "c", Version: "v1", Provider: pl.provider},
		wl:  identity.Workload{Name: "billing-api"}}
	t.Cleanup(w.cache.Close)
	cred := &providers.Credential{Fields: map[string]providers.Secret{}, Expiry: time.Now().Add(time.Hour)}
	for k, v := range pl.fields {
		cred.Fields[k] = providers.NewSecret(v)
	}
	// Warm the cache under the key the gateway's binding computes; the
	// warm path never calls the provider's Fetch.
	b := providers.Bind(p, w.key, w.wl)
	if _, _, err := w.cache.Get(ctx, b.Key, func(context.Context) (*providers.Credential, error) { return cred, nil }); err != nil {
		t.Fatal(err)
	}
	w.req, err = http.NewRequestWithContext(ctx, http.MethodGet, pl.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.hdr = http.Header{"User-Agent": {"bench/1"}, "Accept": {"application/json"}, "Authorization": {"Bearer client-placeholder"}}
	return w
}

// once is one request's warm path as the gateway runs it: bind the
// credential to the caller, get it from the cache, apply the injector to
// a fresh copy of the request's headers.
func (w *warm) once(ctx context.Context) error {
	b := providers.Bind(w.p, w.key, w.wl)
	cred, hit, err := w.cache.GetBound(ctx, b)
	if err != nil {
		return err
	}
	if !hit {
		return errMiss
	}
	w.req.Header = w.hdr.Clone()
	return injectors.Apply(w.inj, w.req, cred)
}

var errMiss = &missError{}

type missError struct{}

func (*missError) Error() string { return "warm cache missed" }

// TestWarmPath checks that every pair loads and injects from a warm
// cache, so the benchmark measures what it says.
func TestWarmPath(t *testing.T) {
	t.Setenv("PLUGINBENCH_TOKEN", "sk-static-0123456789")
	pemFile, saFile := keyFiles(t)
	for _, pl := range plugins {
		w := setup(t, pl, pemFile, saFile)
		if err := w.once(t.Context()); err != nil {
			t.Errorf("%s: %v", pl.name, err)
		}
	}
}

// BenchmarkWarmPath is the per-request cost each plugin adds at a warm
// cache: binding, cache hit and injection on a representative request.
// Beside ns/op, each line reports ns-over-bearer/op: the plugin's time
// less the static+bearer baseline's, both timed in alternating blocks of
// 256 requests (the baseline's blocks outside the benchmark timer), so
// that both see the same load on a shared machine.
func BenchmarkWarmPath(b *testing.B) {
	b.Setenv("PLUGINBENCH_TOKEN", "sk-static-0123456789")
	pemFile, saFile := keyFiles(b)
	base := setup(b, plugins[0], pemFile, saFile)
	const block = 256
	for _, pl := range plugins {
		w := setup(b, pl, pemFile, saFile)
		b.Run(pl.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			var plugin, baseline time.Duration
			n := 0
			start := time.Now()
			for b.Loop() {
				if err := w.once(ctx); err != nil {
					b.Fatal(err)
				}
				if n++; n%block == 0 {
					plugin += time.Since(start)
					b.StopTimer()
					t0 := time.Now()
					for range block {
						if err := base.once(ctx); err != nil {
							b.Fatal(err)
						}
					}
					baseline += time.Since(t0)
					b.StartTimer()
					start = time.Now()
				}
			}
			if full := n / block * block; full > 0 {
				b.ReportMetric(float64(plugin-baseline)/float64(full), "ns-over-bearer/op")
			}
		})
	}
}
