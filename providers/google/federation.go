package google

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
)

// Workload identity federation defaults and constants.
const (
	DefaultSTSURL            = "https://sts.googleapis.com/v1/token"
	DefaultIAMCredentialsURL = "https://iamcredentials.googleapis.com"
	// TokenTypeJWT and TokenTypeIDToken are the subject_token_type values
	// Google's STS accepts for OIDC tokens.
	TokenTypeJWT     = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"

	grantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	cloudPlatformScope   = "https://www.googleapis.com/auth/cloud-platform"
	// maxLifetime is the longest generateAccessToken lifetime Google
	// grants (with the organisation policy that allows more than 1 h).
	maxLifetime = 12 * time.Hour
)

// poolProvider is the form of a workload identity pool provider's name,
// the STS audience; compiled on first use.
var poolProvider = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^//iam\.googleapis\.com/projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]+/providers/[a-z0-9-]+$`)
})

// Federation is keyless workload identity federation: a subject token is
// exchanged at Google's STS for a federated access token, which may then
// impersonate a service account.
type Federation struct {
	// Audience is the workload identity pool provider:
	// //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER.
	Audience string `yaml:"audience"`
	// SubjectToken says where the token exchanged at STS comes from.
	SubjectToken SubjectToken `yaml:"subject_token"`
	// SubjectTokenType is the subject_token_type: TokenTypeJWT (default)
	// or TokenTypeIDToken.
	SubjectTokenType string `yaml:"subject_token_type"`
	// ServiceAccount, if set, is the service account impersonated with
	// the federated token (the pool's principals need
	// roles/iam.workloadIdentityUser on it). Required for mode id_token.
	ServiceAccount string `yaml:"service_account"`
	// Lifetime is the impersonated access token's lifetime. Default 1h;
	// Google allows up to 12h where an organisation policy permits it.
	Lifetime time.Duration `yaml:"lifetime"`
	// STSURL is the token exchange endpoint. Default DefaultSTSURL.
	STSURL string `yaml:"sts_url"`
	// IAMCredentialsURL is the IAM Service Account Credentials API's base
	// URL. Default DefaultIAMCredentialsURL.
	IAMCredentialsURL string `yaml:"iam_credentials_url"`
}

// SubjectToken is the source of the token exchanged at STS: the calling
// workload's verified token, or one the gateway holds.
type SubjectToken struct {
	// Factor is the kind of the workload's verified factor whose token is
	// exchanged: jwt or kubernetes. The pool provider must trust that
	// token's issuer, and list one of its audiences.
	Factor string `yaml:"factor"`
	// File is a token file the gateway holds (a projected service-account
	// token, a SPIFFE JWT-SVID file), read at every fetch.
	File string `yaml:"file"`
	// Credential names another credential holding the token.
	Credential string `yaml:"credential"`
	// Field is that credential's field. Default "token".
	Field string `yaml:"field"`
}

func (f *Federation) defaults() {
	if f.SubjectTokenType == "" {
		f.SubjectTokenType = TokenTypeJWT
	}
	if f.STSURL == "" {
		f.STSURL = DefaultSTSURL
	}
	if f.IAMCredentialsURL == "" {
		f.IAMCredentialsURL = DefaultIAMCredentialsURL
	}
	f.IAMCredentialsURL = strings.TrimSuffix(f.IAMCredentialsURL, "/")
	if f.Lifetime <= 0 {
		f.Lifetime = Lifetime
	}
}

// validateFederation checks the settings of workload_identity.
func (p *Provider) validateFederation() error {
	f := p.WorkloadIdentity
	st := f.SubjectToken
	sources := 0
	for _, set := range []bool{st.Factor != "", st.File != "", st.Credential != ""} {
		if set {
			sources++
		}
	}
	switch {
	case p.Key.set() || p.PrivateKey.IsSet() || p.ClientEmail != "" || p.KeyID != "":
		return errors.New("google: workload_identity is keyless; remove key, private_key, client_email and key_id")
	case p.TokenURL != "":
		return errors.New("google: token_url is for a key; with workload_identity set workload_identity.sts_url")
	case !poolProvider().MatchString(f.Audience):
		return fmt.Errorf("google: workload_identity.audience %q is not a workload identity pool provider: //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER (IAM > Workload Identity Federation)", f.Audience)
	case sources != 1:
		return errors.New("google: workload_identity.subject_token: set one of factor (the workload's verified jwt or kubernetes token), file or credential")
	case st.Factor != "" && st.Factor != "jwt" && st.Factor != "kubernetes":
		return fmt.Errorf("google: workload_identity.subject_token.factor %q is not jwt or kubernetes", st.Factor)
	case st.Field != "" && st.Credential == "":
		return errors.New("google: workload_identity.subject_token.field is set without subject_token.credential")
	case f.SubjectTokenType != TokenTypeJWT && f.SubjectTokenType != TokenTypeIDToken:
		return fmt.Errorf("google: workload_identity.subject_token_type %q is not %s or %s", f.SubjectTokenType, TokenTypeJWT, TokenTypeIDToken)
	case f.Lifetime > maxLifetime:
		return fmt.Errorf("google: workload_identity.lifetime %s is more than Google's maximum of 12h", f.Lifetime)
	case f.Lifetime != Lifetime && f.ServiceAccount == "":
		return errors.New("google: workload_identity.lifetime needs service_account; a federated token's lifetime is the STS's")
	case p.Subject != "":
		return errors.New("google: subject (domain-wide delegation) needs a service-account key, not workload_identity")
	case p.Mode == ModeSelfSignedJWT:
		return errors.New("google: mode self_signed_jwt needs a service-account key; with workload_identity use access_token or id_token")
	case p.Mode == ModeIDToken && f.ServiceAccount == "":
		return errors.New("google: mode id_token with workload_identity needs service_account (the ID token is minted by impersonating it)")
	}
	if f.ServiceAccount != "" {
		if a, err := mail.ParseAddress(f.ServiceAccount); err != nil || a.Address != f.ServiceAccount {
			return fmt.Errorf("google: workload_identity.service_account %q is not a service account's email", f.ServiceAccount)
		}
	}
	if err := p.validateMode(); err != nil {
		return err
	}
	for name, u := range map[string]string{"sts_url": f.STSURL, "iam_credentials_url": f.IAMCredentialsURL} {
		if err := httpclient.CheckURL(u); err != nil {
			return fmt.Errorf("google: workload_identity.%s %w", name, err)
		}
	}
	return nil
}

// workloadToken is the calling workload's verified token of the kind
// SubjectToken.Factor names.
func (f *Federation) workloadToken(req providers.Request) (string, error) {
	for _, fc := range req.Workload.Factors {
		if fc.Kind == f.SubjectToken.Factor && !fc.Token.IsZero() {
			return fc.Token.Reveal(), nil
		}
	}
	return "", fmt.Errorf("workload %s presented no verified %s token to exchange (workload_identity.subject_token.factor); require that factor in the rule's workload", req.Workload.DisplayName(), f.SubjectToken.Factor)
}

// subjectToken reads the token to exchange from its source.
func (p *Provider) subjectToken(ctx context.Context, req providers.Request) (string, error) {
	f := p.WorkloadIdentity
	st := f.SubjectToken
	switch {
	case st.Factor != "":
		tok, err := f.workloadToken(req)
		if err != nil {
			return "", fmt.Errorf("google: %w", err)
		}
		return tok, nil
	case st.File != "":
		b, err := providers.ReadFile(ctx, "google: workload_identity.subject_token.file", "the token", st.File)
		if err != nil {
			return "", fmt.Errorf("%w%.0w", err, providers.ErrNotConfigured)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("google: workload_identity.subject_token.file %s is empty: %w", st.File, providers.ErrNotConfigured)
		}
		return tok, nil
	}
	in := p.Map()[st.Credential]
	if in == nil {
		return "", fmt.Errorf("google: workload_identity.subject_token.credential %q: the input credential was not provided", st.Credential)
	}
	r := req
	r.Credential = st.Credential
	c, err := in.Fetch(ctx, r)
	if err != nil {
		return "", fmt.Errorf("google: workload_identity.subject_token.credential %q: %w", st.Credential, err)
	}
	field := st.Field
	if field == "" {
		field = providers.FieldToken
	}
	s, ok := c.Field(field)
	if !ok {
		return "", fmt.Errorf("google: workload_identity.subject_token.credential %q has no field %s", st.Credential, field)
	}
	return s.Reveal(), nil
}

// federate exchanges the subject token at STS and, with a service
// account, impersonates it.
func (p *Provider) federate(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	f := p.WorkloadIdentity
	subject, err := p.subjectToken(ctx, req)
	if err != nil {
		return nil, err
	}
	scope := strings.Join(p.Scopes, " ")
	if f.ServiceAccount != "" {
		// Impersonation needs the federated token to reach the IAM
		// Credentials API; the final token gets the configured scopes.
		scope = cloudPlatformScope
	}
	fed, err := p.stsExchange(ctx, req, subject, scope)
	if err != nil {
		return nil, err
	}
	if f.ServiceAccount == "" {
		return fed, nil
	}
	federated, _ := fed.Field(providers.FieldToken)
	if p.Mode == ModeIDToken {
		return p.generateIDToken(ctx, federated.Reveal())
	}
	return p.generateAccessToken(ctx, federated.Reveal())
}

// stsExchange is the RFC 8693 token exchange at Google's STS.
func (p *Provider) stsExchange(ctx context.Context, req providers.Request, subject, scope string) (*providers.Credential, error) {
	f := p.WorkloadIdentity
	who := "the gateway's token"
	if f.SubjectToken.Factor != "" {
		who = "workload " + req.Workload.DisplayName() + "'s " + f.SubjectToken.Factor + " token"
	}
	op := fmt.Sprintf("google: token exchange of %s at %s", who, httpclient.Display(f.STSURL))
	form := url.Values{
		"grant_type":           {grantTokenExchange},
		"audience":             {f.Audience},
		"scope":                {scope},
		"requested_token_type": {tokenTypeAccessToken},
		"subject_token":        {subject},
		"subject_token_type":   {f.SubjectTokenType},
	}
	a, err := p.post(ctx, op, f.STSURL, "application/x-www-form-urlencoded", []byte(form.Encode()), "")
	if err != nil {
		return nil, err
	}
	switch {
	case a.status == http.StatusOK:
	case a.code == "invalid_grant" || a.status == http.StatusUnauthorized:
		return nil, fmt.Errorf("%s: Google's STS refused the subject token (%s): check that the pool provider trusts the token's issuer, that one of the token's audiences is among its allowed audiences, that its attribute condition admits the token, and that the token has not expired", op, orStatus(a))
	case a.code == "invalid_target":
		return nil, fmt.Errorf("%s: Google's STS does not know the pool provider (invalid_target): check workload_identity.audience (the provider must exist and be enabled)", op)
	case a.code == "invalid_scope":
		return nil, fmt.Errorf("%s: Google's STS refused the scopes (invalid_scope): check scopes", op)
	default:
		return nil, a.refused(op)
	}
	var out struct {
		AccessToken string          `json:"access_token"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil || out.AccessToken == "" {
		return nil, fmt.Errorf("%s: the answer has no access_token; check that sts_url is Google's STS", op)
	}
	return accessTokenCredential(op, out.AccessToken, a.start, out.ExpiresIn)
}

// orStatus is the answer's error code, or its status.
func orStatus(a *answer) string {
	if a.code != "" && len(a.code) <= 40 {
		return a.code
	}
	return a.text
}

// impersonationError words a refusal of the IAM Credentials API.
func (p *Provider) impersonationError(op string, a *answer) error {
	sa := p.WorkloadIdentity.ServiceAccount
	switch {
	case a.status == http.StatusUnauthorized:
		return fmt.Errorf("%s: the IAM Credentials API refused the federated token (401 %s): check that the pool provider's project has the IAM Service Account Credentials API enabled", op, orStatus(a))
	case a.status == http.StatusForbidden:
		return fmt.Errorf("%s: the federated identity may not impersonate %s (403 %s): grant roles/iam.workloadIdentityUser on the service account to the pool's principal (principal://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/subject/SUBJECT or a principalSet)", op, sa, orStatus(a))
	case a.status == http.StatusNotFound:
		return fmt.Errorf("%s: Google does not know the service account %s (404): check workload_identity.service_account", op, sa)
	case a.status == http.StatusBadRequest:
		return fmt.Errorf("%s: the IAM Credentials API refused the request (400 %s): check scopes, lifetime (over 1h needs the organisation policy constraints/iam.allowServiceAccountCredentialLifetimeExtension) and target_audience", op, orStatus(a))
	}
	return a.refused(op)
}

// generateAccessToken impersonates the service account.
func (p *Provider) generateAccessToken(ctx context.Context, federated string) (*providers.Credential, error) {
	f := p.WorkloadIdentity
	endpoint := f.IAMCredentialsURL + "/v1/projects/-/serviceAccounts/" + url.PathEscape(f.ServiceAccount) + ":generateAccessToken"
	op := fmt.Sprintf("google: impersonation of %s at %s", f.ServiceAccount, httpclient.Display(f.IAMCredentialsURL))
	body, _ := json.Marshal(map[string]any{"scope": p.Scopes, "lifetime": fmt.Sprintf("%ds", int64(f.Lifetime.Seconds()))})
	a, err := p.post(ctx, op, endpoint, "application/json", body, federated)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, p.impersonationError(op, a)
	}
	var out struct {
		AccessToken string    `json:"accessToken"`
		ExpireTime  time.Time `json:"expireTime"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil || out.AccessToken == "" || out.ExpireTime.IsZero() {
		return nil, fmt.Errorf("%s: the answer has no accessToken and expireTime; check that iam_credentials_url is Google's IAM Credentials API", op)
	}
	// expireTime is on Google's clock: counted on the gateway's from the
	// answer's Date.
	exp := providers.ServerExpiry(a.log, op, out.ExpireTime, a.date, a.start)
	if !exp.After(a.start.Add(expiryMargin)) {
		return nil, fmt.Errorf("%s: the answer's expireTime is %s: the access token expires at it, already past or within %s by the clock of the answer (its Date header; without one, the gateway's clock: check it): %w: %w", op, out.ExpireTime.UTC().Format(time.RFC3339), expiryMargin, providers.ErrBadLifetime, providers.ErrUnavailable)
	}
	return &providers.Credential{
		Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(out.AccessToken)},
		Expiry: exp.Add(-expiryMargin),
	}, nil
}

// generateIDToken mints an ID token of the service account for
// target_audience.
func (p *Provider) generateIDToken(ctx context.Context, federated string) (*providers.Credential, error) {
	f := p.WorkloadIdentity
	endpoint := f.IAMCredentialsURL + "/v1/projects/-/serviceAccounts/" + url.PathEscape(f.ServiceAccount) + ":generateIdToken"
	op := fmt.Sprintf("google: ID token of %s for %s at %s", f.ServiceAccount, p.TargetAudience, httpclient.Display(f.IAMCredentialsURL))
	body, _ := json.Marshal(map[string]any{"audience": p.TargetAudience, "includeEmail": true})
	a, err := p.post(ctx, op, endpoint, "application/json", body, federated)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, p.impersonationError(op, a)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil || out.Token == "" {
		return nil, fmt.Errorf("%s: the answer has no token; check that iam_credentials_url is Google's IAM Credentials API", op)
	}
	return idTokenCredential(op, out.Token, a)
}
