package all_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/transform"
)

// wirePublic are the fields the gateway does not scrub from responses
// (gateway publicFields: identifiers, and keys that never go on the
// wire); the others are secrets an echo must not return.
var wirePublic = []string{providers.FieldUsername, providers.FieldAccessKeyID, providers.FieldCertificate, providers.FieldCAChain, providers.FieldPrivateKey}

// TestEveryInjectorSendsTheValueItScrubs: for every registered injector
// and every secret field it reads, a value that begins or ends with a
// space or a tab (a key pasted with a trailing space into Vault or a
// static file, a token endpoint's answer) or holds a character that is
// not ASCII is either refused as the value's fault (the gateway drops
// the credential, answers 503 and sends nothing), or reaches an HTTP/1.1
// upstream in a form the response scrubber finds: an upstream echoing
// everything it received (request line, header fields as it parsed
// them, and as a server reading them as ISO-8859-1 echoes them, body)
// has no trace of the value left once the scrubber built from the
// credential ran over it. HTTP drops whitespace around a header field's
// value (Go's client when writing, servers when reading), so before,
// bearer, header and the header templates of the plugins (anthropic,
// openai, headers...) sent "tok" for a credential " tok" or "tok ",
// which the scrubber, knowing only the credential's bytes, let through
// to the client in an echo; and "toké" was echoed as "tokÃ©".
func TestEveryInjectorSendsTheValueItScrubs(t *testing.T) {
	edPEM, certPEM, keyPEM := testKeys(t)
	const (
		tok   = "tok-0123456789abcdef"
		ddAPI = "0123456789abcdef0123456789abcdef"
		ddApp = "0123456789abcdef0123456789abcdef01234567"
		sid   = "AC0123456789abcdef0123456789abcdef"
		azKey = "c2VjcmV0LWtleS1vZi10aGUtc3RvcmFnZS1hY2NvdW50"
		api   = "https://api.example.com/v1/items"
	)
	type wireCase struct {
		settings, url string
		good          []string
		wl            identity.Workload
	}
	cases := map[string]wireCase{
		"anthropic":       {url: "https://api.anthropic.com/v1/messages", good: []string{"token", tok}},
		"azure-sharedkey": {url: "https://acmereports.blob.core.windows.net/c/b", good: []string{"account_key", azKey}},
		"basic":           {url: api, good: []string{"username", "user-0123456789", "password", "pass-0123456789"}},
		"bearer":          {url: api, good: []string{"token", tok}},
		"datadog":         {url: "https://api.datadoghq.com/api/v1/validate", good: []string{"api_key", ddAPI, "app_key", ddApp}},
		"gemini":          {url: "https://generativelanguage.googleapis.com/v1beta/models", good: []string{"token", tok}},
		"header":          {settings: "name: X-Api-Key", url: api, good: []string{"token", tok}},
		"headers":         {settings: "headers: {X-Api-Key: '{{.token}}', X-Auth: 'Key {{.other}}'}", url: api, good: []string{"token", tok, "other", "other-0123456789"}},
		"hmac":            {settings: "string_to_sign: '{{.method}}'\nsignature: {header: X-Sig}", url: api, good: []string{"secret", "s3cr3t-0123456789"}},
		"httpsig":         {settings: "{key_id: k}", url: api, good: []string{"private_key", edPEM}},
		"oci-token":       {settings: ociRealm(t), url: "https://registry.example.com/v2/app/manifests/v1", good: []string{"username", "user-0123456789", "password", "pass-0123456789"}},
		"openai":          {url: "https://api.openai.com/v1/models", good: []string{"token", tok}},
		"placeholder":     {url: api, good: []string{"token", tok}},
		"query":           {settings: "param: key", url: api, good: []string{"token", tok}},
		"sigv4":           {url: "https://bucket.s3.eu-west-1.amazonaws.com/key.txt", good: []string{"access_key_id", "AKIAEXAMPLE0123", "secret_access_key", "secret-0123456789abcdef", "session_token", "session-0123456789abcdef"}},
		"slack":           {url: "https://slack.com/api/auth.test", good: []string{"token", "xoxb-1-abc0123456789"}},
		"stripe":          {settings: "accounts: {billing: acct_1Eu}", url: "https://api.stripe.com/v1/charges", good: []string{"token", "sk_test_abc0123456789"}, wl: identity.Workload{Name: "billing"}},
		"tlsclient":       {url: api, good: []string{"certificate", string(certPEM), "private_key", string(keyPEM)}},
		"twilio":          {url: "https://api.twilio.com/2010-04-01/Accounts/-/Messages.json", good: []string{"account_sid", sid, "auth_token", tok}},
	}
	var listed []string
	for k := range cases {
		listed = append(listed, k)
	}
	if names := injectors.Names(); !slices.Equal(names, slices.Sorted(slices.Values(listed))) {
		t.Fatalf("the table must list every registered injector: registered %v, listed %v", names, slices.Sorted(slices.Values(listed)))
	}

	// The upstream: it answers with everything it received, as it
	// parsed it, and the header fields once more as a server reading
	// them as ISO-8859-1 (Python's http.server) echoes them in UTF-8.
	var echo bytes.Buffer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %s\n", r.Method, r.RequestURI)
		_ = r.Header.Write(&b)
		for name, vv := range r.Header {
			for _, v := range vv {
				latin1 := make([]rune, len(v))
				for i := range len(v) {
					latin1[i] = rune(v[i])
				}
				fmt.Fprintf(&b, "%s: %s\n", name, string(latin1))
			}
		}
		body, _ := io.ReadAll(r.Body)
		b.Write(body)
		_, _ = w.Write(b.Bytes())
	}))
	t.Cleanup(srv.Close)
	send := func(t *testing.T, r *http.Request) string {
		t.Helper()
		r = r.Clone(r.Context())
		r.RequestURI = ""
		r.URL.Scheme, r.URL.Host = "http", srv.Listener.Addr().String()
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		defer resp.Body.Close()
		echo.Reset()
		_, _ = io.Copy(&echo, resp.Body)
		return echo.String()
	}

	failed, total := 0, 0
	for _, name := range injectors.Names() {
		tc := cases[name]
		t.Run(name, func(t *testing.T) {
			inj, err := injectortest.Load(t, name, tc.settings)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			apply := func(fields []string) (*http.Request, error) {
				r := httptest.NewRequest(http.MethodGet, tc.url, nil)
				return r, injectors.ApplyFor(inj, r, injectortest.Cred(fields...), tc.wl)
			}
			if _, err := apply(tc.good); err != nil {
				t.Fatalf("the good credential: %v", err)
			}
			for i := 0; i < len(tc.good); i += 2 {
				field, v := tc.good[i], tc.good[i+1]
				if slices.Contains(wirePublic, field) {
					continue
				}
				for _, spaced := range []string{" " + v, v + " ", "\t" + v, v + "\t", "  " + v + "  ", v + "é", "ü" + v, v + "\u00a0"} {
					total++
					fields := slices.Clone(tc.good)
					fields[i+1] = spaced
					r, err := apply(fields)
					if err != nil {
						if f := injectors.FaultOf(err); f != injectors.FaultValue {
							failed++
							t.Errorf("%s %q: refused with fault %q, want %q (the credential's value is at fault): %v", field, spaced, f, injectors.FaultValue, err)
						}
						continue
					}
					got := send(t, r)
					var secrets []providers.Secret
					for j := 0; j < len(fields); j += 2 {
						if !slices.Contains(wirePublic, fields[j]) {
							secrets = append(secrets, providers.NewSecret(fields[j+1]))
						}
					}
					scrubbed, _ := transform.NewScrubber(secrets, transform.ScrubOptions{}).Bytes([]byte(got))
					if strings.Contains(string(scrubbed), strings.Trim(v, " \t")) {
						failed++
						t.Errorf("%s %q: sent, and an upstream echoing what it received returns the value past the scrubber:\n%s", field, spaced, scrubbed)
					}
				}
			}
		})
	}
	t.Logf("%d of %d cases failed", failed, total)
}
