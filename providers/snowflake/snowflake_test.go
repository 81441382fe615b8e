package snowflake_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/youmark/pkcs8"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/snowflaketest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/providertest"
	"github.com/credgate/credgate/providers/snowflake"
)

const subject = "MYORG-MYACCOUNT.ETL_SERVICE"

var (
	keyOnce      sync.Once
	userKey      *rsa.PrivateKey
	otherKey     *rsa.PrivateKey
	keyGenFailed error
)

func keys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		if userKey, keyGenFailed = rsa.GenerateKey(rand.Reader, 2048); keyGenFailed == nil {
			otherKey, keyGenFailed = rsa.GenerateKey(rand.Reader, 2048)
		}
	})
	if keyGenFailed != nil {
		t.Fatal(keyGenFailed)
	}
	return userKey, otherKey
}

// writePEM writes a PEM block of type typ holding der, and returns its path.
func writePEM(t testing.TB, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func derOf(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

type fixture struct {
	sf      *snowflaketest.Server
	keyFile string
	client  *http.Client
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	k, _ := keys(t)
	sf := snowflaketest.New(snowflaketest.Options{})
	t.Cleanup(sf.Close)
	sf.SetUserKeys(subject, &k.PublicKey)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(sf.CertPEM())
	tr := &http.Transport{Proxy: nil}
	tr.TLSClientConfig = newTLS(pool)
	t.Cleanup(tr.CloseIdleConnections)
	return &fixture{sf: sf, keyFile: writePEM(t, "PRIVATE KEY", derOf(t, k)), client: &http.Client{Transport: tr}}
}

// query sends a SQL API statement with the credential's JWT, as the
// headers injector of docs/plugins/snowflake.md sets it.
func (f *fixture) query(t *testing.T, cred *providers.Credential) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.sf.URL+"/api/v2/statements?requestId=1",
		strings.NewReader(`{"statement":"select current_user()","timeout":60}`))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := cred.Field(providers.FieldToken)
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	req.Header.Set("X-Snowflake-Authorization-Token-Type", snowflake.TokenType)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		var out struct {
			Code string     `json:"code"`
			Data [][]string `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Code != "090001" || len(out.Data) != 1 {
			t.Errorf("statement answer: code %q, data %v, err %v", out.Code, out.Data, err)
		}
	}
	return resp.StatusCode
}

func TestAccountIdentifier(t *testing.T) {
	for in, want := range map[string]string{
		"myorg-myaccount":                                 "MYORG-MYACCOUNT",
		"MyOrg-MyAccount.snowflakecomputing.com":          "MYORG-MYACCOUNT",
		"https://myorg-myaccount.snowflakecomputing.com/": "MYORG-MYACCOUNT",
		"xy12345":               "XY12345",
		"xy12345.us-east-2.aws": "XY12345",
		"xy12345.us-east-2.aws.snowflakecomputing.com":         "XY12345",
		"xy12345.eu-west-1.privatelink.snowflakecomputing.com": "XY12345",
		"myorg-myaccount.privatelink.snowflakecomputing.com":   "MYORG-MYACCOUNT",
		"xy12345-abcdefgh.global.snowflakecomputing.com":       "XY12345",
		"myorg.my_account":        "MYORG-MY_ACCOUNT",
		"xy12345.us-central1.gcp": "XY12345",
		"xy12345.east-us-2.azure": "XY12345",
		"xy12345.aws":             "XY12345",
	} {
		if got := snowflake.AccountIdentifier(in); got != want {
			t.Errorf("AccountIdentifier(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFetchAccepted: the JWT passes the fake's checks (signature with the
// registered key, iss fingerprint, sub, exp ≤ 1 h, token type).
func TestFetchAccepted(t *testing.T) {
	f := newFixture(t)
	p := providertest.Load(t, snowflake.Name, "account: myorg-myaccount.snowflakecomputing.com\nuser: etl_service\nprivate_key: {file: "+f.keyFile+"}\n")
	before := time.Now()
	cred, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.query(t, cred); got != http.StatusOK {
		t.Fatalf("status %d, want 200; fake refused: %v", got, f.sf.Rejected())
	}
	acc := f.sf.Accepted()
	if len(acc) != 1 {
		t.Fatalf("accepted %d", len(acc))
	}
	c := acc[0]
	k, _ := keys(t)
	if want := subject + "." + snowflaketest.Fingerprint(&k.PublicKey); c.Issuer != want || c.Subject != subject {
		t.Errorf("iss %q sub %q, want %q %q", c.Issuer, c.Subject, want, subject)
	}
	if d := c.Exp.Sub(c.IssuedAt); d != time.Hour {
		t.Errorf("exp - iat = %s, want 1h", d)
	}
	if !cred.Expiry.After(before.Add(50*time.Minute)) || !cred.Expiry.Before(c.Exp) {
		t.Errorf("credential expiry %s, want before the JWT's exp %s and about an hour from now", cred.Expiry, c.Exp)
	}
}

// TestWrongFingerprint: the user's registered key is another one; Snowflake
// answers 401 (the gateway drops the JWT: ReissueOnUnauthorized).
func TestWrongFingerprint(t *testing.T) {
	f := newFixture(t)
	_, other := keys(t)
	f.sf.SetUserKeys(subject, &other.PublicKey)
	p := providertest.Load(t, snowflake.Name, "account: myorg-myaccount\nuser: ETL_SERVICE\nprivate_key: {file: "+f.keyFile+"}\n")
	cred, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.query(t, cred); got != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", got)
	}
	if r := f.sf.Rejected(); len(r) != 1 || !strings.Contains(r[0], "names no public key") {
		t.Errorf("fake refused for %v, want the fingerprint", r)
	}
	if !p.(providers.Reissuer).ReissueOnUnauthorized() {
		t.Error("a 401 must drop the JWT (a rotated key)")
	}
	// Key rotation as Snowflake documents it: the new key as
	// RSA_PUBLIC_KEY_2, then the file replaced: the next mint uses it.
	k, _ := keys(t)
	f.sf.SetUserKeys(subject, &other.PublicKey, &k.PublicKey)
	cred, err = p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.query(t, cred); got != http.StatusOK {
		t.Fatalf("after rotation: status %d, want 200", got)
	}
}

// TestKeyRotatedFile: the fingerprint follows the key file.
func TestKeyRotatedFile(t *testing.T) {
	f := newFixture(t)
	k, other := keys(t)
	f.sf.SetUserKeys(subject, &k.PublicKey, &other.PublicKey)
	p := providertest.Load(t, snowflake.Name, "account: myorg-myaccount\nuser: etl_service\nprivate_key: {file: "+f.keyFile+"}\n")
	if err := os.WriteFile(f.keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)}), 0o600); err != nil {
		t.Fatal(err)
	}
	cred, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.query(t, cred); got != http.StatusOK {
		t.Fatalf("status %d; refused: %v", got, f.sf.Rejected())
	}
	if got, want := f.sf.Accepted()[0].Issuer, subject+"."+snowflaketest.Fingerprint(&other.PublicKey); got != want {
		t.Errorf("iss %q, want %q (the new key's)", got, want)
	}
}

// keyInput is a provider holding a PEM key, as static or vault would.
type keyInput struct{ pem string }

func (k keyInput) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldPrivateKey: providers.NewSecret(k.pem)}}, nil
}

// TestKeyFromCredential: the key comes from another credential of the
// policy, fetched for the same caller.
func TestKeyFromCredential(t *testing.T) {
	f := newFixture(t)
	k, _ := keys(t)
	p := providertest.Load(t, snowflake.Name, "account: xy12345.us-east-2.aws\nuser: etl_service\nprivate_key: {credential: sf-key}\nlifetime: 30m\n")
	c := p.(providers.Composer)
	if got := c.Inputs(); len(got) != 1 || got[0] != "sf-key" {
		t.Fatalf("Inputs = %v", got)
	}
	c.SetInputs(map[string]providers.Provider{"sf-key": keyInput{string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: derOf(t, k)}))}})
	f.sf.SetUserKeys("XY12345.ETL_SERVICE", &k.PublicKey)
	cred, err := p.Fetch(t.Context(), providers.Request{Credential: "sf", Workload: identity.Workload{Name: "etl"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.query(t, cred); got != http.StatusOK {
		t.Fatalf("status %d; refused: %v", got, f.sf.Rejected())
	}
	if c := f.sf.Accepted()[0]; c.Exp.Sub(c.IssuedAt) != 30*time.Minute {
		t.Errorf("lifetime %s, want 30m", c.Exp.Sub(c.IssuedAt))
	}
}

// TestEncryptedKey: an encrypted PKCS#8 key (what Snowflake's guide has
// openssl write by default) with its passphrase from another credential.
func TestEncryptedKey(t *testing.T) {
	f := newFixture(t)
	k, _ := keys(t)
	const pass = "snowflake key passphrase"
	der, err := pkcs8.MarshalPrivateKey(k, []byte(pass), nil)
	if err != nil {
		t.Fatal(err)
	}
	file := writePEM(t, "ENCRYPTED PRIVATE KEY", der)
	p := providertest.Load(t, snowflake.Name, "account: myorg-myaccount\nuser: etl_service\nprivate_key: {file: "+file+", passphrase: {credential: sf-pass}}\n")
	if got := p.(providers.Composer).Inputs(); len(got) != 1 || got[0] != "sf-pass" {
		t.Fatalf("Inputs = %v, want [sf-pass]", got)
	}
	passIn := &passInput{pass: pass}
	p.(providers.Composer).SetInputs(map[string]providers.Provider{"sf-pass": passIn})
	cred, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.query(t, cred); got != http.StatusOK {
		t.Fatalf("status %d; refused: %v", got, f.sf.Rejected())
	}
	passIn.pass = "wrong"
	_, err = p.Fetch(t.Context(), providers.Request{Credential: "sf"})
	if err == nil || !strings.Contains(err.Error(), "does not decrypt with the passphrase") || strings.Contains(err.Error(), pass) {
		t.Errorf("wrong passphrase: err = %v", err)
	}
}

// passInput is a provider holding a passphrase, as static would.
type passInput struct{ pass string }

func (p *passInput) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(p.pass)}}, nil
}

// TestBadKeys: every wrong key format is a clear error naming the file and
// the fix, with no key material in it.
func TestBadKeys(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	k, _ := keys(t)
	encrypted := writePEM(t, "ENCRYPTED PRIVATE KEY", []byte("not really encrypted but marked so"))
	for name, tc := range map[string]struct{ file, want string }{
		"ec":        {writePEM(t, "PRIVATE KEY", derOf(t, ec)), "the key is ECDSA"},
		"small rsa": {writePEM(t, "PRIVATE KEY", derOf(t, small)), "at least 2048"},
		"encrypted": {encrypted, "encrypted; set passphrase"},
		"public":    {writePEM(t, "PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.PublicKey)), "no PEM private key"},
		"garbage":   {writePEM(t, "PRIVATE KEY", []byte("garbage")), "not a PKCS#8"},
		"missing":   {filepath.Join(t.TempDir(), "none.p8"), "cannot read the key"},
	} {
		t.Run(name, func(t *testing.T) {
			p := providertest.Load(t, snowflake.Name, "account: myorg-myaccount\nuser: etl_service\nprivate_key: {file: "+tc.file+"}\n")
			_, err := p.Fetch(t.Context(), providers.Request{Credential: "sf"})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "private_key.file") {
				t.Fatalf("err = %v, want one naming private_key.file and %q", err, tc.want)
			}
			data, _ := os.ReadFile(tc.file)
			if blk, _ := pem.Decode(data); blk != nil {
				if enc := base64.StdEncoding.EncodeToString(blk.Bytes); len(enc) > 16 && bytes.Contains([]byte(err.Error()), []byte(enc[:16])) {
					t.Errorf("the error quotes the key: %v", err)
				}
			}
		})
	}
}

// BenchmarkWarm is the warm path: a cached JWT through providers.Cache, as
// every request after the first gets it.
func BenchmarkWarm(b *testing.B) {
	k, _ := keys(b)
	file := writePEM(b, "PRIVATE KEY", derOf(b, k))
	p := providertest.Load(&testing.T{}, snowflake.Name, "account: myorg-myaccount\nuser: etl_service\nprivate_key: {file: "+file+"}\n")
	cache := providers.NewCache(providers.CacheOptions{})
	defer cache.Close()
	bind := providers.Bind(p, providers.CacheKey{Credential: "sf", Version: "v1", Provider: snowflake.Name}, identity.Workload{Name: "etl"})
	if _, _, err := cache.GetBound(context.Background(), bind); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, hit, err := cache.GetBound(context.Background(), bind); err != nil || !hit {
			b.Fatal(hit, err)
		}
	}
}

// BenchmarkMint is the cold path: one JWT signed (the key file read and
// parsed, its fingerprint computed), about once an hour per credential.
func BenchmarkMint(b *testing.B) {
	k, _ := keys(b)
	file := writePEM(b, "PRIVATE KEY", derOf(b, k))
	p := providertest.Load(&testing.T{}, snowflake.Name, "account: myorg-myaccount\nuser: etl_service\nprivate_key: {file: "+file+"}\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Fetch(context.Background(), providers.Request{Credential: "sf"}); err != nil {
			b.Fatal(err)
		}
	}
}
