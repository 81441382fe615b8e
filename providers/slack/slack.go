// Package slack is the "slack" credential provider: Slack access tokens
// of an app with token rotation turned on, refreshed with the app's
// rotating refresh token (oauth.v2.access, grant_type=refresh_token)
// before they expire, so applications never hold a Slack token and the
// refresh token never leaves the gateway.
//
//	credentials:
//	  slack-app:                   # the app's secret and its first refresh token
//	    provider: static
//	    fields:
//	      client_secret: {env: SLACK_CLIENT_SECRET}
//	      refresh_token: {env: SLACK_REFRESH_TOKEN}   # xoxe-1-...
//	  slack-bot:
//	    provider: slack
//	    client_id: "1234567890.1234567890"
//	    source: slack-app
//	    # token_url: https://slack.com/api/oauth.v2.access
//	    # timeout: 10s
//
// The credential has the fields token (the access token, xoxe.xoxb-... or
// xoxe.xoxp-..., for the slack or bearer injector) and refresh_token (the
// refresh token Slack issued with it), and expires expires_in after it
// was requested, less a margin.
//
// # Where the latest refresh token lives
//
// Slack's refresh tokens are single-use: each refresh returns a new one
// and the old one stops working. The latest is a field of the cached
// credential and nowhere else: the next refresh reads it from the
// credential it replaces (providers.Previous), which the gateway's cache
// holds in memory, and, with a shared Redis cache, sealed (AEAD) in Redis,
// where every replica finds the newest one any replica stored. The shared
// cache's lock makes one replica at a time refresh. The refresh token in
// the source credential is used only for the first refresh, when no
// cached credential exists, and again if the cached one is refused
// (invalid_refresh_token) and the source holds a different one: an
// operator recovers a lost chain by putting a new refresh token (from
// reinstalling the app) in the source.
//
// A chain is lost when the cache loses the credential: the gateway
// restarts without a shared cache, the cached entry is evicted or expires
// unused (Redis drops it at the access token's expiry, 12 h), or the
// credential's settings change (a new cache key). Keep a shared Redis
// cache and traffic more often than the token lifetime, or be ready to
// reinstall; the gateway answers 502 credential_error with the fix in its
// log until then.
package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/endpoint"
)

// Name is the provider's registered name.
const Name = "slack"

// DefaultTokenURL is Slack's token endpoint.
const DefaultTokenURL = "https://slack.com/api/oauth.v2.access"

// Fields of the source credential and of the credential returned.
const (
	FieldClientSecret = "client_secret"
	FieldRefreshToken = "refresh_token"
)

func init() {
	providers.Register(providers.Module{
		Name: Name,
		Doc:  "Slack access tokens of an app with token rotation, refreshed with its single-use refresh token (oauth.v2.access)",
		SettingDocs: map[string]string{
			"client_id": "the app's client ID (not secret)",
			"source":    "credential with the fields client_secret and refresh_token (the first refresh token)",
			"token_url": "the token endpoint (default " + DefaultTokenURL + ")",
			"ca_cert":   "PEM file of CAs for the token endpoint (default: the system's)",
			"timeout":   "each refresh request (default 10s)",
		},
		New: func() providers.Provider { return new(Provider) },
	})
}

// Provider refreshes Slack access tokens.
type Provider struct {
	// ClientID is the Slack app's client ID.
	ClientID string `yaml:"client_id"`
	// Source names the credential holding client_secret and the first
	// refresh_token.
	Source string `yaml:"source"`
	// TokenURL is the token endpoint. Default DefaultTokenURL.
	TokenURL string `yaml:"token_url"`
	// CACert is a PEM file of CAs that sign the token endpoint's
	// certificate; default the system roots.
	CACert string `yaml:"ca_cert"`
	// Timeout bounds each refresh request. Default 10s.
	Timeout time.Duration `yaml:"timeout"`

	inputs providers.InputSet
	client *http.Client
	// now is the clock for expiry (a test seam).
	now func() time.Time
}

// Provision applies defaults and builds the HTTP client (no proxy, no
// redirects). It contacts nothing.
func (p *Provider) Provision(context.Context) error {
	if p.TokenURL == "" {
		p.TokenURL = DefaultTokenURL
	}
	if p.Timeout == 0 {
		p.Timeout = 10 * time.Second
	}
	if p.now == nil {
		p.now = time.Now
	}
	c, err := httpclient.NewClient(httpclient.Options{Timeout: p.Timeout, CACertFile: p.CACert})
	if err != nil {
		return fmt.Errorf("slack: %w", err)
	}
	p.client = c
	return nil
}

// Validate checks the settings.
func (p *Provider) Validate() error {
	switch {
	case p.ClientID == "":
		return errors.New(`slack: set client_id to the app's client ID (Basic Information → App Credentials), e.g. client_id: "1234567890.1234567890"`)
	case p.Source == "":
		return errors.New("slack: set source to the credential holding the app's client_secret and first refresh_token fields, e.g. source: slack-app")
	case p.Timeout < 0:
		return errors.New("slack: timeout must be positive, e.g. timeout: 10s")
	}
	if err := httpclient.CheckURL(p.TokenURL); err != nil {
		return fmt.Errorf("slack: token_url %w", err)
	}
	return nil
}

// Cleanup closes idle connections.
func (p *Provider) Cleanup() error {
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
	return nil
}

// Inputs implements providers.Composer.
func (p *Provider) Inputs() []string { return []string{p.Source} }

// SetInputs implements providers.Composer.
func (p *Provider) SetInputs(in map[string]providers.Provider) { p.inputs.SetInputs(in) }

// errRefused marks a refresh token Slack refused.
var errRefused = errors.New("refresh token refused")

// Fetch refreshes the access token with the latest refresh token: the
// one in the credential being replaced, else the source's.
func (p *Provider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	src := p.inputs.Map()[p.Source]
	if src == nil {
		return nil, fmt.Errorf("slack: source credential %q was not provided", p.Source)
	}
	in := req
	in.Credential = p.Source
	sc, err := src.Fetch(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("slack: read source credential %q: %w", p.Source, err)
	}
	secret, ok := sc.Field(FieldClientSecret)
	if !ok {
		return nil, fmt.Errorf("slack: source credential %q has no %s field; add the app's client secret to it", p.Source, FieldClientSecret)
	}
	first, hasFirst := sc.Field(FieldRefreshToken)
	latest, hasLatest := providers.Previous(ctx).Field(FieldRefreshToken)
	switch {
	case hasLatest:
		cred, err := p.refresh(ctx, secret, latest)
		if !errors.Is(err, errRefused) || !hasFirst || first.Reveal() == latest.Reveal() {
			return cred, err
		}
		// The chain broke; an operator may have put a new refresh token
		// in the source.
		return p.refresh(ctx, secret, first)
	case hasFirst:
		return p.refresh(ctx, secret, first)
	}
	return nil, fmt.Errorf("slack: source credential %q has no %s field and the cache holds no rotated one; add the app's refresh token (xoxe-1-...) to it", p.Source, FieldRefreshToken)
}

// tokenResponse is oauth.v2.access's answer.
type tokenResponse struct {
	OK           bool            `json:"ok"`
	Error        string          `json:"error"`
	AccessToken  string          `json:"access_token"`
	RefreshToken string          `json:"refresh_token"`
	ExpiresIn    json.RawMessage `json:"expires_in"`
}

// refresh exchanges one refresh token. Slack answers HTTP 200 with
// ok:false for refused requests; 429 and 5xx are ErrUnavailable.
func (p *Provider) refresh(ctx context.Context, secret, rt providers.Secret) (*providers.Credential, error) {
	op := "slack: refresh at " + httpclient.Display(p.TokenURL) + " (client " + p.ClientID + ")"
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"client_id":     {p.ClientID},
		"client_secret": {secret.Reveal()},
		"refresh_token": {rt.Reveal()},
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, p.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	start := p.now()
	resp, body, err := endpoint.Do(p.client, hr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	switch {
	case endpoint.Unavailable(resp.StatusCode):
		return nil, fmt.Errorf("%s: HTTP %d (retry later): %w", op, resp.StatusCode, providers.ErrUnavailable)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s: HTTP %d; check token_url", op, resp.StatusCode)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		// The body may echo a token: name only the failure.
		return nil, fmt.Errorf("%s: the answer is not Slack's JSON; check token_url", op)
	}
	if !tr.OK {
		return nil, refusal(op, tr.Error)
	}
	life, present, err := providers.LifetimeSeconds("expires_in", tr.ExpiresIn)
	switch {
	case tr.AccessToken == "" || tr.RefreshToken == "" || !present:
		return nil, fmt.Errorf("%s: the answer lacks access_token, refresh_token or expires_in; turn on token rotation for the app (OAuth & Permissions → Advanced token security)", op)
	case err != nil:
		// Slack's rotated tokens last 12 hours; 0 or less is a broken
		// answer, not a token to keep for a guessed period.
		return nil, fmt.Errorf("%s: the answer's %w", op, err)
	}
	margin := min(life/10, time.Minute)
	return &providers.Credential{
		Fields: map[string]providers.Secret{
			providers.FieldToken: providers.NewSecret(tr.AccessToken),
			FieldRefreshToken:    providers.NewSecret(tr.RefreshToken),
		},
		Expiry: start.Add(life - margin),
	}, nil
}

// refusal maps Slack's error codes to errors that say what to change.
// Slack's codes are fixed words, safe to log.
func refusal(op, code string) error {
	switch code {
	case "invalid_refresh_token", "invalid_grant", "token_expired", "token_revoked":
		return fmt.Errorf("%s: Slack refused the refresh token (%s): it was used already or revoked; put a new refresh token (reinstall the app) in the source credential: %w", op, code, errRefused)
	case "invalid_client_id", "bad_client_secret", "invalid_client":
		return fmt.Errorf("%s: Slack refused the client (%s); check client_id and the source's client_secret", op, code)
	case "ratelimited":
		return fmt.Errorf("%s: Slack is rate-limiting refreshes: %w", op, providers.ErrUnavailable)
	case "":
		code = "no error code"
	}
	if !isWord(code) {
		code = "an error code that is not a word"
	}
	return fmt.Errorf("%s: Slack answered ok:false (%s)", op, code)
}

func isWord(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && c != '_' && (c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

// String names the provider without secrets.
func (p *Provider) String() string {
	return fmt.Sprintf("slack(%s, client %s, source %s)", httpclient.Display(p.TokenURL), p.ClientID, p.Source)
}

// LogValue implements slog.LogValuer.
func (p *Provider) LogValue() slog.Value { return slog.StringValue(p.String()) }

// Interface guards.
var (
	_ providers.Provider     = (*Provider)(nil)
	_ providers.Composer     = (*Provider)(nil)
	_ providers.Provisioner  = (*Provider)(nil)
	_ providers.Validator    = (*Provider)(nil)
	_ providers.CleanerUpper = (*Provider)(nil)
	_ slog.LogValuer         = (*Provider)(nil)
	_ fmt.Stringer           = (*Provider)(nil)
)
