package azure_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/azuretest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/azure"
	"github.com/credgate/credgate/providers/providertest"
)

const (
	miClientID = "7b1e4c3a-9d2f-4e5a-8b6c-1d2e3f4a5b6c"
	miObjectID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	miResID    = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/credgate"
	miHeader   = "app-service-identity-header-secret"
)

func newIMDS(t *testing.T, opts azuretest.IMDSOptions) *azuretest.IMDS {
	t.Helper()
	m := azuretest.NewIMDS(opts)
	t.Cleanup(m.Close)
	m.AddIdentity(azuretest.ManagedIdentity{ClientID: miClientID, ObjectID: miObjectID, ResourceID: miResID})
	return m
}

// miToken checks that cred holds a token the fake issued to identity for
// storage by variant, cached until a minute before it expires.
func miToken(t *testing.T, m *azuretest.IMDS, cred *providers.Credential, identity, variant string) {
	t.Helper()
	tok, ok := cred.Field(providers.FieldToken)
	if !ok {
		t.Fatal("no token field")
	}
	in, ok := m.TokenInfo(tok.Reveal())
	if !ok || in.Identity != identity || in.Resource != storage || in.Variant != variant {
		t.Errorf("token issued %+v (known %v), want %s's for %s by %s", in, ok, identity, storage, variant)
	}
	if d := time.Until(cred.Expiry); d < 57*time.Minute || d > time.Hour {
		t.Errorf("expiry in %s, want about an hour less the margin (from expires_on)", d)
	}
}

// TestManagedIdentityIMDS gets tokens from the IMDS fake for the
// system-assigned identity and a user-assigned identity named by each of
// its three IDs; the fake requires Metadata: true, no X-Forwarded-For,
// an api-version and resource, and at most one ID naming an assigned
// identity.
func TestManagedIdentityIMDS(t *testing.T) {
	m := newIMDS(t, azuretest.IMDSOptions{SystemAssigned: true, Resources: []string{storage}})
	for _, tc := range []struct{ name, mi, identity string }{
		{"system-assigned", "{}", "system"},
		{"client_id", "{client_id: " + miClientID + "}", miClientID},
		{"object_id", "{object_id: " + miObjectID + "}", miClientID},
		{"msi_res_id", "{msi_res_id: " + miResID + "}", miClientID},
		{"source imds explicitly", "{source: imds, client_id: " + strings.ToUpper(miClientID) + "}", miClientID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := load(t, fmt.Sprintf("resource: %s\nmanaged_identity: %s\n", storage, strings.Replace(tc.mi, "{", "{endpoint: "+m.URL+", ", 1)), nil)
			if strings.HasSuffix(tc.mi, "{}") {
				p = load(t, fmt.Sprintf("resource: %s\nmanaged_identity: {endpoint: %s}\n", storage, m.URL), nil)
			}
			cred, err := fetch(p, identity.Workload{})
			if err != nil {
				t.Fatalf("fetch: %v (the fake refused %q)", err, m.Refused())
			}
			miToken(t, m, cred, tc.identity, "imds")
		})
	}
	if r := m.Refused(); len(r) != 0 {
		t.Errorf("the fake refused %q", r)
	}

	// scope instead of resource: the resource is the scope without /.default.
	p := load(t, fmt.Sprintf("scope: %s/.default\nmanaged_identity: {endpoint: %s}\n", storage, m.URL), nil)
	cred, err := fetch(p, identity.Workload{})
	if err != nil {
		t.Fatal(err)
	}
	miToken(t, m, cred, "system", "imds")
}

// TestManagedIdentityAppService gets tokens from the App Service variant
// (IDENTITY_ENDPOINT and IDENTITY_HEADER in the environment): source auto
// picks it, the secret goes in X-IDENTITY-HEADER, object_id and
// msi_res_id are sent under App Service's names (principal_id,
// mi_res_id), and expires_on alone (a string) sets the expiry.
func TestManagedIdentityAppService(t *testing.T) {
	m := newIMDS(t, azuretest.IMDSOptions{SystemAssigned: true, AppServiceHeader: miHeader})
	t.Setenv(azure.EnvIdentityEndpoint, m.AppServiceURL())
	t.Setenv(azure.EnvIdentityHeader, miHeader)
	for _, tc := range []struct{ name, mi, identity string }{
		{"system-assigned", "{}", "system"},
		{"client_id", "{client_id: " + miClientID + "}", miClientID},
		{"object_id as principal_id", "{object_id: " + miObjectID + "}", miClientID},
		{"msi_res_id as mi_res_id", "{source: app_service, msi_res_id: " + miResID + "}", miClientID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := load(t, fmt.Sprintf("resource: %s\nmanaged_identity: %s\n", storage, tc.mi), nil)
			if !strings.Contains(fmt.Sprint(p), "app_service") {
				t.Errorf("provider %v, want the app_service source", p)
			}
			cred, err := fetch(p, identity.Workload{})
			if err != nil {
				t.Fatalf("fetch: %v (the fake refused %q)", err, m.Refused())
			}
			miToken(t, m, cred, tc.identity, "app_service")
		})
	}

	// A wrong header: refused, the error says which variable, never the value.
	t.Setenv(azure.EnvIdentityHeader, "stale-header-value")
	p := load(t, fmt.Sprintf("resource: %s\nmanaged_identity: {}\n", storage), nil)
	_, err := fetch(p, identity.Workload{})
	if err == nil || errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), azure.EnvIdentityHeader) {
		t.Errorf("wrong header: %v, want a refusal naming %s", err, azure.EnvIdentityHeader)
	}
	noSecret(t, err, "stale-header-value", miHeader)

	// source app_service without the environment: not configured, and
	// CheckSources says so.
	t.Setenv(azure.EnvIdentityEndpoint, "")
	t.Setenv(azure.EnvIdentityHeader, "")
	p = load(t, fmt.Sprintf("resource: %s\nmanaged_identity: {source: app_service}\n", storage), nil)
	if probs := p.(providers.SourceChecker).CheckSources(); len(probs) != 2 {
		t.Errorf("CheckSources: %v, want both variables reported", probs)
	}
	if _, err := fetch(p, identity.Workload{}); !errors.Is(err, providers.ErrNotConfigured) {
		t.Errorf("no environment: %v, want ErrNotConfigured", err)
	}
	// An IDENTITY_ENDPOINT in plain http off the host is refused: the
	// identity header would cross the network in clear.
	t.Setenv(azure.EnvIdentityEndpoint, "http://10.1.2.3:8081/msi/token")
	t.Setenv(azure.EnvIdentityHeader, miHeader)
	p = load(t, fmt.Sprintf("resource: %s\nmanaged_identity: {source: app_service}\n", storage), nil)
	if _, err := fetch(p, identity.Workload{}); !errors.Is(err, providers.ErrNotConfigured) || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("IDENTITY_ENDPOINT off the host: %v, want ErrNotConfigured and plain http", err)
	}
	// One with a query of its own keeps it.
	t.Setenv(azure.EnvIdentityEndpoint, m.AppServiceURL()+"?extra=1")
	p = load(t, fmt.Sprintf("resource: %s\nmanaged_identity: {}\n", storage), nil)
	if _, err := fetch(p, identity.Workload{}); err != nil {
		t.Errorf("IDENTITY_ENDPOINT with a query: %v (refused %q)", err, m.Refused())
	}
	t.Setenv(azure.EnvIdentityEndpoint, "")
	t.Setenv(azure.EnvIdentityHeader, "")

	// source auto without the environment is IMDS.
	p = load(t, fmt.Sprintf("resource: %s\nmanaged_identity: {}\n", storage), nil)
	if !strings.Contains(fmt.Sprint(p), "imds") {
		t.Errorf("auto without IDENTITY_ENDPOINT: %v, want imds", p)
	}
}

// TestManagedIdentityRetries: the classes Microsoft's retry guidance
// names transient (404 while IMDS updates or an identity propagates,
// 410, 429, 5xx, 408) are retried within a fetch and succeed when the
// endpoint recovers; past the retries they are ErrUnavailable (503 and
// the cache's backoff). 4xx design-time errors are not retried.
func TestManagedIdentityRetries(t *testing.T) {
	m := newIMDS(t, azuretest.IMDSOptions{SystemAssigned: true})
	settings := fmt.Sprintf("resource: %s\nmanaged_identity: {endpoint: %s}\n", storage, m.URL)
	for _, status := range []int{http.StatusNotFound, http.StatusGone, http.StatusTooManyRequests, http.StatusRequestTimeout,
		http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			p := load(t, settings, nil)
			azure.SetRetryBase(p, time.Millisecond)
			m.FailNext(status, 3) // three failures, then the fourth attempt works
			before := m.Requests()
			if _, err := fetch(p, identity.Workload{}); err != nil {
				t.Errorf("after three %d: %v, want the fourth attempt to work", status, err)
			}
			if n := m.Requests() - before; n != 4 {
				t.Errorf("%d requests, want 4", n)
			}
			m.FailNext(status, 4)
			_, err := fetch(p, identity.Workload{})
			if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), fmt.Sprint(status)) {
				t.Errorf("four %d: %v, want ErrUnavailable naming the status", status, err)
			}
			m.FailNext(0, 0)
		})
	}
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden} {
		p := load(t, settings, nil)
		azure.SetRetryBase(p, time.Millisecond)
		m.FailNext(status, 1)
		before := m.Requests()
		_, err := fetch(p, identity.Workload{})
		if err == nil || errors.Is(err, providers.ErrUnavailable) || m.Requests()-before != 1 {
			t.Errorf("%d: %v after %d requests, want one request and a refusal", status, err, m.Requests()-before)
		}
	}
	m.FailNext(0, 0)
}

// TestManagedIdentityRefusals: each refusal says what to change.
func TestManagedIdentityRefusals(t *testing.T) {
	m := newIMDS(t, azuretest.IMDSOptions{Resources: []string{storage}})
	for _, tc := range []struct{ name, settings, want string }{
		{"no system-assigned identity", "resource: " + storage + "\nmanaged_identity: {endpoint: EP}", "no system-assigned identity"},
		{"user-assigned identity not assigned", "resource: " + storage + "\nmanaged_identity: {endpoint: EP, client_id: 11111111-2222-4333-8444-555555555555}", "is not assigned"},
		{"unknown resource", "resource: https://vault.azure.net\nmanaged_identity: {endpoint: EP, client_id: " + miClientID + "}", "not known to the tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fetch(load(t, strings.Replace(tc.settings, "EP", m.URL, 1), nil), identity.Workload{})
			if err == nil || errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want a refusal saying %q", err, tc.want)
			}
		})
	}

	// Nothing listens: transient, and says where managed identity works.
	p := load(t, "resource: "+storage+"\nmanaged_identity: {endpoint: http://127.0.0.1:1}\n", nil)
	azure.SetRetryBase(p, time.Millisecond)
	if _, err := fetch(p, identity.Workload{}); !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("no server: %v", err)
	}

	// An endpoint that never answers (off Azure, IMDS blocked): one
	// attempt, not four, each waiting the whole timeout.
	stalled := make(chan struct{})
	var hits int
	var mu sync.Mutex
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		select {
		case <-stalled:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stalled); hang.Close() })
	p = load(t, "resource: "+storage+"\nmanaged_identity: {endpoint: "+hang.URL+"}\ntimeout: 100ms\n", nil)
	azure.SetRetryBase(p, time.Millisecond)
	if _, err := fetch(p, identity.Workload{}); !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("a silent endpoint: %v, want ErrUnavailable and timeout", err)
	}
	mu.Lock()
	if hits != 1 {
		t.Errorf("%d attempts at a silent endpoint, want 1", hits)
	}
	mu.Unlock()

	// A redirect is never followed.
	var followed int
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed++ }))
	t.Cleanup(target.Close)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/elsewhere", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	_, err := fetch(load(t, "resource: "+storage+"\nmanaged_identity: {endpoint: "+redirect.URL+"}\n", nil), identity.Workload{})
	if err == nil || !strings.Contains(err.Error(), "redirect") || followed != 0 {
		t.Errorf("redirect: %v (followed %d), want a refusal and no request to the target", err, followed)
	}

	// Answers the gateway cannot use.
	for _, tc := range []struct{ body, want string }{
		{`{"token_type":"Bearer","expires_on":"1"}`, "no access_token"},
		{`{"access_token":"x","token_type":"Bearer"}`, "neither expires_on nor expires_in"},
		{`{"access_token":"x","token_type":"PoP","expires_in":"3599"}`, "not Bearer"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(tc.body)) }))
		_, err := fetch(load(t, "resource: "+storage+"\nmanaged_identity: {endpoint: "+srv.URL+"}\n", nil), identity.Workload{})
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.body, err, tc.want)
		}
	}
}

// TestManagedIdentityExpiry: expires_on (absolute, a string or a
// number) wins; expires_in (relative) is used without it; a short
// lifetime is cached for half of it.
func TestManagedIdentityExpiry(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name, body string
		want       time.Duration // from now, give or take a few seconds
	}{
		{"expires_on string", fmt.Sprintf(`{"access_token":"x","expires_on":"%d","expires_in":"86399"}`, now.Add(time.Hour).Unix()), time.Hour - time.Minute},
		{"expires_on number", fmt.Sprintf(`{"access_token":"x","expires_on":%d}`, now.Add(2*time.Hour).Unix()), 2*time.Hour - time.Minute},
		{"expires_in string", `{"access_token":"x","expires_in":"1800"}`, 30*time.Minute - time.Minute},
		{"expires_in number", `{"access_token":"x","expires_in":1800}`, 30*time.Minute - time.Minute},
		{"short", `{"access_token":"x","expires_in":"60"}`, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(tc.body)) }))
			defer srv.Close()
			cred, err := fetch(load(t, "resource: "+storage+"\nmanaged_identity: {endpoint: "+srv.URL+"}\n", nil), identity.Workload{})
			if err != nil {
				t.Fatal(err)
			}
			if d := cred.Expiry.Sub(now) - tc.want; d < -5*time.Second || d > 5*time.Second {
				t.Errorf("expiry %s from now, want %s", cred.Expiry.Sub(now), tc.want)
			}
		})
	}
}

// TestManagedIdentityValidate: each bad combination is refused with the
// setting and the fix.
func TestManagedIdentityValidate(t *testing.T) {
	r := "resource: " + storage + "\n"
	for _, tc := range []struct{ settings, want string }{
		{r + "managed_identity: {client_id: " + miClientID + ", object_id: " + miObjectID + "}", "at most one of client_id, object_id and msi_res_id"},
		{r + "managed_identity: {client_id: " + miClientID + ", msi_res_id: " + miResID + "}", "at most one of"},
		{r + "managed_identity: {object_id: " + miObjectID + ", msi_res_id: " + miResID + "}", "at most one of"},
		{r + "managed_identity: {client_id: not-a-guid}", "is not a client ID"},
		{r + "managed_identity: {object_id: x}", "is not an object"},
		{r + "managed_identity: {msi_res_id: credgate}", "userAssignedIdentities"},
		{r + "managed_identity: {source: arc}", "not auto, imds or app_service"},
		{r + "managed_identity: {endpoint: http://10.0.0.1}", "plain http"},
		{r + "managed_identity: {endpoint: 'http://169.254.169.254/metadata/identity/oauth2/token'}", "without a path"},
		{r + "managed_identity: {endpoint: 'http://127.0.0.1:1?x=1'}", "query"},
		{r + "tenant: " + tenant + "\nmanaged_identity: {}", "tenant is not used with managed_identity"},
		{r + "client_id: " + miClientID + "\nmanaged_identity: {}", "managed_identity: {client_id: " + miClientID + "}"},
		{r + "authority_host: usgov\nmanaged_identity: {}", "authority_host is not used"},
		{r + "ca_cert: /etc/ssl/x.pem\nmanaged_identity: {}", "ca_cert"},
		{r + "tenant: " + tenant + "\nclient_id: " + clientID + "\nclient_secret: {credential: s}\nmanaged_identity: {}", "exactly one of client_secret, client_certificate, federated"},
		{"managed_identity: {}", "set resource"},
		{"scope: https://graph.microsoft.com/User.Read\nmanaged_identity: {}", "/.default"},
	} {
		if _, err := tryLoad(t, tc.settings, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.settings, err, tc.want)
		}
	}
	for _, ok := range []string{
		r + "managed_identity: {}",
		r + "managed_identity: {endpoint: 'http://169.254.169.254'}",
		r + "managed_identity: {source: app_service, endpoint: 'http://localhost:41741/MSI/token/'}",
	} {
		if _, err := tryLoad(t, ok, nil); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// TestManagedIdentityConformance runs the checks every provider passes
// against the IMDS fake.
func TestManagedIdentityConformance(t *testing.T) {
	m := newIMDS(t, azuretest.IMDSOptions{SystemAssigned: true})
	settings := fmt.Sprintf("resource: %s\nmanaged_identity: {endpoint: %s, client_id: %s}\ntimeout: 2s\n", storage, m.URL, miClientID)
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     azure.Name,
		Settings: settings,
		Bad: []providertest.BadSettings{
			{Settings: "resource: r\nmanaged_identity: {client_id: " + miClientID + ", object_id: " + miObjectID + "}", Want: "at most one of"},
		},
		Issued: m.Grants,
		Stalled: func(url string) string {
			return strings.Replace(settings, m.URL, url, 1)
		},
		// The identity endpoint refuses (400, as for an identity
		// unassigned meanwhile) until switched back.
		Unauthorized: func(on bool) {
			if on {
				m.FailNext(http.StatusBadRequest, 1<<30)
			} else {
				m.FailNext(0, 0)
			}
		},
		// expires_on and expires_in state the same shape; expires_on
		// decides, and an answer without either is refused.
		Lifetime:      m.SetLifetime,
		LifetimeField: "expires_on",
	})
}
