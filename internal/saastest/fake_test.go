package saastest_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/saastest"
)

// TestFakeRefusesWrongCredentials: each service of the fake accepts its
// real credential where the service documents it and refuses a wrong,
// missing or misplaced one with the service's own status.
func TestFakeRefusesWrongCredentials(t *testing.T) {
	f := saastest.New(saastest.Options{
		StripeKey:        "sk_test_right",
		TwilioAccountSID: "AC0123", TwilioKeySID: "SK0123", TwilioKeySecret: "key-secret", TwilioAuthToken: "auth-token",
		SlackBotToken: "xoxb-right",
		DatadogAPIKey: "dd-api", DatadogAppKey: "dd-app",
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
				r.Header.Set(k, v)
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
