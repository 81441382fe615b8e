package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/stripe/stripe-go/v82"
	twilio "github.com/twilio/twilio-go"
	twclient "github.com/twilio/twilio-go/client"
	twapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/credgate/credgate/internal/saastest"
)

// saasPolicy puts Stripe, Twilio, Slack (rotating tokens) and Datadog
// behind their plugins. FAKE_URL and CA_FILE are replaced.
const saasPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  stripe:
    hosts: [api.stripe.com]
    allow_private: true
  twilio:
    hosts: [api.twilio.com]
    allow_private: true
  slack:
    hosts: [slack.com]
    allow_private: true
  datadog:
    hosts: [api.datadoghq.eu]
    allow_private: true
credentials:
  stripe-key:
    provider: static
    env: E2E_STRIPE_KEY
  twilio-key:
    provider: static
    fields:
      account_sid: {env: E2E_TWILIO_SID}
      api_key_sid: {env: E2E_TWILIO_KEY_SID}
      api_key_secret: {env: E2E_TWILIO_KEY_SECRET}
  slack-app:
    provider: static
    fields:
      client_secret: {env: E2E_SLACK_CLIENT_SECRET}
      refresh_token: {env: E2E_SLACK_REFRESH}
  slack-bot:
    provider: slack
    client_id: "1111.2222"
    source: slack-app
    token_url: FAKE_URL/api/oauth.v2.access
    ca_cert: CA_FILE
  slack-app-wrong-secret:
    provider: static
    fields:
      client_secret: {env: E2E_SLACK_WRONG_SECRET}
      refresh_token: {env: E2E_SLACK_REFRESH}
  slack-wrong:
    provider: slack
    client_id: "1111.2222"
    source: slack-app-wrong-secret
    token_url: FAKE_URL/api/oauth.v2.access
    ca_cert: CA_FILE
  datadog-keys:
    provider: static
    fields:
      api_key: {env: E2E_DD_API_KEY}
      app_key: {env: E2E_DD_APP_KEY}
  pk-key:
    provider: static
    env: E2E_STRIPE_PK
  stripe-wrong:
    provider: static
    env: E2E_STRIPE_WRONG
rules:
  - name: stripe-publishable
    from: local
    to: stripe
    paths: [/v1/customers/cus_pk]
    inject: {credential: pk-key, as: stripe}
  - name: stripe-wrong-key
    from: local
    to: stripe
    paths: [/v1/customers/cus_wrong]
    inject: {credential: stripe-wrong, as: stripe}
  - name: stripe
    from: local
    to: stripe
    methods: [GET, POST]
    paths: [/v1/customers, /v1/customers/*]
    inject:
      credential: stripe-key
      as: stripe
      accounts: {local: acct_1E2Elocal}
      version: 2025-03-31.basil
  - name: twilio
    from: local
    to: twilio
    methods: [POST]
    paths: [/2010-04-01/Accounts/-/Messages.json]
    inject: {credential: twilio-key, as: twilio}
  - name: slack
    from: local
    to: slack
    methods: [GET, POST]
    paths: [/api/auth.test, /api/chat.postMessage]
    inject: {credential: slack-bot, as: slack}
  - name: slack-wrong-secret
    from: local
    to: slack
    methods: [GET]
    paths: [/api/conversations.list]
    inject: {credential: slack-wrong, as: slack}
  - name: datadog
    from: local
    to: datadog
    methods: [GET]
    paths: [/api/v1/validate, /api/v2/*]
    inject: {credential: datadog-keys, as: datadog, site: datadoghq.eu}
default: deny
`

// TestSaaSPlugins drives stripe-go, twilio-go and slack-go, and net/http
// for Datadog, through the gateway to internal/saastest, which checks
// each service's credentials where the service documents them. The
// clients hold placeholders only (a placeholder key, the Account SID
// "-"); the fakes must see the real values and the gateway's output
// none of them.
func TestSaaSPlugins(t *testing.T) {
	t.Parallel()
	const (
		stripeKey   = "sk_test_51E2Es3cr3tStr1peK3y"
		stripePK    = "pk_test_51E2Epub1ishab1eK3y"
		stripeWrong = "sk_test_51E2Ewr0ngK3y"
		twilioSID   = "AC1234567890abcdef1234567890abcdef"
		twilioKey   = "SKabcdef1234567890abcdef1234567890"
		twilioSec   = "tw1l1os3cr3ttw1l1os3cr3ttw1l1os3"
		slackSec    = "s1acks3cr3tc1ient"
		slackFirst  = "xoxe-1-e2e-first-refresh"
		slackWrong  = "s1ackwr0ngs3cr3t"
		ddAPI       = "e2e0123456789abcdef0123456789abc"
		ddApp       = "e2e0123456789abcdef0123456789abcdef01234"
	)
	leaf, err := originCA.Leaf("api.stripe.com", "api.twilio.com", "slack.com", "api.datadoghq.eu", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	fake := saastest.New(saastest.Options{Certificate: &leaf, StripeKey: stripeKey,
		TwilioAccountSID: twilioSID, TwilioKeySID: twilioKey, TwilioKeySecret: twilioSec,
		SlackClientID: "1111.2222", SlackClientSecret: slackSec, SlackRefreshToken: slackFirst,
		DatadogAPIKey: ddAPI, DatadogAppKey: ddApp})
	t.Cleanup(fake.Close)
	reportPeer(t, "saas: fake Stripe, Twilio, Slack and Datadog APIs (internal/saastest) at %s", fake.URL)
	pol := strings.NewReplacer("FAKE_URL", fake.URL, "CA_FILE", originCACert).Replace(saasPolicy)
	e := startEnv(t, envOptions{
		Policy: pol,
		Resolve: map[string]string{"api.stripe.com:443": fake.Addr, "api.twilio.com:443": fake.Addr,
			"slack.com:443": fake.Addr, "api.datadoghq.eu:443": fake.Addr},
		Env: []string{"E2E_STRIPE_KEY=" + stripeKey, "E2E_STRIPE_PK=" + stripePK, "E2E_STRIPE_WRONG=" + stripeWrong, "E2E_TWILIO_SID=" + twilioSID,
			"E2E_TWILIO_KEY_SID=" + twilioKey, "E2E_TWILIO_KEY_SECRET=" + twilioSec,
			"E2E_SLACK_CLIENT_SECRET=" + slackSec, "E2E_SLACK_REFRESH=" + slackFirst, "E2E_SLACK_WRONG_SECRET=" + slackWrong,
			"E2E_DD_API_KEY=" + ddAPI, "E2E_DD_APP_KEY=" + ddApp},
	})
	e.secrets = append(e.secrets, stripeKey, stripePK, stripeWrong, twilioSec, slackSec, slackFirst, slackWrong, ddAPI, ddApp)
	t.Cleanup(func() { e.secrets = append(e.secrets, fake.SlackTokens()...) })
	ctx := context.Background()

	t.Run("stripe-go with a placeholder key", func(t *testing.T) {
		backends := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
			HTTPClient:        newGoClient(t, e.proxyURL, gwCACert, false),
			URL:               stripe.String("https://api.stripe.com"),
			MaxNetworkRetries: stripe.Int64(0),
		})
		sc := stripe.NewClient("sk_test_placeholder", stripe.WithBackends(backends))
		params := &stripe.CustomerCreateParams{Email: stripe.String("a@example.com")}
		params.SetIdempotencyKey("idem-e2e-1")
		params.SetStripeAccount("acct_clientchosen")
		cus, err := sc.V1Customers.Create(ctx, params)
		if err != nil {
			t.Fatalf("V1Customers.Create: %v", err)
		}
		if cus.ID != "cus_saastest" {
			t.Errorf("customer %q", cus.ID)
		}
		// A publishable key in the gateway's credential is refused, not sent.
		_, err = sc.V1Customers.Retrieve(ctx, "cus_pk", nil)
		if err == nil || !strings.Contains(err.Error(), "502") && !strings.Contains(err.Error(), "injection") {
			t.Errorf("publishable key: %v, want the gateway's 502", err)
		}
	})

	t.Run("twilio-go with a placeholder account", func(t *testing.T) {
		tc := &twclient.Client{Credentials: twclient.NewCredentials("SKplaceholder", "placeholder"),
			HTTPClient: newGoClient(t, e.proxyURL, gwCACert, false)}
		tc.SetAccountSid("-")
		rc := twilio.NewRestClientWithParams(twilio.ClientParams{Client: tc})
		p := &twapi.CreateMessageParams{}
		p.SetTo("+15551230000")
		p.SetFrom("+15551239999")
		p.SetBody("ping")
		msg, err := rc.Api.CreateMessage(p)
		if err != nil {
			t.Fatalf("Api.CreateMessage: %v", err)
		}
		if msg.Status == nil || *msg.Status != "queued" {
			t.Errorf("message %+v", msg)
		}
		// Another resource of the account: no rule, 403, nothing sent.
		c := newGoClient(t, e.proxyURL, gwCACert, false)
		resp, err := c.Post("https://api.twilio.com/2010-04-01/Accounts/-/Calls.json", "application/x-www-form-urlencoded", strings.NewReader("To=1"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("Calls.json: %d, want 403", resp.StatusCode)
		}
	})

	t.Run("slack-go with a placeholder token; 100 concurrent first calls refresh once", func(t *testing.T) {
		api := slack.New("xoxb-placeholder", slack.OptionHTTPClient(newGoClient(t, e.proxyURL, gwCACert, false)),
			slack.OptionAPIURL("https://slack.com/api/"))
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for range 100 {
			wg.Go(func() {
				if _, err := api.AuthTestContext(ctx); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("AuthTest: %v", err)
		}
		if n := fake.Refreshes(); n != 1 {
			t.Errorf("%d refreshes for 100 concurrent first calls, want 1", n)
		}
		if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("hello", false)); err != nil {
			t.Errorf("PostMessage: %v", err)
		}
	})

	t.Run("slack refresh refused: 502 credential_error, nothing sent", func(t *testing.T) {
		c := newGoClient(t, e.proxyURL, gwCACert, false)
		resp, err := c.Get("https://slack.com/api/conversations.list")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Credgate-Reason") != "credential_error" {
			t.Errorf("%d %q, want 502 credential_error", resp.StatusCode, resp.Header.Get("X-Credgate-Reason"))
		}
		e.waitLog(t, "Slack refused the client (bad_client_secret); check client_id and the source's client_secret")
	})

	t.Run("stripe rejects the key: its 401 reaches the client; no rule: 403", func(t *testing.T) {
		c := newGoClient(t, e.proxyURL, gwCACert, false)
		for url, want := range map[string]int{"https://api.stripe.com/v1/customers/cus_wrong": http.StatusUnauthorized,
			"https://api.stripe.com/v1/charges": http.StatusForbidden} {
			resp, err := c.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s: %d, want %d", url, resp.StatusCode, want)
			}
		}
	})

	t.Run("datadog validate with placeholder keys", func(t *testing.T) {
		c := newGoClient(t, e.proxyURL, gwCACert, false)
		req, _ := http.NewRequest("GET", "https://api.datadoghq.eu/api/v1/validate", nil)
		req.Header.Set("DD-API-KEY", "placeholder")
		req.Header.Set("DD-APPLICATION-KEY", "placeholder")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"valid":true`) {
			t.Errorf("validate: %d %s", resp.StatusCode, b)
		}
	})

	counts := map[string]int{}
	for _, s := range fake.Requests() {
		counts[s.Service]++
		if !s.OK && s.Path != "/v1/customers/cus_wrong" {
			t.Errorf("%s %s %s: the fake refused the credentials", s.Service, s.Method, s.Path)
		}
		for _, h := range s.Header {
			for _, v := range h {
				if strings.Contains(v, "placeholder") || strings.Contains(v, "SKplaceholder") {
					t.Errorf("%s %s: a placeholder reached the service: %q", s.Service, s.Path, v)
				}
			}
		}
		switch s.Service {
		case "stripe":
			if s.Path == "/v1/customers/cus_wrong" {
				continue // the rule without account or version
			}
			if s.StripeAccount != "acct_1E2Elocal" || s.StripeVersion != "2025-03-31.basil" || s.IdempotencyKey != "idem-e2e-1" {
				t.Errorf("stripe: account %q version %q idempotency key %q; want the policy's account and version and the client's key",
					s.StripeAccount, s.StripeVersion, s.IdempotencyKey)
			}
		case "twilio":
			if s.Path != "/2010-04-01/Accounts/"+twilioSID+"/Messages.json" {
				t.Errorf("twilio path %q, want the real Account SID in the account segment", s.Path)
			}
		}
	}
	if counts["stripe"] != 2 || counts["twilio"] != 1 || counts["slack"] != 101 || counts["datadog"] != 1 {
		t.Errorf("requests per service %v, want stripe 2, twilio 1, slack 101, datadog 1", counts)
	}
	// The audit line records the path the policy matched (the placeholder).
	waitFor(t, 10*time.Second, "the twilio audit line", func() error {
		for _, ev := range e.audit() {
			if ev.Rule == "twilio" && ev.Path == "/2010-04-01/Accounts/-/Messages.json" && ev.Status == http.StatusCreated {
				return nil
			}
		}
		return errors.New("no audit line of rule twilio with the placeholder path and status 201")
	})
}

// TestSaaSPluginSettings: bad settings of each plugin are refused by
// credgate validate at FILE:LINE:COL with the plugin's words.
func TestSaaSPluginSettings(t *testing.T) {
	t.Parallel()
	head := `workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  dd: {hosts: [api.datadoghq.com]}
  other: {hosts: [api.example.com]}
credentials:
  c: {provider: static, env: X}
rules:
`
	cases := []struct{ name, rule, want string }{
		{"stripe account", "  - {name: r, from: w, to: dd, inject: {credential: c, as: stripe, account: cus_1}}\n", `9:40: rule "r" (rules[0]) inject (as stripe): stripe: account "cus_1" is not a Stripe account ID`},
		{"stripe mode", "  - {name: r, from: w, to: dd, inject: {credential: c, as: stripe, mode: prod}}\n", `stripe: mode "prod"`},
		{"twilio sid", "  - {name: r, from: w, to: dd, inject: {credential: c, as: twilio, account_sid: AC1}}\n", `twilio: account_sid "AC1" is not an Account SID`},
		{"slack unknown", "  - {name: r, from: w, to: dd, inject: {credential: c, as: slack, token_in: body}}\n", `unknown field "token_in"`},
		{"datadog host", "  - {name: r, from: w, to: other, inject: {credential: c, as: datadog}}\n", `destination "other": datadog: host api.example.com is not a Datadog site host`},
		{"datadog site", "  - {name: r, from: w, to: dd, inject: {credential: c, as: datadog, site: datadoghq.eu}}\n", `on site datadoghq.com, but the rule sets site: datadoghq.eu`},
		{"slack provider", "", `slack: set client_id`},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := head + tc.rule
			if tc.rule == "" {
				text = strings.Replace(head, "  c: {provider: static, env: X}\n", "  c: {provider: static, env: X}\n  s:\n    provider: slack\n    source: c\n", 1) + "  - {name: r, from: w, to: dd, action: tunnel}\n"
			}
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			out, code := runCLI(t, 20*time.Second, nil, "validate", "-c", f)
			if code == 0 || !strings.Contains(out, f+":") || !strings.Contains(out, tc.want) {
				t.Errorf("validate exit %d:\n%s\nwant %s:LINE:COL and %q", code, out, f, tc.want)
			}
		})
	}
}
