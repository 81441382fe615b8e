// Package saastest is a fake of four SaaS APIs on one TLS server on
// 127.0.0.1, telling them apart by the Host of each request: Stripe
// (api.stripe.com), Twilio (api.twilio.com), Slack (slack.com) and
// Datadog (any host of a Datadog site). Each checks credentials where its
// service documents them and answers as it would:
//
//   - Stripe: "Authorization: Bearer <secret key>" (401 otherwise), a
//     Stripe-Version, when sent, of Stripe's form (400 otherwise), and
//     records Stripe-Account, Stripe-Version and Idempotency-Key;
//   - Twilio: HTTP Basic with an API key SID and secret (or the Account
//     SID and auth token), and the Account SID in the path
//     (/2010-04-01/Accounts/{AccountSid}/...) equal to the account the
//     credentials are for (401 / 404 otherwise);
//   - Slack: oauth.v2.access with grant_type=refresh_token issues a new
//     access token and a new refresh token, and the refresh token used
//     stops working (single-use, like Slack's rotation); an issued access
//     token stops working at its expires_in (token_expired); Web API methods
//     take the token as Bearer or in the token field of a form body
//     ({"ok":false,"error":"invalid_auth"} otherwise);
//   - Datadog: GET /api/v1/validate checks DD-API-KEY; other /api/ calls
//     need DD-API-KEY and DD-APPLICATION-KEY (403 otherwise).
//
// It also checks the services the catalogue reaches through generic
// injectors, each where its documentation puts the credential:
//
//   - Atlassian Cloud (*.atlassian.net): HTTP Basic email:API token;
//   - Shopify Admin API (*.myshopify.com, /admin/api/...):
//     X-Shopify-Access-Token;
//   - PagerDuty REST API (api.pagerduty.com): "Authorization: Token
//     token=KEY";
//   - GitHub with a personal access token (api.github.com): "Bearer PAT"
//     or "token PAT";
//   - Azure OpenAI (*.openai.azure.com): the api-key header and an
//     api-version query parameter (404 "Resource not found" without it).
//
// It exists so that the plugins' tests and e2e drive real clients
// (stripe-go, twilio-go, slack-go) against a peer that verifies them.
package saastest

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
)

// stripeVersion is a Stripe-Version as Stripe documents it ("Versioning",
// docs.stripe.com/api/versioning): a release date, with the release's
// name since 2024-09-30 ("2024-09-30.acacia"). Stripe answers 400 to any
// other value.
var stripeVersion = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}(\.[a-z]+)?$`)

// Options configure the fake's accounts and keys.
type Options struct {
	// Certificate is the server certificate (for the services' hosts);
	// nil serves httptest's own.
	Certificate *tls.Certificate

	// StripeKey is the secret key the Stripe API accepts.
	StripeKey string

	// TwilioAccountSID is the account; TwilioKeySID and TwilioKeySecret
	// an API key of it; TwilioAuthToken its auth token.
	TwilioAccountSID, TwilioKeySID, TwilioKeySecret, TwilioAuthToken string

	// SlackClientID and SlackClientSecret are the app's; SlackRefreshToken
	// the first valid refresh token; SlackBotToken a non-rotating token
	// also accepted; SlackTokenLifetime the expires_in of issued tokens
	// (default 12 h).
	SlackClientID, SlackClientSecret, SlackRefreshToken, SlackBotToken string
	SlackTokenLifetime                                                 time.Duration
	// Now is the fake's clock, for Slack token expiry; default time.Now.
	Now func() time.Time
	// OnSlackRefresh, if set, is told each refresh token the fake issues
	// (a test standing in for an operator who stores it in a source).
	OnSlackRefresh func(refreshToken string)

	// DatadogAPIKey and DatadogAppKey are the keys Datadog accepts.
	DatadogAPIKey, DatadogAppKey string

	// The services the catalogue reaches with generic injectors (no
	// plugin): AtlassianEmail and AtlassianToken (Basic), ShopifyToken
	// (X-Shopify-Access-Token), PagerDutyToken ("Token token="),
	// GitHubPAT (Bearer or token) and AzureOpenAIKey (api-key).
	AtlassianEmail, AtlassianToken, ShopifyToken, PagerDutyToken, GitHubPAT, AzureOpenAIKey string
}

// Seen is one API request as the fake saw it.
type Seen struct {
	Service string // stripe, twilio, slack, datadog
	Method  string
	Path    string // as received, escaped
	OK      bool   // the credentials were accepted
	// Stripe headers.
	StripeAccount, StripeVersion, IdempotencyKey string
	// TokenIn is where a Slack token came: "header", "form", "both".
	TokenIn string
	// Header is a copy of the request's header.
	Header http.Header
}

// Fake is the running fake.
type Fake struct {
	// URL is the server's base URL; Addr its host:port.
	URL, Addr string

	opts Options
	srv  *httptest.Server

	mu        sync.Mutex
	seen      []Seen
	refresh   map[string]bool      // valid Slack refresh tokens
	access    map[string]time.Time // valid Slack access tokens, by expiry
	refreshes int
	spent     []string // used refresh tokens
	n         int
	lifetime  fakekit.LifetimeOverride
}

// SetSlackLifetime makes Slack's refresh answers state l as expires_in
// from now on (nil: SlackTokenLifetime again): a lifetime shape of the
// providers conformance suite. The token itself still lives
// SlackTokenLifetime.
func (f *Fake) SetSlackLifetime(l *fakekit.Lifetime) { f.lifetime.Set(l) }

// New starts the fake on 127.0.0.1.
func New(opts Options) *Fake {
	if opts.SlackTokenLifetime == 0 {
		opts.SlackTokenLifetime = 12 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := &Fake{opts: opts, refresh: map[string]bool{}, access: map[string]time.Time{}}
	if opts.SlackRefreshToken != "" {
		f.refresh[opts.SlackRefreshToken] = true
	}
	f.srv = fakekit.StartTLS(http.HandlerFunc(f.serve), opts.Certificate)
	f.URL = f.srv.URL
	f.Addr = f.srv.Listener.Addr().String()
	return f
}

// CAFile writes the server's certificate (its own CA when
// Options.Certificate is nil) as PEM to a file in dir and returns its
// path, for clients' ca_cert settings.
func (f *Fake) CAFile(dir string) (string, error) {
	return fakekit.WriteCAFile(f.srv, dir, "saastest-ca.pem")
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// Client returns an HTTP client that trusts the server's certificate.
func (f *Fake) Client() *http.Client { return f.srv.Client() }

// Requests returns the API requests seen so far (not token refreshes).
func (f *Fake) Requests() []Seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Seen(nil), f.seen...)
}

// Refreshes returns how many Slack refreshes succeeded.
func (f *Fake) Refreshes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes
}

// SlackTokens returns every Slack access and refresh token the fake
// issued or accepts (for tests that grep output for them).
func (f *Fake) SlackTokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.access {
		out = append(out, k)
	}
	for k := range f.refresh {
		out = append(out, k)
	}
	return append(out, f.spent...)
}

// SetSlackRefreshToken makes rt valid (an operator's reinstall).
func (f *Fake) SetSlackRefreshToken(rt string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh[rt] = true
}

func (f *Fake) record(s Seen) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, s)
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	switch {
	case host == "api.stripe.com":
		f.stripe(w, r)
	case host == "api.twilio.com":
		f.twilio(w, r)
	case host == "slack.com":
		f.slack(w, r)
	case strings.HasSuffix(host, ".datadoghq.com") || strings.HasSuffix(host, ".datadoghq.eu") || strings.HasSuffix(host, ".ddog-gov.com"):
		f.datadog(w, r)
	case strings.HasSuffix(host, ".atlassian.net"), strings.HasSuffix(host, ".myshopify.com"), host == "api.pagerduty.com",
		host == "api.github.com", strings.HasSuffix(host, ".openai.azure.com"):
		f.generic(w, r, host)
	case strings.HasPrefix(r.URL.Path, "/api/"):
		// Slack on the server's own address, for the provider's tests
		// that reach the token endpoint by IP.
		f.slack(w, r)
	default:
		http.Error(w, "saastest: unknown host "+host, http.StatusMisdirectedRequest)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// stripe checks the Bearer key and answers customer calls.
func (f *Fake) stripe(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	ok := f.opts.StripeKey != "" && r.Header.Get("Authorization") == "Bearer "+f.opts.StripeKey
	f.record(Seen{Service: "stripe", Method: r.Method, Path: r.URL.EscapedPath(), OK: ok,
		StripeAccount: r.Header.Get("Stripe-Account"), StripeVersion: r.Header.Get("Stripe-Version"),
		IdempotencyKey: r.Header.Get("Idempotency-Key"), Header: r.Header.Clone()})
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
			"type": "invalid_request_error", "message": "Invalid API Key provided"}})
		return
	}
	if v := r.Header.Get("Stripe-Version"); v != "" && !stripeVersion.MatchString(v) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
			"type": "invalid_request_error", "message": "Invalid Stripe API version: " + v}})
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/v1/customers") {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"type": "invalid_request_error", "message": "Unrecognized request URL"}})
		return
	}
	w.Header().Set("Request-Id", "req_saastest")
	writeJSON(w, http.StatusOK, map[string]any{"id": "cus_saastest", "object": "customer", "livemode": false, "email": "a@example.com"})
}

// twilio checks Basic credentials and the account in the path.
func (f *Fake) twilio(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": 20001, "message": "Invalid form body", "status": 400})
		return
	}
	user, pass, hasBasic := r.BasicAuth()
	o := f.opts
	authOK := hasBasic && ((o.TwilioKeySID != "" && user == o.TwilioKeySID && pass == o.TwilioKeySecret) ||
		(o.TwilioAuthToken != "" && user == o.TwilioAccountSID && pass == o.TwilioAuthToken))
	prefix := "/2010-04-01/Accounts/" + o.TwilioAccountSID
	pathOK := r.URL.EscapedPath() == prefix+".json" || strings.HasPrefix(r.URL.EscapedPath(), prefix+"/")
	f.record(Seen{Service: "twilio", Method: r.Method, Path: r.URL.EscapedPath(), OK: authOK && pathOK, Header: r.Header.Clone()})
	switch {
	case !authOK:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 20003, "message": "Authenticate", "status": 401})
		return
	case !pathOK:
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 20404, "message": "The requested resource was not found", "status": 404})
		return
	}
	if strings.HasSuffix(r.URL.Path, "/Messages.json") && r.Method == http.MethodPost {
		writeJSON(w, http.StatusCreated, map[string]any{"sid": "SM" + strings.Repeat("0", 32), "account_sid": o.TwilioAccountSID,
			"to": r.PostForm.Get("To"), "from": r.PostForm.Get("From"), "body": r.PostForm.Get("Body"), "status": "queued"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sid": o.TwilioAccountSID, "status": "active"})
}

// slack serves the refresh flow and Web API methods.
func (f *Fake) slack(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	if r.URL.Path == "/api/oauth.v2.access" {
		f.slackRefresh(w, r)
		return
	}
	header := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if header == r.Header.Get("Authorization") {
		header = ""
	}
	form := r.PostForm.Get("token")
	in, tok := "", header
	switch {
	case header != "" && form != "":
		in = "both"
		if header != form {
			tok = "" // two different tokens: refuse
		}
	case header != "":
		in = "header"
	case form != "":
		in, tok = "form", form
	}
	f.mu.Lock()
	exp, rotating := f.access[tok]
	f.mu.Unlock()
	// A rotating token stops working at its expiry ("Using token
	// rotation", api.slack.com: token_expired); the bot token does not
	// rotate.
	expired := rotating && !f.opts.Now().Before(exp)
	ok := tok != "" && ((rotating && !expired) || tok == f.opts.SlackBotToken)
	f.record(Seen{Service: "slack", Method: r.Method, Path: r.URL.EscapedPath(), OK: ok, TokenIn: in, Header: r.Header.Clone()})
	if expired {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "token_expired"})
		return
	}
	if !ok {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	switch r.URL.Path {
	case "/api/auth.test":
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "url": "https://saastest.slack.com/", "team": "saastest", "user": "bot", "team_id": "T1", "user_id": "U1", "bot_id": "B1"})
	case "/api/chat.postMessage":
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "channel": r.PostForm.Get("channel"), "ts": "1700000000.000100",
			"message": map[string]any{"type": "message", "text": r.PostForm.Get("text"), "ts": "1700000000.000100"}})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	}
}

// slackRefresh implements oauth.v2.access with grant_type=refresh_token:
// the client authenticates in the form (or with Basic), the refresh
// token is consumed, and a new pair is issued.
func (f *Fake) slackRefresh(w http.ResponseWriter, r *http.Request) {
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, secret = u, p
	}
	switch {
	case r.Method != http.MethodPost:
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_request"})
		return
	case id != f.opts.SlackClientID:
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_client_id"})
		return
	case secret != f.opts.SlackClientSecret:
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "bad_client_secret"})
		return
	case r.PostForm.Get("grant_type") != "refresh_token":
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_grant_type"})
		return
	}
	rt := r.PostForm.Get("refresh_token")
	f.mu.Lock()
	if !f.refresh[rt] {
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_refresh_token"})
		return
	}
	delete(f.refresh, rt) // single-use
	f.spent = append(f.spent, rt)
	f.n++
	f.refreshes++
	access := fmt.Sprintf("xoxe.xoxb-1-saastest-%d-%s", f.n, base64.RawURLEncoding.EncodeToString([]byte(rt))[:8])
	next := fmt.Sprintf("xoxe-1-saastest-%d", f.n)
	f.access[access] = f.opts.Now().Add(f.opts.SlackTokenLifetime)
	f.refresh[next] = true
	f.mu.Unlock()
	if f.opts.OnSlackRefresh != nil {
		f.opts.OnSlackRefresh(next)
	}
	answer := map[string]any{"ok": true, "app_id": "A1", "token_type": "bot", "access_token": access,
		"refresh_token": next, "expires_in": int64(f.opts.SlackTokenLifetime / time.Second), "scope": "chat:write",
		"team": map[string]any{"id": "T1", "name": "saastest"}}
	if l, ok := f.lifetime.Get(); ok {
		delete(answer, "expires_in")
		if raw, ok := l.JSON(); ok {
			answer["expires_in"] = json.RawMessage(raw)
		}
	}
	writeJSON(w, http.StatusOK, answer)
}

// datadog checks the keys.
func (f *Fake) datadog(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	apiOK := f.opts.DatadogAPIKey != "" && r.Header.Get("DD-API-KEY") == f.opts.DatadogAPIKey
	appOK := f.opts.DatadogAppKey != "" && r.Header.Get("DD-APPLICATION-KEY") == f.opts.DatadogAppKey
	validate := r.URL.Path == "/api/v1/validate"
	ok := apiOK && (validate || appOK)
	f.record(Seen{Service: "datadog", Method: r.Method, Path: r.URL.EscapedPath(), OK: ok, Header: r.Header.Clone()})
	if !ok {
		writeJSON(w, http.StatusForbidden, map[string]any{"errors": []string{"Forbidden"}})
		return
	}
	if validate {
		writeJSON(w, http.StatusOK, map[string]any{"valid": true})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": []any{}})
}

// generic checks the services reached by generic injectors: the
// credential where each documents it, nothing else accepted, and
// answers each one's own refusal.
func (f *Fake) generic(w http.ResponseWriter, r *http.Request, host string) {
	_, _ = io.Copy(io.Discard, r.Body)
	o := f.opts
	auth := r.Header.Get("Authorization")
	var service string
	var ok bool
	var status = http.StatusUnauthorized
	var refusal any
	switch {
	case strings.HasSuffix(host, ".atlassian.net"):
		service = "atlassian"
		user, pass, basic := r.BasicAuth()
		ok = basic && o.AtlassianToken != "" && user == o.AtlassianEmail && pass == o.AtlassianToken
		refusal = map[string]any{"errorMessages": []string{"Client must be authenticated to access this resource."}}
	case strings.HasSuffix(host, ".myshopify.com"):
		service = "shopify"
		ok = o.ShopifyToken != "" && r.Header.Get("X-Shopify-Access-Token") == o.ShopifyToken &&
			auth == "" && strings.HasPrefix(r.URL.Path, "/admin/api/")
		refusal = map[string]any{"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
	case host == "api.pagerduty.com":
		service = "pagerduty"
		ok = o.PagerDutyToken != "" && auth == "Token token="+o.PagerDutyToken
		refusal = map[string]any{"error": map[string]any{"message": "Authentication failed", "code": 2006}}
	case host == "api.github.com":
		service = "github"
		ok = o.GitHubPAT != "" && (auth == "Bearer "+o.GitHubPAT || auth == "token "+o.GitHubPAT)
		refusal = map[string]any{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
	default:
		service = "azure-openai"
		ok = o.AzureOpenAIKey != "" && r.Header.Get("Api-Key") == o.AzureOpenAIKey && auth == ""
		refusal = map[string]any{"error": map[string]any{"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}}
		if ok && r.URL.Query().Get("api-version") == "" {
			ok, status = false, http.StatusNotFound
			refusal = map[string]any{"error": map[string]any{"code": "404", "message": "Resource not found"}}
		}
	}
	f.record(Seen{Service: service, Method: r.Method, Path: r.URL.EscapedPath(), OK: ok, Header: r.Header.Clone()})
	if !ok {
		writeJSON(w, status, refusal)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"service": service, "path": r.URL.Path})
}
