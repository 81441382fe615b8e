package all_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	_ "github.com/credgate/credgate/injectors/all"
	"github.com/credgate/credgate/injectors/injectortest"
	"github.com/credgate/credgate/internal/testpki"
)

// faultCase is one built-in injector: a rule's settings, a request and a
// credential it injects, a credential whose value it must refuse, and,
// when the injector can refuse a request, a request it must refuse with
// the good credential.
type faultCase struct {
	settings string
	url      string
	good     []string
	badValue []string
	// badRequest builds a request the injector refuses whatever the
	// credential (nil: the injector refuses no request).
	badRequest func() *http.Request
	// wl is the caller (stripe maps workloads to accounts).
	wl identity.Workload
}

// TestEveryInjectorErrorSaysWhose: for every built-in injector, an
// unusable credential value is refused with an error whose fault is the
// value (the gateway drops the credential from the cache) and a request
// it cannot serve with one whose fault is the request (the credential is
// kept): injectors.FaultOf tells them apart, never FaultInjector for
// either. The table must list every registered injector.
func TestEveryInjectorErrorSaysWhose(t *testing.T) {
	edPEM, certPEM, keyPEM := testKeys(t)
	const (
		tok     = "tok-0123456789abcdef"
		crlf    = "tok\r\nX-Injected: 1"
		ddAPI   = "0123456789abcdef0123456789abcdef"
		ddApp   = "0123456789abcdef0123456789abcdef01234567"
		sid     = "AC0123456789abcdef0123456789abcdef"
		azKey   = "c2VjcmV0LWtleS1vZi10aGUtc3RvcmFnZS1hY2NvdW50"
		api     = "https://api.example.com/v1/items"
		s3      = "https://bucket.s3.eu-west-1.amazonaws.com/key.txt"
		bigBody = "0123456789abcdefghij"
	)
	withBody := func(url, body string) func() *http.Request {
		return func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, url, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}
	}
	get := func(url string) func() *http.Request {
		return func() *http.Request { return httptest.NewRequest(http.MethodGet, url, nil) }
	}
	cases := map[string]faultCase{
		"anthropic": {url: "https://api.anthropic.com/v1/messages", good: []string{"token", tok}, badValue: []string{"token", crlf}},
		"azure-sharedkey": {url: "https://acmereports.blob.core.windows.net/c/b", good: []string{"account_key", azKey}, badValue: []string{"account_key", "not base64 !"},
			badRequest: get("https://files.example.com/c/b")},
		"basic":  {url: api, good: []string{"username", "u", "password", "p"}, badValue: []string{"username", "u:x", "password", "p"}},
		"bearer": {url: api, good: []string{"token", tok}, badValue: []string{"token", crlf}},
		"datadog": {url: "https://api.datadoghq.com/api/v1/validate", good: []string{"api_key", ddAPI, "app_key", ddApp}, badValue: []string{"api_key", "not-a-key", "app_key", ddApp},
			badRequest: get("https://api.example.com/api/v1/validate")},
		"gemini":  {url: "https://generativelanguage.googleapis.com/v1beta/models", good: []string{"token", tok}, badValue: []string{"token", ""}},
		"header":  {settings: "name: X-Api-Key", url: api, good: []string{"token", tok}, badValue: []string{"token", crlf}},
		"headers": {settings: "headers: {X-Api-Key: '{{.token}}', X-Client: constant}", url: api, good: []string{"token", tok}, badValue: []string{"other", tok}},
		"hmac": {settings: "string_to_sign: '{{.body_sha256}}'\nsignature: {header: X-Sig}\nmax_body: 8", url: api, good: []string{"secret", "s3cr3t"}, badValue: []string{"secret", ""},
			badRequest: withBody(api, bigBody)},
		"httpsig": {settings: "{key_id: k, max_body: 10}", url: api, good: []string{"private_key", edPEM}, badValue: []string{"private_key", "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"},
			badRequest: withBody(api, bigBody)},
		"oci-token": {settings: ociRealm(t), url: "https://registry.example.com/v2/app/manifests/v1", good: []string{"username", "u", "password", "p"}, badValue: []string{"username", "u", "password", crlf},
			badRequest: get("https://registry.example.com/admin")},
		"openai":      {url: "https://api.openai.com/v1/models", good: []string{"token", tok}, badValue: []string{"token", crlf}},
		"placeholder": {url: api, good: []string{"token", tok}},
		"query":       {settings: "param: key", url: api, good: []string{"token", tok}, badValue: []string{"token", ""}},
		"sigv4": {url: s3, good: []string{"access_key_id", "AKIAEXAMPLE0123", "secret_access_key", "secret-0123456789abcdef"}, badValue: []string{"access_key_id", "AKIA\nX", "secret_access_key", "s"},
			badRequest: get(s3 + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc&X-Amz-Credential=x")},
		"slack": {settings: "max_body: 16", url: "https://slack.com/api/chat.postMessage", good: []string{"token", "xoxb-1-abc"}, badValue: []string{"token", "sk_live_abc"},
			badRequest: withBody("https://slack.com/api/chat.postMessage", "token=x&text="+strings.Repeat("a", 32))},
		"stripe": {settings: "accounts: {billing: acct_1Eu}", url: "https://api.stripe.com/v1/charges", good: []string{"token", "sk_test_abc123"}, badValue: []string{"token", "pk_test_abc123"},
			wl: identity.Workload{Name: "billing"}},
		"tlsclient": {url: api, good: []string{"certificate", string(certPEM), "private_key", string(keyPEM)}, badValue: []string{"certificate", "not a certificate", "private_key", string(keyPEM)}},
		"twilio":    {url: "https://api.twilio.com/2010-04-01/Accounts/-/Messages.json", good: []string{"account_sid", sid, "auth_token", tok}, badValue: []string{"account_sid", "ACnot", "auth_token", tok}},
	}
	if diff := cmp.Diff(injectors.Names(), slices.Sorted(func(yield func(string) bool) {
		for k := range cases {
			if !yield(k) {
				return
			}
		}
	})); diff != "" {
		t.Fatalf("the table must list every registered injector (-registered +table):\n%s", diff)
	}
	// A stripe caller the rule maps to no account: the request's fault.
	stripeUnmapped := identity.Workload{Name: "unlisted"}

	failed, total := 0, 0
	for _, name := range injectors.Names() {
		tc := cases[name]
		t.Run(name, func(t *testing.T) {
			inj, err := injectortest.Load(t, name, tc.settings)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			apply := func(r *http.Request, fields []string, wl identity.Workload) error {
				cred := injectortest.Cred(fields...)
				if err := injectors.ApplyFor(inj, r, cred, wl); err != nil {
					return err
				}
				_, err := injectors.ClientCertificateOf(inj, cred)
				return err
			}
			if err := apply(get(tc.url)(), tc.good, tc.wl); err != nil {
				t.Fatalf("the good credential: %v", err)
			}
			check := func(what string, err error, want injectors.Fault) {
				t.Helper()
				total++
				if got := injectors.FaultOf(err); err == nil || got != want {
					failed++
					t.Errorf("%s: error %v, fault %q; want an error whose fault is %q", what, err, got, want)
				}
			}
			if tc.badValue != nil {
				check("an unusable value", apply(get(tc.url)(), tc.badValue, tc.wl), injectors.FaultValue)
			}
			if tc.badRequest != nil {
				check("a request it cannot serve", apply(tc.badRequest(), tc.good, tc.wl), injectors.FaultRequest)
			}
			if name == "stripe" {
				check("a caller mapped to no account", apply(get(tc.url)(), tc.good, stripeUnmapped), injectors.FaultRequest)
			}
		})
	}
	t.Logf("%d of %d cases failed", failed, total)
}

// testKeys returns an Ed25519 private key and a client certificate with
// its key, as PEM, for the injectors that sign or present one.
func testKeys(t *testing.T) (edPEM string, certPEM, keyPEM []byte) {
	t.Helper()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := testpki.NewAuthority("injectors CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.ClientLeaf("client")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err = testpki.PEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), certPEM, keyPEM
}

// ociRealm starts a registry token service on 127.0.0.1 that issues a
// token to any HTTP Basic credential, and returns oci-token settings
// naming it.
func ociRealm(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"token":"registry-token-0123","expires_in":300}`))
	}))
	t.Cleanup(srv.Close)
	return "{realm: " + srv.URL + "/token, service: registry.example.com}"
}
