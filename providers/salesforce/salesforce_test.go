package salesforce_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/salesforcetest"
	"github.com/credgate/credgate/internal/testpki"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/providertest"
	"github.com/credgate/credgate/providers/salesforce"
)

const (
	consumerKey = "3MVG9FAKE.consumer.key"
	user        = "integration@acme.example"
)

var (
	keyOnce sync.Once
	appKey  *rsa.PrivateKey
	appCert *x509.Certificate
	keyErr  error
)

// connectedApp returns the connected app's key and the self-signed
// certificate uploaded to it.
func connectedApp(t testing.TB) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	keyOnce.Do(func() {
		if appKey, keyErr = rsa.GenerateKey(rand.Reader, 2048); keyErr != nil {
			return
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "credgate connected app"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
		var der []byte
		if der, keyErr = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &appKey.PublicKey, appKey); keyErr != nil {
			return
		}
		appCert, keyErr = x509.ParseCertificate(der)
	})
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return appKey, appCert
}

type fixture struct {
	sf      *salesforcetest.Server
	caFile  string
	keyFile string
	client  *http.Client
}

func newFixture(t testing.TB, opts salesforcetest.Options) *fixture {
	t.Helper()
	k, cert := connectedApp(t)
	ca, err := testpki.NewAuthority("salesforce test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	opts.Certificate = &leaf
	sf := salesforcetest.New(opts)
	t.Cleanup(sf.Close)
	if err := sf.AddApp(consumerKey, cert, user); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &fixture{sf: sf, caFile: filepath.Join(dir, "ca.pem"), keyFile: filepath.Join(dir, "app.pem")}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	for p, b := range map[string][]byte{f.caFile: ca.CertPEM, f.keyFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	f.client = &http.Client{Transport: tr}
	return f
}

// settings are valid settings against the fake, with extra lines.
func (f *fixture) settings(extra string) string {
	return "login_url: " + f.sf.URL + "\nca_cert: " + f.caFile + "\nclient_id: " + consumerKey + "\nusername: " + user +
		"\nprivate_key: {file: " + f.keyFile + "}\ninstance_hosts: [127.0.0.1, localhost]\n" + extra
}

// query calls the REST API on the credential's instance host.
func (f *fixture) query(t *testing.T, cred *providers.Credential, host string) int {
	t.Helper()
	port := f.sf.Addr[strings.LastIndexByte(f.sf.Addr, ':'):]
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+host+port+"/services/data/v62.0/query?q=SELECT+Id+FROM+Account", nil)
	tok, _ := cred.Field(providers.FieldToken)
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestFetch(t *testing.T) {
	f := newFixture(t, salesforcetest.Options{})
	p := providertest.Load(t, salesforce.Name, f.settings("session_timeout: 30m\n"))
	before := time.Now()
	cred, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if err != nil {
		t.Fatalf("Fetch: %v (fake refused: %v)", err, f.sf.Refusals())
	}
	if len(cred.Hosts) != 1 || cred.Hosts[0] != "127.0.0.1" {
		t.Errorf("Hosts = %v, want the instance_url's host [127.0.0.1]", cred.Hosts)
	}
	if cred.Expiry.Before(before.Add(28*time.Minute)) || cred.Expiry.After(before.Add(30*time.Minute)) {
		t.Errorf("Expiry %v, want session_timeout less a margin", cred.Expiry.Sub(before))
	}
	if st := f.query(t, cred, "127.0.0.1"); st != http.StatusOK {
		t.Errorf("query on the instance: %d", st)
	}
	if st := f.query(t, cred, "localhost"); st != http.StatusUnauthorized {
		t.Errorf("query on another host: %d, want 401 (the fake pins tokens to instances too)", st)
	}
}

// TestInstanceMigration: after the org moves, a new token names the new
// instance and the credential's Hosts follow.
func TestInstanceMigration(t *testing.T) {
	f := newFixture(t, salesforcetest.Options{})
	p := providertest.Load(t, salesforce.Name, f.settings(""))
	old, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if err != nil {
		t.Fatal(err)
	}
	f.sf.Migrate("https://localhost" + f.sf.Addr[strings.LastIndexByte(f.sf.Addr, ':'):])
	if st := f.query(t, old, "127.0.0.1"); st != http.StatusUnauthorized {
		t.Errorf("old token after the move: %d, want 401", st)
	}
	cred, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cred.Hosts) != 1 || cred.Hosts[0] != "localhost" || cred.AllowsHost("127.0.0.1") {
		t.Errorf("Hosts = %v, want [localhost] only", cred.Hosts)
	}
	if st := f.query(t, cred, "localhost"); st != http.StatusOK {
		t.Errorf("new token on the new instance: %d", st)
	}
}

// TestServiceErrors: each refusal of the token endpoint is an error that
// says what to change, 5xx and timeouts are ErrUnavailable, and no error
// holds the assertion or a token.
func TestServiceErrors(t *testing.T) {
	f := newFixture(t, salesforcetest.Options{})
	late := newFixture(t, salesforcetest.Options{Now: func() time.Time { return time.Now().Add(10 * time.Minute) }})
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecFile := filepath.Join(t.TempDir(), "ec.pem")
	if err := os.WriteFile(ecFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	localhost := "https://localhost" + f.sf.Addr[strings.LastIndexByte(f.sf.Addr, ':'):]
	for name, tc := range map[string]struct {
		f           *fixture
		settings    string
		want        string
		unavailable bool
	}{
		"unknown consumer key":    {f: f, settings: strings.Replace(f.settings(""), consumerKey, "3MVG9WRONG", 1), want: "unknown client_id 3MVG9WRONG (invalid_client_id)"},
		"user not pre-authorized": {f: f, settings: strings.Replace(f.settings(""), user, "someone@acme.example", 1), want: "not pre-authorized"},
		"wrong audience":          {f: f, settings: strings.Replace(f.settings(""), "login_url: "+f.sf.URL, "login_url: "+localhost, 1), want: "wrong audience"},
		"clock":                   {f: late, settings: late.settings(""), want: "check the gateway's clock"},
		"instance not allowed":    {f: f, settings: strings.Replace(f.settings(""), "[127.0.0.1, localhost]", `["*.my.salesforce.com"]`, 1), want: "which instance_hosts (*.my.salesforce.com) does not allow"},
		"ec key":                  {f: f, settings: strings.Replace(f.settings(""), f.keyFile, ecFile, 1), want: "wrong key type for RS256"},
		"5xx":                     {f: f, settings: f.settings(""), want: "503", unavailable: true},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.unavailable {
				tc.f.sf.Fail(http.StatusServiceUnavailable)
				defer tc.f.sf.Fail(0)
			}
			p := providertest.Load(t, salesforce.Name, tc.settings)
			_, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if got := errors.Is(err, providers.ErrUnavailable); got != tc.unavailable {
				t.Errorf("ErrUnavailable = %v, want %v", got, tc.unavailable)
			}
			if strings.Contains(err.Error(), "eyJ") || strings.Contains(err.Error(), "00DFAKE") {
				t.Errorf("the error holds a JWT or token: %v", err)
			}
		})
	}
}

// TestTokenEndpointTimeout: a login host that accepts and never answers
// is ErrUnavailable after timeout (the gateway answers 503), not a hang.
func TestTokenEndpointTimeout(t *testing.T) {
	f := newFixture(t, salesforcetest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	p := providertest.Load(t, salesforce.Name, strings.Replace(f.settings("timeout: 300ms\n"), f.sf.URL, "https://"+ln.Addr().String(), 1))
	start := time.Now()
	_, err = p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if !errors.Is(err, providers.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Fetch took %s with timeout 300ms", d)
	}
}

// keyInput is a provider holding a PEM key, as static or vault would.
type keyInput struct{ pem string }

func (k keyInput) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldPrivateKey: providers.NewSecret(k.pem)}}, nil
}

func TestKeyFromCredential(t *testing.T) {
	f := newFixture(t, salesforcetest.Options{})
	p := providertest.Load(t, salesforce.Name, strings.Replace(f.settings(""), "{file: "+f.keyFile+"}", "{credential: sf-key}", 1))
	b, _ := os.ReadFile(f.keyFile)
	p.(providers.Composer).SetInputs(map[string]providers.Provider{"sf-key": keyInput{string(b)}})
	if _, err := p.Fetch(t.Context(), providers.Request{Credential: "sf", Workload: identity.Workload{Name: "crm"}}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkWarm is the warm path: a cached token through providers.Cache,
// as every request after the first gets it.
func BenchmarkWarm(b *testing.B) {
	f := newFixture(b, salesforcetest.Options{})
	p := providertest.Load(&testing.T{}, salesforce.Name, f.settings(""))
	cache := providers.NewCache(providers.CacheOptions{})
	defer cache.Close()
	bind := providers.Bind(p, providers.CacheKey{Credential: "sf", Version: "v1", Provider: salesforce.Name}, identity.Workload{Name: "crm"})
	if _, _, err := cache.GetBound(context.Background(), bind); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cred, hit, err := cache.GetBound(context.Background(), bind)
		if err != nil || !hit || !cred.AllowsHost("127.0.0.1") {
			b.Fatal(hit, err)
		}
	}
	if n := f.sf.Grants(); n != 1 {
		b.Errorf("%d grants, want 1", n)
	}
}

// TestAudience: the assertion's aud is one Salesforce documents
// (https://login.salesforce.com, https://test.salesforce.com, an
// Experience Cloud site), whatever login host the request goes to: a My
// Domain is no audience (Salesforce answers "audience is invalid").
func TestAudience(t *testing.T) {
	for _, tt := range []struct{ login, want string }{
		{"https://login.salesforce.com", "https://login.salesforce.com"},
		{"https://login.salesforce.com/", "https://login.salesforce.com"},
		{"https://test.salesforce.com", "https://test.salesforce.com"},
		{"https://acme.my.salesforce.com", "https://login.salesforce.com"},
		{"https://ACME.My.Salesforce.com/", "https://login.salesforce.com"},
		{"https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"},
		{"https://acme.my.site.com", "https://acme.my.site.com"},
		{"https://127.0.0.1:8443", "https://127.0.0.1:8443"},
	} {
		if got := salesforce.Audience(tt.login); got != tt.want {
			t.Errorf("Audience(%s) = %s, want %s", tt.login, got, tt.want)
		}
	}
}

// TestMyDomainAudience: against a login host that, like a My Domain,
// takes only https://login.salesforce.com as aud, the assertion names it
// when audience says so, and login_url alone (its own origin) is refused
// with an error that names the setting.
func TestMyDomainAudience(t *testing.T) {
	f := newFixture(t, salesforcetest.Options{Audience: salesforce.DefaultLoginURL})
	p := providertest.Load(t, salesforce.Name, f.settings("audience: "+salesforce.DefaultLoginURL+"\n"))
	if _, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"}); err != nil {
		t.Fatalf("Fetch with audience %s: %v (refusals %q)", salesforce.DefaultLoginURL, err, f.sf.Refusals())
	}
	p = providertest.Load(t, salesforce.Name, f.settings(""))
	_, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if err == nil || !strings.Contains(err.Error(), "set audience") {
		t.Fatalf("Fetch with the login host as aud: %v, want the wrong-audience error naming the setting", err)
	}
}
