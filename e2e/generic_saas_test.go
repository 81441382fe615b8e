package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/saastest"
)

// genericSaaSPolicy is the catalogue's generic-injector rules
// (examples/saas.yaml's atlassian, shopify and pagerduty, examples/
// github.yaml's PAT rule, and an api-key header for Azure OpenAI) with
// the hosts on the fake. startEnv renders it as a text/template, hence
// the quoted {{.token}}.
const genericSaaSPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  atlassian: {hosts: [acme.atlassian.net], allow_private: true}
  shopify: {hosts: [acme.myshopify.com], allow_private: true}
  pagerduty: {hosts: [api.pagerduty.com], allow_private: true}
  github-api: {hosts: [api.github.com], allow_private: true}
  azure-openai: {hosts: [acme.openai.azure.com], allow_private: true}
credentials:
  atlassian-token:
    provider: static
    fields:
      username: {env: E2E_ATLASSIAN_EMAIL}
      password: {env: E2E_ATLASSIAN_TOKEN}
  shopify-token: {provider: static, env: E2E_SHOPIFY_TOKEN}
  pagerduty-token: {provider: static, env: E2E_PAGERDUTY_TOKEN}
  github-pat: {provider: static, env: E2E_GITHUB_PAT}
  azure-openai-key: {provider: static, env: E2E_AZURE_OPENAI_KEY}
rules:
  - name: atlassian
    from: local
    to: atlassian
    paths: [/rest/api/3/*]
    inject: {credential: atlassian-token, as: basic}
  - name: shopify
    from: local
    to: shopify
    paths: [/admin/api/*]
    inject: {credential: shopify-token, as: header, name: X-Shopify-Access-Token}
  - name: pagerduty
    from: local
    to: pagerduty
    inject: {credential: pagerduty-token, as: header, name: Authorization, value: "Token token={{"{{.token}}"}}"}
  - name: github-pat
    from: local
    to: github-api
    paths: [/user]
    inject: {credential: github-pat, as: bearer}
  - name: azure-openai
    from: local
    to: azure-openai
    methods: [POST]
    paths: [/openai/deployments/*]
    inject: {credential: azure-openai-key, as: header, name: api-key}
default: deny
`

// TestGenericSaaS: the catalogue rows served by generic injectors
// (Atlassian Basic, Shopify, PagerDuty, a GitHub PAT, Azure OpenAI),
// through the gateway to internal/saastest, which checks each
// credential where the service documents it. The client sends its own
// placeholder in the same header; the fake, which refuses a repeated
// credential field, must see the real value alone.
func TestGenericSaaS(t *testing.T) {
	t.Parallel()
	const (
		atlEmail = "ops@acme.example"
		atlToken = "ATATT3xFfGF0e2eAtlassianToken"
		shopify  = "shpat_e2e0123456789abcdef0123456789"
		pd       = "u+e2ePagerDutyKey0123"
		pat      = "github_pat_11E2E0123456789abcdef"
		aoai     = "e2e0123456789abcdef0123456789ab"
	)
	hosts := []string{"acme.atlassian.net", "acme.myshopify.com", "api.pagerduty.com", "api.github.com", "acme.openai.azure.com"}
	leaf, err := originCA.Leaf(append(hosts, "127.0.0.1")...)
	if err != nil {
		t.Fatal(err)
	}
	fake := saastest.New(saastest.Options{Certificate: &leaf, AtlassianEmail: atlEmail, AtlassianToken: atlToken,
		ShopifyToken: shopify, PagerDutyToken: pd, GitHubPAT: pat, AzureOpenAIKey: aoai})
	t.Cleanup(fake.Close)
	reportPeer(t, "generic saas: fake Atlassian, Shopify, PagerDuty, GitHub (PAT) and Azure OpenAI (internal/saastest) at %s", fake.URL)
	resolve := map[string]string{}
	for _, h := range hosts {
		resolve[h+":443"] = fake.Addr
	}
	e := startEnv(t, envOptions{
		Policy:  genericSaaSPolicy,
		Resolve: resolve,
		Env: []string{"E2E_ATLASSIAN_EMAIL=" + atlEmail, "E2E_ATLASSIAN_TOKEN=" + atlToken, "E2E_SHOPIFY_TOKEN=" + shopify,
			"E2E_PAGERDUTY_TOKEN=" + pd, "E2E_GITHUB_PAT=" + pat, "E2E_AZURE_OPENAI_KEY=" + aoai},
	})
	e.secrets = append(e.secrets, atlToken, shopify, pd, pat, aoai)
	c := newGoClient(t, e.proxyURL, gwCACert, false)
	for _, tc := range []struct {
		service, method, url string
		header               map[string]string
		basic                bool
		want                 int
	}{
		{"atlassian", "GET", "https://acme.atlassian.net/rest/api/3/myself", nil, true, 200},
		{"shopify", "GET", "https://acme.myshopify.com/admin/api/2025-01/shop.json", map[string]string{"X-Shopify-Access-Token": "placeholder"}, false, 200},
		{"pagerduty", "GET", "https://api.pagerduty.com/incidents", map[string]string{"Authorization": "Token token=placeholder"}, false, 200},
		{"github", "GET", "https://api.github.com/user", map[string]string{"Authorization": "token placeholder"}, false, 200},
		{"azure-openai", "POST", "https://acme.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", map[string]string{"api-key": "placeholder"}, false, 200},
		// The service's own refusal comes back: the rule does not add
		// the api-version Azure OpenAI requires.
		{"azure-openai", "POST", "https://acme.openai.azure.com/openai/deployments/gpt-4o/chat/completions", nil, false, 404},
	} {
		req, err := http.NewRequest(tc.method, tc.url, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		if tc.basic {
			req.SetBasicAuth("placeholder@acme.example", "placeholder")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.service, tc.url, resp.StatusCode, b, tc.want)
		}
	}
	seen := map[string]int{}
	for _, s := range fake.Requests() {
		seen[s.Service]++
		for _, vs := range s.Header {
			for _, v := range vs {
				if strings.Contains(v, "placeholder") {
					t.Errorf("%s %s: the client's placeholder reached the service: %q", s.Service, s.Path, v)
				}
			}
		}
	}
	want := map[string]int{"atlassian": 1, "shopify": 1, "pagerduty": 1, "github": 1, "azure-openai": 2}
	for svc, n := range want {
		if seen[svc] != n {
			t.Errorf("requests per service %v, want %v", seen, want)
			break
		}
	}
}
