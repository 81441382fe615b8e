package e2e

import (
	"net/http"
	"testing"
)

const headersPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
credentials:
  two-keys:
    provider: static
    fields:
      api_key: {env: E2E_DD_API_KEY}
      app_key: {env: E2E_DD_APP_KEY}
rules:
  - name: datadog-style
    from: local
    to: api
    paths: [/dd/*]
    inject:
      credential: two-keys
      as: headers
      headers:
        DD-API-KEY: "{{"{{"}}.api_key}}"
        DD-APPLICATION-KEY: "{{"{{"}}.app_key}}"
  - name: stripe-style
    from: local
    to: api
    paths: [/stripe/*]
    inject:
      credential: two-keys
      as: headers
      headers:
        Authorization: "Bearer {{"{{"}}.api_key}}"
        Stripe-Version: "2024-06-20"
        Stripe-Account: acct_e2e
  - name: missing-field
    from: local
    to: api
    paths: [/broken/*]
    inject:
      credential: two-keys
      as: headers
      headers:
        DD-API-KEY: "{{"{{"}}.api_key}}"
        X-Other: "{{"{{"}}.not_there}}"
default: deny
`

// TestHeadersInjector: several headers from one credential (static
// fields:) through the gateway; every client copy of every name is
// replaced, other headers pass, and a missing second field stops the
// request before anything is sent.
func TestHeadersInjector(t *testing.T) {
	t.Parallel()
	const apiKey, appKey = "e2e-dd-api-key-4f1c0a", "e2e-dd-app-key-93be27"
	e := startEnv(t, envOptions{Policy: headersPolicy, Env: []string{"E2E_DD_API_KEY=" + apiKey, "E2E_DD_APP_KEY=" + appKey}})
	e.secrets = append(e.secrets, apiKey, appKey)
	c := newGoClient(t, e.proxyURL, gwCACert, false)
	send := func(path string, h http.Header) int {
		t.Helper()
		req, err := http.NewRequest("GET", "https://api.origin.test"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if st := send("/dd/v1/validate", http.Header{"Dd-Api-Key": {"placeholder", "second"}, "Accept": {"application/json"}}); st != http.StatusOK {
		t.Fatalf("datadog-style: %d", st)
	}
	got := e.origin.one(t, "/dd/v1/validate").Header
	for name, want := range map[string][]string{"Dd-Api-Key": {apiKey}, "Dd-Application-Key": {appKey}, "Accept": {"application/json"}} {
		if v := got.Values(name); len(v) != len(want) || v[0] != want[0] {
			t.Errorf("origin saw %s = %q, want %q", name, v, want)
		}
	}

	if st := send("/stripe/v1/charges", http.Header{"Stripe-Version": {"2019-01-01"}, "Authorization": {"Bearer sk_placeholder"},
		"Idempotency-Key": {"idem-1"}}); st != http.StatusOK {
		t.Fatalf("stripe-style: %d", st)
	}
	got = e.origin.one(t, "/stripe/v1/charges").Header
	for name, want := range map[string]string{"Authorization": "Bearer " + apiKey, "Stripe-Version": "2024-06-20",
		"Stripe-Account": "acct_e2e", "Idempotency-Key": "idem-1"} {
		if v := got.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("origin saw %s = %q, want [%q]", name, v, want)
		}
	}

	if st := send("/broken/x", http.Header{}); st != http.StatusBadGateway {
		t.Errorf("a missing second field: %d, want 502", st)
	}
	if n := len(e.origin.byPath("/broken/x")); n != 0 {
		t.Errorf("the origin saw %d requests with a missing field, want 0", n)
	}
}
