package saastest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/saastest"
)

// TestFakeRefusesWrongCredentials: each service of the fake accepts its
// real credential where the service documents it and refuses a wrong,
// missing or misplaced one with the service's own status; a repeated
// credential field, a malformed Stripe-Version or form body is refused.
func TestFakeRefusesWrongCredentials(t *testing.T) {
	f := saastest.New(saastest.Options{
		StripeKey:        "sk_test_right",
		TwilioAccountSID: "AC0123", TwilioKeySID: "SK0123", TwilioKeySecret: "key-secret", TwilioAuthToken: "auth-token",
		SlackBotToken: "xoxb-right",
		DatadogAPIKey: "dd-api", DatadogAppKey: "dd-app",
		AtlassianEmail: "ops@acme.example", AtlassianToken: "atl-right", ShopifyToken: "shpat_right",
		PagerDutyToken: "pd-right", GitHubPAT: "github_pat_right", AzureOpenAIKey: "aoai-right",
	})
	t.Cleanup(f.Close)
	client := f.Client()
	type h = map[string]string
	tests := []struct {
		name, host, method, path, body string
		header                         h
		basic                          [2]string
		want                           int
		wantBody                       string
	}{
		{"stripe right key", "api.stripe.com", "GET", "/v1/customers/cus_1", "", h{"Authorization": "Bearer sk_test_right"}, [2]string{}, 200, ""},
		{"stripe wrong key", "api.stripe.com", "GET", "/v1/customers/cus_1", "", h{"Authorization": "Bearer sk_test_wrong"}, [2]string{}, 401, ""},
		{"stripe wrong key as Basic user", "api.stripe.com", "GET", "/v1/customers/cus_1", "", nil, [2]string{"sk_test_wrong", ""}, 401, ""},
		{"stripe no key", "api.stripe.com", "GET", "/v1/customers/cus_1", "", nil, [2]string{}, 401, ""},
		{"twilio API key", "api.twilio.com", "GET", "/2010-04-01/Accounts/AC0123.json", "", nil, [2]string{"SK0123", "key-secret"}, 200, ""},
		{"twilio auth token", "api.twilio.com", "GET", "/2010-04-01/Accounts/AC0123.json", "", nil, [2]string{"AC0123", "auth-token"}, 200, ""},
		{"twilio wrong secret", "api.twilio.com", "GET", "/2010-04-01/Accounts/AC0123.json", "", nil, [2]string{"SK0123", "wrong"}, 401, ""},
		{"twilio auth token with the key SID", "api.twilio.com", "GET", "/2010-04-01/Accounts/AC0123.json", "", nil, [2]string{"SK0123", "auth-token"}, 401, ""},
		{"twilio another account in the path", "api.twilio.com", "GET", "/2010-04-01/Accounts/AC9999.json", "", nil, [2]string{"SK0123", "key-secret"}, 404, ""},
		{"slack right bearer", "slack.com", "POST", "/api/auth.test", "", h{"Authorization": "Bearer xoxb-right"}, [2]string{}, 200, `"ok":true`},
		{"slack wrong bearer", "slack.com", "POST", "/api/auth.test", "", h{"Authorization": "Bearer xoxb-wrong"}, [2]string{}, 200, `"invalid_auth"`},
		{"slack right and wrong token", "slack.com", "POST", "/api/auth.test", "token=xoxb-wrong", h{"Authorization": "Bearer xoxb-right", "Content-Type": "application/x-www-form-urlencoded"}, [2]string{}, 200, `"invalid_auth"`},
		{"datadog both keys", "api.datadoghq.eu", "GET", "/api/v1/monitor", "", h{"DD-API-KEY": "dd-api", "DD-APPLICATION-KEY": "dd-app"}, [2]string{}, 200, ""},
		{"datadog validate with the API key", "api.datadoghq.eu", "GET", "/api/v1/validate", "", h{"DD-API-KEY": "dd-api"}, [2]string{}, 200, ""},
		{"datadog wrong application key", "api.datadoghq.eu", "GET", "/api/v1/monitor", "", h{"DD-API-KEY": "dd-api", "DD-APPLICATION-KEY": "wrong"}, [2]string{}, 403, ""},
		{"stripe dated version", "api.stripe.com", "GET", "/v1/customers/cus_1", "", h{"Authorization": "Bearer sk_test_right", "Stripe-Version": "2020-08-27"}, [2]string{}, 200, ""},
		{"stripe named version", "api.stripe.com", "GET", "/v1/customers/cus_1", "", h{"Authorization": "Bearer sk_test_right", "Stripe-Version": "2025-03-31.basil"}, [2]string{}, 200, ""},
		{"stripe malformed version", "api.stripe.com", "GET", "/v1/customers/cus_1", "", h{"Authorization": "Bearer sk_test_right", "Stripe-Version": "2020-8-27"}, [2]string{}, 400, "Invalid Stripe API version"},
		{"stripe version with a beta suffix", "api.stripe.com", "GET", "/v1/customers/cus_1", "", h{"Authorization": "Bearer sk_test_right", "Stripe-Version": "2025-03-31.Basil!"}, [2]string{}, 400, "Invalid Stripe API version"},
		// A "+" name adds a second field line: the client's value left
		// beside the injected one.
		{"stripe a second Authorization", "api.stripe.com", "GET", "/v1/customers/cus_1", "", h{"Authorization": "Bearer sk_test_right", "+Authorization": "Bearer sk_test_client"}, [2]string{}, 400, "more than once"},
		{"stripe a second Stripe-Account", "api.stripe.com", "GET", "/v1/customers/cus_1", "", h{"Authorization": "Bearer sk_test_right", "Stripe-Account": "acct_1", "+Stripe-Account": "acct_2"}, [2]string{}, 400, "more than once"},
		{"twilio malformed form body", "api.twilio.com", "POST", "/2010-04-01/Accounts/AC0123/Messages.json", "To=%zz", h{"Content-Type": "application/x-www-form-urlencoded"}, [2]string{"SK0123", "key-secret"}, 400, ""},
		{"datadog a second DD-API-KEY", "api.datadoghq.eu", "GET", "/api/v1/validate", "", h{"DD-API-KEY": "dd-api", "+DD-API-KEY": "client"}, [2]string{}, 400, "more than once"},
		{"atlassian right token", "acme.atlassian.net", "GET", "/rest/api/3/myself", "", nil, [2]string{"ops@acme.example", "atl-right"}, 200, ""},
		{"atlassian another e-mail", "acme.atlassian.net", "GET", "/rest/api/3/myself", "", nil, [2]string{"eve@acme.example", "atl-right"}, 401, "authenticated"},
		{"atlassian token as Bearer", "acme.atlassian.net", "GET", "/rest/api/3/myself", "", h{"Authorization": "Bearer atl-right"}, [2]string{}, 401, ""},
		{"shopify right token", "acme.myshopify.com", "GET", "/admin/api/2025-01/shop.json", "", h{"X-Shopify-Access-Token": "shpat_right"}, [2]string{}, 200, ""},
		{"shopify token as Bearer", "acme.myshopify.com", "GET", "/admin/api/2025-01/shop.json", "", h{"Authorization": "Bearer shpat_right"}, [2]string{}, 401, "Invalid API key"},
		{"shopify wrong token", "acme.myshopify.com", "GET", "/admin/api/2025-01/shop.json", "", h{"X-Shopify-Access-Token": "shpat_wrong"}, [2]string{}, 401, ""},
		{"pagerduty right token", "api.pagerduty.com", "GET", "/incidents", "", h{"Authorization": "Token token=pd-right"}, [2]string{}, 200, ""},
		{"pagerduty token as Bearer", "api.pagerduty.com", "GET", "/incidents", "", h{"Authorization": "Bearer pd-right"}, [2]string{}, 401, "Authentication failed"},
		{"github PAT as Bearer", "api.github.com", "GET", "/user", "", h{"Authorization": "Bearer github_pat_right"}, [2]string{}, 200, ""},
		{"github PAT as token", "api.github.com", "GET", "/user", "", h{"Authorization": "token github_pat_right"}, [2]string{}, 200, ""},
		{"github wrong PAT", "api.github.com", "GET", "/user", "", h{"Authorization": "Bearer github_pat_wrong"}, [2]string{}, 401, "Bad credentials"},
		{"github a second Authorization", "api.github.com", "GET", "/user", "", h{"Authorization": "Bearer github_pat_right", "+Authorization": "token placeholder"}, [2]string{}, 400, "more than once"},
		{"azure openai right key", "acme.openai.azure.com", "POST", "/openai/deployments/gpt/chat/completions?api-version=2024-10-21", "{}", h{"Api-Key": "aoai-right"}, [2]string{}, 200, ""},
		{"azure openai no api-version", "acme.openai.azure.com", "POST", "/openai/deployments/gpt/chat/completions", "{}", h{"Api-Key": "aoai-right"}, [2]string{}, 404, "Resource not found"},
		{"azure openai wrong key", "acme.openai.azure.com", "POST", "/openai/deployments/gpt/chat/completions?api-version=2024-10-21", "{}", h{"Api-Key": "aoai-wrong"}, [2]string{}, 401, "Access denied"},
		{"azure openai a second api-key", "acme.openai.azure.com", "POST", "/openai/deployments/gpt/chat/completions?api-version=2024-10-21", "{}", h{"Api-Key": "aoai-right", "+Api-Key": "placeholder"}, [2]string{}, 400, "more than once"},
		{"datadog keys swapped", "api.datadoghq.eu", "GET", "/api/v1/monitor", "", h{"DD-API-KEY": "dd-app", "DD-APPLICATION-KEY": "dd-api"}, [2]string{}, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(f.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			r, err := http.NewRequest(tt.method, u.String(), strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			r.Host = tt.host
			for k, v := range tt.header {
				if !strings.HasPrefix(k, "+") {
					r.Header.Set(k, v)
				}
			}
			for k, v := range tt.header {
				if name, ok := strings.CutPrefix(k, "+"); ok {
					r.Header.Add(name, v)
				}
			}
			if tt.basic[0] != "" {
				r.SetBasicAuth(tt.basic[0], tt.basic[1])
			}
			resp, err := client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want || !strings.Contains(string(b), tt.wantBody) {
				t.Errorf("%d %s, want %d with %q", resp.StatusCode, b, tt.want, tt.wantBody)
			}
		})
	}
}

// TestSlackRotatedTokenExpires: an access token issued by a refresh works
// until its expires_in and is then refused with token_expired, as Slack's
// token rotation does; so a provider that kept serving a cached token
// past its expiry would fail here rather than pass.
func TestSlackRotatedTokenExpires(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	f := saastest.New(saastest.Options{SlackClientID: "cid", SlackClientSecret: "csecret", SlackRefreshToken: "xoxe-1-first",
		SlackTokenLifetime: time.Hour, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	t.Cleanup(f.Close)
	post := func(path string, form url.Values, bearer string) string {
		t.Helper()
		r, err := http.NewRequest("POST", f.URL+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		r.Host = "slack.com"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := f.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	out := post("/api/oauth.v2.access", url.Values{"client_id": {"cid"}, "client_secret": {"csecret"},
		"grant_type": {"refresh_token"}, "refresh_token": {"xoxe-1-first"}}, "")
	var grant struct {
		OK          bool   `json:"ok"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(out), &grant); err != nil || !grant.OK {
		t.Fatalf("refresh: %s (%v)", out, err)
	}
	if got := post("/api/auth.test", nil, grant.AccessToken); !strings.Contains(got, `"ok":true`) {
		t.Fatalf("a fresh token: %s", got)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if got := post("/api/auth.test", nil, grant.AccessToken); !strings.Contains(got, `"token_expired"`) {
		t.Errorf("a token at its expiry: %s, want token_expired", got)
	}
	if got := post("/api/oauth.v2.access", url.Values{"client_id": {"cid"}, "client_secret": {"csecret"},
		"grant_type": {"refresh_token"}, "refresh_token": {"xoxe-1-first"}}, ""); !strings.Contains(got, "invalid_refresh_token") {
		t.Errorf("the spent refresh token again: %s, want invalid_refresh_token", got)
	}
}
