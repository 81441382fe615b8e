package oauth2

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	xoauth2 "golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/credgate/credgate/internal/backoff"
	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
)

// Fetch requests an access token with the configured grant, retrying
// transient failures. See the package documentation for errors.
func (p *Provider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	var last error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := backoff.Wait(ctx, p.RetryBackoff, maxRetryBackoff, attempt); err != nil {
				return nil, fmt.Errorf("oauth2: %s: gave up waiting to retry after: %w: %w", p.opLabel, last, providers.ErrUnavailable)
			}
		}
		cred, retry, err := p.fetchOnce(ctx, req)
		if err == nil {
			return cred, nil
		}
		last = err
		if !retry {
			return nil, err
		}
		if attempt >= p.retries {
			return nil, fmt.Errorf("%w (after %d attempts): %w", err, attempt+1, providers.ErrUnavailable)
		}
	}
}

// fetchOnce makes one token request. retry reports a transient failure.
func (p *Provider) fetchOnce(ctx context.Context, req providers.Request) (cred *providers.Credential, retry bool, err error) {
	cfg := clientcredentials.Config{
		ClientID:       p.ClientID,
		TokenURL:       p.TokenURL,
		Scopes:         p.Scopes,
		EndpointParams: url.Values{},
		AuthStyle:      xoauth2.AuthStyleInParams,
	}
	for k, v := range p.Params {
		cfg.EndpointParams.Set(k, v)
	}
	if p.Audience != "" {
		cfg.EndpointParams.Set("audience", p.Audience)
	}
	if len(p.Resource) > 0 {
		cfg.EndpointParams["resource"] = p.Resource
	}

	switch p.Grant {
	case GrantTokenExchange:
		tok, err := p.subjectToken(req)
		if err != nil {
			return nil, false, fmt.Errorf("oauth2: %s: %w", p.opLabel, err)
		}
		cfg.EndpointParams.Set("grant_type", grantTypeTokenExchange)
		cfg.EndpointParams.Set("subject_token", tok)
		cfg.EndpointParams.Set("subject_token_type", p.TokenExchange.SubjectTokenType)
		if t := p.TokenExchange.RequestedTokenType; t != "" {
			cfg.EndpointParams.Set("requested_token_type", t)
		}
	case GrantJWTBearer:
		claims := map[string]any{}
		for k, v := range p.JWTBearer.Claims {
			claims[k] = v
		}
		a, err := p.assertion(ctx, req, p.JWTBearer.Issuer, p.JWTBearer.Subject, claims)
		if err != nil {
			return nil, isUnavailable(err), fmt.Errorf("oauth2: %s: sign the jwt_bearer assertion: %w", p.opLabel, err)
		}
		cfg.EndpointParams.Set("grant_type", grantTypeJWTBearer)
		cfg.EndpointParams.Set("assertion", a)
	}

	switch p.auth {
	case AuthSecretBasic, AuthSecretPost:
		s, err := p.clientSecret(ctx, req)
		if err != nil {
			return nil, isUnavailable(err), fmt.Errorf("oauth2: %s: client secret: %w", p.opLabel, err)
		}
		cfg.ClientSecret = s.Reveal()
		if p.auth == AuthSecretBasic {
			cfg.AuthStyle = xoauth2.AuthStyleInHeader
		}
	case AuthPrivateKey:
		a, err := p.assertion(ctx, req, p.ClientID, p.ClientID, nil)
		if err != nil {
			return nil, isUnavailable(err), fmt.Errorf("oauth2: %s: sign the client assertion: %w", p.opLabel, err)
		}
		cfg.EndpointParams.Set("client_assertion_type", assertionTypeJWT)
		cfg.EndpointParams.Set("client_assertion", a)
	}

	actx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	actx = context.WithValue(actx, xoauth2.HTTPClient, p.client)
	start := p.now()
	tok, err := cfg.Token(actx)
	if err != nil {
		retry, msg := describe(err)
		if ctx.Err() != nil {
			retry = false // our caller gave up; do not start another attempt
			return nil, retry, fmt.Errorf("oauth2: %s: %s: %w: %w", p.opLabel, msg, context.Cause(ctx), providers.ErrUnavailable)
		}
		if retry {
			return nil, true, fmt.Errorf("oauth2: %s: %s", p.opLabel, msg)
		}
		return nil, false, fmt.Errorf("oauth2: %s: %s", p.opLabel, msg)
	}
	if strings.EqualFold(tok.TokenType, "DPoP") {
		return nil, false, fmt.Errorf("oauth2: %s: the server issued a DPoP-bound token, which the gateway cannot present", p.opLabel)
	}
	cred, err = p.credential(tok, start)
	if err != nil {
		return nil, false, fmt.Errorf("oauth2: %s: %w", p.opLabel, err)
	}
	return cred, false, nil
}

// credential turns a token into a Credential that expires expires_in
// after start (the token may have been issued as early as that),
// shortened by the margin. expires_in is read from the answer itself,
// not from x/oauth2's tok.Expiry, which cannot tell an absent
// expires_in from 0 (both leave it zero) and takes a negative one for
// an expiry in the past: an absent (or, in a form-encoded answer,
// empty) expires_in gets DefaultExpiresIn; 0, a negative count and a
// value that is not a whole number of seconds are refused, naming the
// field (providers.LifetimeSeconds).
func (p *Provider) credential(tok *xoauth2.Token, start time.Time) (*providers.Credential, error) {
	var raw []byte
	switch v := tok.Extra("expires_in"); v {
	case nil, "":
	default:
		raw, _ = json.Marshal(v)
	}
	life, present, err := providers.LifetimeSeconds("expires_in", raw)
	if err != nil {
		return nil, fmt.Errorf("the token endpoint's answer: %w", err)
	}
	if !present {
		life = p.DefaultExpiresIn
	}
	life -= min(p.ExpiryMargin, life/10)
	typ := tok.TokenType
	if typ == "" {
		typ = "bearer"
	}
	return &providers.Credential{
		Fields: map[string]providers.Secret{
			providers.FieldToken: providers.NewSecret(tok.AccessToken),
			FieldTokenType:       providers.NewSecret(typ),
		},
		Expiry: start.Add(life),
	}, nil
}

// clientSecret returns the client secret from its credential or inline.
func (p *Provider) clientSecret(ctx context.Context, req providers.Request) (providers.Secret, error) {
	if !p.ClientSecret.Value.IsZero() {
		return p.ClientSecret.Value.Secret, nil
	}
	f := p.ClientSecret.Field
	if f == "" {
		f = providers.FieldToken
	}
	return p.input(ctx, req, p.ClientSecret.Credential, f)
}

// subjectToken returns the workload's verified token for a token exchange.
func (p *Provider) subjectToken(req providers.Request) (string, error) {
	for _, f := range req.Workload.Factors {
		if f.Token.IsZero() {
			continue
		}
		if k := p.TokenExchange.SubjectFactor; k == "" || k == f.Kind {
			return f.Token.Reveal(), nil
		}
	}
	if k := p.TokenExchange.SubjectFactor; k != "" {
		return "", fmt.Errorf("workload %s presented no verified %s token to exchange", req.Workload.DisplayName(), k)
	}
	return "", fmt.Errorf("workload %s presented no verified token to exchange (token exchange needs a jwt or kubernetes factor)", req.Workload.DisplayName())
}

// describe words a token request error without anything the server or
// the request carried (the server's error_description may echo
// parameters), and says whether it is transient.
func describe(err error) (retry bool, msg string) {
	var re *xoauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		retry = status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
		msg = fmt.Sprintf("the token endpoint answered %d", status)
		if code := safeCode(re.ErrorCode); code != "" {
			msg += " " + code
		}
		return retry, msg
	}
	err, timeout := httpclient.DoError(err)
	var ne net.Error
	switch {
	case timeout:
		return true, "the token endpoint did not answer in time"
	case errors.As(err, &ne), errors.Is(err, net.ErrClosed):
		return true, "the token endpoint is unreachable: " + errString(err)
	}
	var x509Err x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &x509Err) || errors.As(err, &hostErr) || errors.As(err, &certErr) {
		return false, "the token endpoint's TLS certificate did not verify"
	}
	msg = err.Error()
	if strings.Contains(msg, "missing access_token") {
		return false, "the token endpoint's answer has no access_token"
	}
	if strings.Contains(msg, "cannot parse json") && (strings.Contains(msg, "into Number") || strings.Contains(msg, "strconv.ParseInt")) {
		// x/oauth2 decodes expires_in, its one numeric field, itself;
		// its error does not name the field.
		return true, "the token endpoint's answer has an expires_in that is not a whole number of seconds"
	}
	// Anything else (EOF, a malformed answer) is treated as transient.
	return true, "the token request failed: " + errString(err)
}

// errString is err's message cut to one short line. A transport error
// can quote the endpoint's answer, which can echo the form: the client's
// transport (httpclient.NewClient) redacts what was sent from it.
func errString(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// safeCode returns an RFC 6749 error code if it looks like one.
func safeCode(code string) string {
	if len(code) > 64 {
		return ""
	}
	for _, r := range code {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' && r != '.' {
			return ""
		}
	}
	return code
}

// isUnavailable reports whether err wraps providers.ErrUnavailable (an
// input credential that cannot be read now).
func isUnavailable(err error) bool { return errors.Is(err, providers.ErrUnavailable) }
