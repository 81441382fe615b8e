package httpsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
	"github.com/credgate/credgate/internal/httpsigtest"
)

func pemOf(t testing.TB, k crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// testKeys are one key of each algorithm, registered with the verifier.
type testKey struct {
	alg, field, value string
	key               httpsigtest.Key
}

func testKeys(t testing.TB) []testKey {
	t.Helper()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	secret := "hmac-secret-7f3a9c0e51d2"
	return []testKey{
		{Ed25519, "private_key", pemOf(t, ed), httpsigtest.Key{Alg: Ed25519, Public: ed.Public()}},
		{ECDSAP256, "private_key", pemOf(t, p256), httpsigtest.Key{Alg: ECDSAP256, Public: p256.Public()}},
		{ECDSAP384, "private_key", pemOf(t, p384), httpsigtest.Key{Alg: ECDSAP384, Public: p384.Public()}},
		{RSAPSS, "private_key", pemOf(t, rk), httpsigtest.Key{Alg: RSAPSS, Public: rk.Public()}},
		{RSAv15, "private_key", pemOf(t, rk), httpsigtest.Key{Alg: RSAv15, Public: rk.Public()}},
		{HMACSHA, "secret", secret, httpsigtest.Key{Alg: HMACSHA, Secret: []byte(secret)}},
	}
}

// TestSignedRequestsVerify signs requests of many shapes with every
// algorithm and sends them over TLS to httpsigtest, a verifier that
// rebuilds the signature base from what it received: what the injector
// signs is what the server sees.
func TestSignedRequestsVerify(t *testing.T) {
	keys := testKeys(t)
	v := &httpsigtest.Verifier{Keys: map[string]httpsigtest.Key{}}
	for _, k := range keys {
		v.Keys["key-"+k.alg] = k.key
	}
	srv := httpsigtest.NewServer(nil, v)
	defer srv.Close()
	client := srv.Client()

	requests := []struct {
		name, method, path, body string
		header                   http.Header
	}{
		{"GET no query", "GET", "/v1/things", "", nil},
		{"GET query", "GET", "/v1/things?limit=10&cursor=a%2Fb&q=hello+world&empty=", "", nil},
		{"POST JSON", "POST", "/v1/orders", `{"amount":100,"currency":"eur"}`, http.Header{"Content-Type": {"application/json"}}},
		{"PUT empty body", "PUT", "/v1/orders/7", "", nil},
		{"DELETE escaped path", "DELETE", "/v1/orders/a%20b", "", nil},
		{"PATCH multi-valued header", "PATCH", "/v1/x", "a=1", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Trace": {" one ", "two"}}},
		{"POST 100 KiB", "POST", "/upload", strings.Repeat("0123456789abcdef", 6400), http.Header{"Content-Type": {"application/octet-stream"}}},
	}
	components := "['@method', '@target-uri', '@authority', '@scheme', '@request-target', '@path', '@query', '@query-param;name=limit', content-type, content-length, content-digest, x-trace, date]"
	for _, k := range keys {
		for _, digest := range []string{"sha-256", "sha-512"} {
			for _, rq := range requests {
				t.Run(fmt.Sprintf("%s/%s/%s", k.alg, digest, rq.name), func(t *testing.T) {
					settings := fmt.Sprintf("{key_id: key-%s, algorithm: %s, content_digest: %s, expires: 2m, nonce: true, include_alg: true, tag: test-app, components: %s}", k.alg, k.alg, digest, components)
					inj, err := injectortest.Load(t, "httpsig", settings)
					if err != nil {
						t.Fatal(err)
					}
					var body io.Reader
					if rq.body != "" {
						body = strings.NewReader(rq.body)
					}
					r, err := http.NewRequest(rq.method, srv.URL+rq.path, body)
					if err != nil {
						t.Fatal(err)
					}
					for h, vs := range rq.header {
						r.Header[h] = vs
					}
					if err := inj.Inject(r, injectortest.Cred(k.field, k.value)); err != nil {
						t.Fatalf("Inject: %v", err)
					}
					resp, err := client.Do(r)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("verifier answered %d: %s\nSignature-Input: %s", resp.StatusCode, b, r.Header.Get("Signature-Input"))
					}
					var echo httpsigtest.Echo
					if err := json.Unmarshal(b, &echo); err != nil || echo.Body != rq.body || echo.KeyID != "key-"+k.alg {
						t.Errorf("echo %+v (%v)", echo, err)
					}
				})
			}
		}
	}
}

// TestTamperingIsDetected: the verifier is not a rubber stamp. A request
// changed after signing in any covered part, or signed with another key,
// is refused.
func TestTamperingIsDetected(t *testing.T) {
	k := testKeys(t)[0]
	other := testKeys(t)[0]
	v := &httpsigtest.Verifier{Keys: map[string]httpsigtest.Key{"k": k.key}}
	srv := httpsigtest.NewServer(nil, v)
	defer srv.Close()
	tamper := map[string]func(r *http.Request){
		"method": func(r *http.Request) { r.Method = "PUT" },
		"path":   func(r *http.Request) { r.URL.Path = "/v1/other" },
		"query":  func(r *http.Request) { r.URL.RawQuery = "limit=1000" },
		"body": func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader(`{"amount":999}`))
			r.ContentLength = 14
		},
		"content-type": func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") },
		"signature-time": func(r *http.Request) {
			r.Header.Set("Signature-Input", strings.Replace(r.Header.Get("Signature-Input"), "created=", "created=1", 1))
		},
	}
	for name, change := range tamper {
		t.Run(name, func(t *testing.T) {
			inj, err := injectortest.Load(t, "httpsig", "{key_id: k}")
			if err != nil {
				t.Fatal(err)
			}
			r, _ := http.NewRequest("POST", srv.URL+"/v1/orders?limit=10", strings.NewReader(`{"amount":100}`))
			r.Header.Set("Content-Type", "application/json")
			if err := inj.Inject(r, injectortest.Cred("private_key", k.value)); err != nil {
				t.Fatal(err)
			}
			change(r)
			resp, err := srv.Client().Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("tampered %s: status %d, want 401", name, resp.StatusCode)
			}
		})
	}
	t.Run("another key", func(t *testing.T) {
		inj, _ := injectortest.Load(t, "httpsig", "{key_id: k}")
		r, _ := http.NewRequest("GET", srv.URL+"/", nil)
		if err := inj.Inject(r, injectortest.Cred("private_key", other.value)); err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
}

// TestClientCannotChooseSignature: the client's Signature, Signature-Input
// and Content-Digest are the gateway's to write (HeaderNames), and
// Inject replaces them.
func TestClientCannotChooseSignature(t *testing.T) {
	k := testKeys(t)[0]
	inj, _ := injectortest.Load(t, "httpsig", "{key_id: k}")
	got := inj.(injectors.HeaderNames).Headers()
	for _, want := range []string{"Signature", "Signature-Input", "Content-Digest"} {
		if !strings.Contains(strings.Join(got, ","), want) {
			t.Errorf("Headers() = %v, want %s among them", got, want)
		}
	}
	r, _ := http.NewRequest("POST", "https://api.example.com/x", strings.NewReader("abc"))
	r.Header.Set("Signature", "sig1=:Zm9yZ2Vk:")
	r.Header.Set("Content-Digest", "sha-256=:Zm9yZ2Vk:")
	if err := inj.Inject(r, injectortest.Cred("private_key", k.value)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.Header.Get("Signature"), "Zm9yZ2Vk") || strings.Contains(r.Header.Get("Content-Digest"), "Zm9yZ2Vk") {
		t.Errorf("client values survived: %v", r.Header)
	}
}

// TestRefusals: each failure is an error naming the cause, wrapping the
// sentinel the gateway maps to a status, with r left untouched and no
// secret in the message.
func TestRefusals(t *testing.T) {
	k := testKeys(t)
	ed, p256, hm := k[0], k[1], k[5]
	tests := []struct {
		name, settings string
		cred           []string
		body           string
		want           string
		sentinel       error
	}{
		{"missing key field", "{key_id: k}", []string{"token", "x"}, "", `no field "private_key"`, injectors.ErrMissingField},
		{"missing keyid field", "{key_id_field: kid}", []string{"private_key", ed.value}, "", `no field "kid"`, injectors.ErrMissingField},
		{"not a PEM key", "{key_id: k}", []string{"private_key", "not-a-key-s3cr3t"}, "", "private_key", nil},
		{"wrong key type", "{key_id: k, algorithm: ed25519}", []string{"private_key", p256.value}, "", "wrong key type", nil},
		{"bad hmac encoding", "{key_id: k, algorithm: hmac-sha256, key_encoding: base64}", []string{"secret", "%%%s3cr3t"}, "", "not base64", nil},
		{"body over max_body", "{key_id: k, max_body: 10}", []string{"private_key", ed.value}, "01234567890", "max_body 10", injectors.ErrBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj, err := injectortest.Load(t, "httpsig", tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r, _ := http.NewRequest("POST", "https://api.example.com/x", body)
			err = inj.Inject(r, injectortest.Cred(tt.cred...))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to say %q", err, tt.want)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("err = %v, want it to wrap %v", err, tt.sentinel)
			}
			for _, secret := range []string{"s3cr3t", hm.value, strings.Split(ed.value, "\n")[1], strings.Split(p256.value, "\n")[1]} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret", err)
				}
			}
			if r.Header.Get("Signature") != "" || r.Header.Get("Signature-Input") != "" {
				t.Errorf("a failed Inject changed the request: %v", r.Header)
			}
		})
	}
}

// TestSettingsErrors: bad settings are refused at load with a message
// that says what to write.
func TestSettingsErrors(t *testing.T) {
	tests := []struct{ settings, want string }{
		{"{}", "needs key_id"},
		{"{key_id: a, key_id_field: b}", "not both"},
		{"{key_id: a, algorithm: rsa-sha1}", `algorithm "rsa-sha1" is not one of`},
		{"{key_id: a, label: Sig1}", "label"},
		{"{key_id: a, content_digest: md5}", "content_digest"},
		{"{key_id: a, components: ['@status']}", "not a derived component"},
		{"{key_id: a, components: [host]}", `use "@authority"`},
		{"{key_id: a, components: [signature]}", "cannot be signed"},
		{"{key_id: a, components: ['@query-param']}", "needs a parameter"},
		{"{key_id: a, components: ['content-type;sf']}", "only @query-param takes a parameter"},
		{"{key_id: a, components: ['@method', '@method']}", "listed twice"},
		{"{key_id: a, components: []}", "components is empty"},
		{"{key_id: a, key_encoding: hex}", "hmac-sha256 only"},
		{"{key_id: a, created: false, expires: 5m}", "expires needs created"},
		{"{key_id: a, transit: {key: k}}", "transit needs algorithm"},
		{"{key_id: a, bogus: 1}", "bogus"},
	}
	for _, tt := range tests {
		_, err := injectortest.Load(t, "httpsig", tt.settings)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to say %q", tt.settings, err, tt.want)
		}
	}
}

// TestKeyParsedOnce: a warm request does not parse the PEM key again,
// and a rotated key is picked up at the next request.
func TestKeyParsedOnce(t *testing.T) {
	k := testKeys(t)
	inj, _ := injectortest.Load(t, "httpsig", "{key_id: k}")
	s := inj.(*Injector)
	for _, key := range []testKey{k[0], k[0], k[1]} {
		r, _ := http.NewRequest("GET", "https://api.example.com/", nil)
		if err := s.Inject(r, injectortest.Cred("private_key", key.value)); err != nil {
			t.Fatal(err)
		}
		if p := s.last.Load(); p == nil || p.pem != key.value {
			t.Fatalf("cached key is not the one just used")
		}
		if !strings.Contains(r.Header.Get("Signature-Input"), "created=") {
			t.Errorf("Signature-Input %q", r.Header.Get("Signature-Input"))
		}
	}
}
