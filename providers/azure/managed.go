package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
)

// Managed identity sources (managed_identity.source).
const (
	// SourceAuto picks SourceAppService when IDENTITY_ENDPOINT and
	// IDENTITY_HEADER are set in the gateway's environment, else
	// SourceIMDS.
	SourceAuto = "auto"
	// SourceIMDS is the Azure Instance Metadata Service of a VM or VM
	// scale set (AKS nodes included).
	SourceIMDS = "imds"
	// SourceAppService is the local identity endpoint of App Service,
	// Azure Functions and Container Apps (IDENTITY_ENDPOINT with the
	// IDENTITY_HEADER secret).
	SourceAppService = "app_service"
)

// Managed identity endpoints and protocol constants, as Microsoft
// documents them ("How to use managed identities for Azure resources on
// an Azure VM to acquire an access token"; "Use managed identities for
// App Service and Azure Functions", REST endpoint reference).
const (
	// DefaultIMDSEndpoint is IMDS's address; the token path is added.
	DefaultIMDSEndpoint = "http://169.254.169.254"
	// IMDSTokenPath is the path of IMDS's token endpoint.
	IMDSTokenPath = "/metadata/identity/oauth2/token"
	// IMDSAPIVersion is the api-version sent to IMDS.
	IMDSAPIVersion = "2018-02-01"
	// AppServiceAPIVersion is the api-version sent to IDENTITY_ENDPOINT.
	AppServiceAPIVersion = "2019-08-01"
	// EnvIdentityEndpoint and EnvIdentityHeader are the variables App
	// Service, Functions and Container Apps set in the process.
	EnvIdentityEndpoint = "IDENTITY_ENDPOINT"
	EnvIdentityHeader   = "IDENTITY_HEADER"
	// imdsAddr is IMDS's link-local address: plain http to it cannot leave
	// the host, so it is allowed as loopback is.
	imdsAddr = "169.254.169.254"
	// miRetries is how many times a managed identity fetch retries a
	// transient answer (404 while IMDS updates or a new identity
	// propagates, 408, 410, 429, 5xx, a refused connection): MSAL's
	// three. A timeout is not retried within the fetch.
	miRetries = 3
	// miRetryBase and miRetryLimit bound the backoff between them:
	// Microsoft asks for at least a second before retrying a 5xx.
	miRetryBase  = time.Second
	miRetryLimit = 4 * time.Second
)

// ManagedIdentity selects a managed identity of the Azure resource the
// gateway runs on: the system-assigned identity (no ID set) or one
// user-assigned identity, named by exactly one of its IDs.
type ManagedIdentity struct {
	// ClientID is a user-assigned identity's client ID.
	ClientID string `yaml:"client_id"`
	// ObjectID is a user-assigned identity's object (principal) ID. It is
	// sent as object_id to IMDS and principal_id to App Service.
	ObjectID string `yaml:"object_id"`
	// ResourceID is a user-assigned identity's Azure resource ID
	// (/subscriptions/.../providers/Microsoft.ManagedIdentity/
	// userAssignedIdentities/NAME). It is sent as msi_res_id to IMDS and
	// mi_res_id to App Service.
	ResourceID string `yaml:"msi_res_id"`
	// Source is auto (default), imds or app_service.
	Source string `yaml:"source"`
	// Endpoint replaces the source's endpoint: for imds the base URL
	// (default http://169.254.169.254; the token path is added), for
	// app_service the full URL (default $IDENTITY_ENDPOINT). Plain http
	// only to loopback or 169.254.169.254.
	Endpoint string `yaml:"endpoint"`
}

// idKind returns the kind and value of the user-assigned ID set, "" for
// the system-assigned identity.
func (m *ManagedIdentity) idKind() (kind, value string) {
	switch {
	case m.ClientID != "":
		return "client_id", m.ClientID
	case m.ObjectID != "":
		return "object_id", m.ObjectID
	case m.ResourceID != "":
		return "msi_res_id", m.ResourceID
	}
	return "", ""
}

// describe names the identity in errors and logs (IDs are not secrets).
func (m *ManagedIdentity) describe() string {
	if k, v := m.idKind(); k != "" {
		return "user-assigned " + k + " " + v
	}
	return "system-assigned"
}

// guidRe is a client or object ID (compiled on first use).
var guidRe = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
})

// miResIDRe is a user-assigned identity's resource ID.
var miResIDRe = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)^/subscriptions/[^/?#\s]+/resourcegroups/[^/?#\s]+/providers/microsoft\.managedidentity/userassignedidentities/[^/?#\s]+$`)
})

// provisionManaged resolves the managed identity's source and endpoint
// from the settings and the environment (read once: the variables App
// Service sets do not change in a running process).
func (p *Provider) provisionManaged() {
	m := p.ManagedIdentity
	getenv := os.Getenv
	if m.Source == "" {
		m.Source = SourceAuto
	}
	p.miSource = m.Source
	if p.miSource == SourceAuto {
		p.miSource = SourceIMDS
		if getenv(EnvIdentityEndpoint) != "" && getenv(EnvIdentityHeader) != "" {
			p.miSource = SourceAppService
		}
	}
	switch p.miSource {
	case SourceIMDS:
		base := m.Endpoint
		if base == "" {
			base = DefaultIMDSEndpoint
		}
		p.miURL = strings.TrimSuffix(base, "/") + IMDSTokenPath
	case SourceAppService:
		p.miURL = m.Endpoint
		if p.miURL == "" {
			p.miURL = getenv(EnvIdentityEndpoint)
		}
		if h := getenv(EnvIdentityHeader); h != "" {
			p.miHeader = providers.NewSecret(h)
		}
	}
	p.miResource = p.Resource
	if p.miResource == "" {
		p.miResource = strings.TrimSuffix(p.Scope, "/.default")
	}
}

// validateManaged checks the managed_identity settings and the settings
// that do not go with it.
func (p *Provider) validateManaged() error {
	m := p.ManagedIdentity
	n := 0
	for _, v := range []string{m.ClientID, m.ObjectID, m.ResourceID} {
		if v != "" {
			n++
		}
	}
	switch {
	case p.Tenant != "":
		return errors.New("azure: tenant is not used with managed_identity (the identity belongs to the tenant of the Azure resource the gateway runs on); remove it")
	case p.ClientID != "":
		return fmt.Errorf("azure: client_id names an app registration and is not used with managed_identity; for a user-assigned identity write managed_identity: {client_id: %s}", p.ClientID)
	case p.AuthorityHost != "" && p.AuthorityHost != "public":
		return errors.New("azure: authority_host is not used with managed_identity (the token comes from the local identity endpoint); remove it, or set managed_identity.endpoint")
	case p.CACert != "":
		return errors.New("azure: ca_cert is not used with managed_identity (the local identity endpoint is plain http on the host); remove it")
	case n > 1:
		return errors.New("azure: managed_identity: set at most one of client_id, object_id and msi_res_id (the user-assigned identity to use; none for the system-assigned identity)")
	case m.ClientID != "" && !guidRe().MatchString(m.ClientID):
		return fmt.Errorf("azure: managed_identity.client_id %q is not a client ID (a GUID: the identity's Overview page in the portal)", m.ClientID)
	case m.ObjectID != "" && !guidRe().MatchString(m.ObjectID):
		return fmt.Errorf("azure: managed_identity.object_id %q is not an object (principal) ID (a GUID)", m.ObjectID)
	case m.ResourceID != "" && !miResIDRe().MatchString(m.ResourceID):
		return fmt.Errorf("azure: managed_identity.msi_res_id %q is not a user-assigned identity's resource ID (/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME)", m.ResourceID)
	}
	switch m.Source {
	case "", SourceAuto, SourceIMDS, SourceAppService:
	default:
		return fmt.Errorf("azure: managed_identity.source %q is not auto, imds or app_service", m.Source)
	}
	if m.Endpoint != "" {
		if err := checkMIEndpoint(m.Endpoint); err != nil {
			return fmt.Errorf("azure: managed_identity.endpoint %w", err)
		}
		if u, _ := url.Parse(m.Endpoint); p.miSource == SourceIMDS && u.Path != "" && u.Path != "/" {
			return fmt.Errorf("azure: managed_identity.endpoint %q must be IMDS's base URL without a path (the gateway adds %s)", httpclient.Display(m.Endpoint), IMDSTokenPath)
		}
	}
	return nil
}

// checkMIEndpoint accepts what httpclient.CheckURL accepts, and plain
// http to IMDS's link-local address, which cannot be routed off the
// host; never a query or fragment (the gateway builds the query).
func checkMIEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http URL such as %s", httpclient.Display(raw), DefaultIMDSEndpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must not carry a query or fragment", httpclient.Display(raw))
	}
	if u.Scheme == "http" && u.Hostname() == imdsAddr && u.User == nil {
		return nil
	}
	return httpclient.CheckURL(raw)
}

// checkManagedSources reports an App Service source whose environment is
// missing (providers.SourceChecker).
func (p *Provider) checkManagedSources() []providers.SourceProblem {
	if p.miSource != SourceAppService {
		return nil
	}
	var out []providers.SourceProblem
	switch {
	case p.miURL == "":
		out = append(out, providers.SourceProblem{Setting: "managed_identity.source",
			Err: fmt.Errorf("azure: managed_identity (app_service): environment variable %s is not set in the gateway's environment (App Service, Functions and Container Apps set it when an identity is enabled; enable one, or set source: imds on a VM): %w", EnvIdentityEndpoint, providers.ErrNotConfigured)})
	case p.ManagedIdentity.Endpoint == "":
		// The environment's endpoint gets the rule a configured one
		// gets: the identity header never crosses a network in clear.
		base, _, _ := strings.Cut(p.miURL, "?") // its own query is kept
		if err := checkMIEndpoint(base); err != nil {
			out = append(out, providers.SourceProblem{Setting: "managed_identity.source",
				Err: fmt.Errorf("azure: managed_identity (app_service): environment variable %s %v: %w", EnvIdentityEndpoint, err, providers.ErrNotConfigured)})
		}
	}
	if p.miHeader.IsZero() {
		out = append(out, providers.SourceProblem{Setting: "managed_identity.source",
			Err: fmt.Errorf("azure: managed_identity (app_service): environment variable %s is not set in the gateway's environment (App Service sets it with %s): %w", EnvIdentityHeader, EnvIdentityEndpoint, providers.ErrNotConfigured)})
	}
	return out
}

// miOp names a managed identity fetch in errors.
func (p *Provider) miOp() string {
	return fmt.Sprintf("azure: managed identity token (%s, %s, %s)", p.miSource, p.ManagedIdentity.describe(), p.miResource)
}

// managedOnce makes one token request to the managed identity endpoint;
// retry reports a transient failure.
func (p *Provider) managedOnce(ctx context.Context) (_ *providers.Credential, retry bool, _ error) {
	op := p.miOp()
	if probs := p.checkManagedSources(); len(probs) > 0 {
		return nil, false, fmt.Errorf("%s: %w", op, probs[0].Err)
	}
	q := url.Values{"resource": {p.miResource}}
	kind, id := p.ManagedIdentity.idKind()
	if p.miSource == SourceAppService {
		// App Service names two of the IDs otherwise than IMDS.
		switch kind {
		case "object_id":
			kind = "principal_id"
		case "msi_res_id":
			kind = "mi_res_id"
		}
		q.Set("api-version", AppServiceAPIVersion)
	} else {
		q.Set("api-version", IMDSAPIVersion)
	}
	if kind != "" {
		q.Set(kind, id)
	}
	actx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(actx, http.MethodGet, p.miURL, nil)
	if err == nil {
		// An endpoint from the environment may carry a query of its own.
		merged := hreq.URL.Query()
		for k, v := range q {
			merged[k] = v
		}
		hreq.URL.RawQuery = merged.Encode()
	}
	if err != nil {
		return nil, false, fmt.Errorf("%s: %s is not a usable endpoint URL: %w", op, httpclient.Display(p.miURL), providers.ErrNotConfigured)
	}
	hreq.Header.Set("Accept", "application/json")
	if p.miSource == SourceAppService {
		hreq.Header.Set("X-IDENTITY-HEADER", p.miHeader.Reveal())
	} else {
		hreq.Header.Set("Metadata", "true")
	}
	where := httpclient.Display(p.miURL)
	start := p.now()
	resp, err := p.client.Do(hreq)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, false, fmt.Errorf("%s: %w", op, cerr)
		}
		err, timeout := httpclient.DoError(err)
		if timeout {
			// Not retried within the fetch: off Azure, or with IMDS
			// blocked, every attempt would wait the whole timeout (no
			// host answers 169.254.169.254), holding the request for
			// minutes. The cache's error backoff tries again later.
			return nil, false, fmt.Errorf("%s: %s did not answer within %s (timeout): %s: %w", op, where, p.Timeout, p.unreachableFix(), providers.ErrUnavailable)
		}
		return nil, true, fmt.Errorf("%s: cannot reach %s (%v): %s: %w", op, where, err, p.unreachableFix(), providers.ErrUnavailable)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// NewClient never follows it: the endpoint is not the identity
		// endpoint, and what the request carries must not go elsewhere.
		loc := ""
		if u, err := hreq.URL.Parse(resp.Header.Get("Location")); err == nil && resp.Header.Get("Location") != "" {
			loc = httpclient.Display(u.String())
		}
		return nil, false, fmt.Errorf("%s: %s: %w", op, where, &httpclient.RedirectError{Status: resp.StatusCode, Location: loc})
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, true, fmt.Errorf("%s: read the answer of %s: %v: %w", op, where, err, providers.ErrUnavailable)
	}
	if resp.StatusCode == http.StatusOK {
		cred, err := p.parseManaged(data, start)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %s: %w", op, where, err)
		}
		return cred, false, nil
	}
	var me struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(data, &me)
	status := resp.Status
	if e := safe(me.Error); e != "" {
		status += " " + e
	}
	switch code := resp.StatusCode; {
	case code == http.StatusNotFound:
		return nil, true, fmt.Errorf("%s: %s answered %s: IMDS is updating, or an identity assigned moments ago has not reached the host yet; retried, and retried again after the cache's backoff: %w", op, where, status, providers.ErrUnavailable)
	case code == http.StatusGone:
		return nil, true, fmt.Errorf("%s: %s answered %s: IMDS is being updated (Microsoft: available again within 70 seconds); retried after the cache's backoff: %w", op, where, status, providers.ErrUnavailable)
	case code == http.StatusTooManyRequests:
		return nil, true, fmt.Errorf("%s: %s answered %s: the identity endpoint's throttle limit was reached (IMDS: 20 requests a second per VM); other processes on the host may be calling it: %w", op, where, status, providers.ErrUnavailable)
	case code == http.StatusRequestTimeout || code >= 500:
		return nil, true, fmt.Errorf("%s: %s answered %s: a transient failure of the identity endpoint or Entra; retry later: %w", op, where, status, providers.ErrUnavailable)
	}
	return nil, false, fmt.Errorf("%s: %s refused the request: %s: %s", op, where, status, p.managedFix(resp.StatusCode, me.Error, me.Description))
}

// unreachableFix says what to check when the endpoint cannot be reached.
func (p *Provider) unreachableFix() string {
	if p.miSource == SourceAppService {
		return "check that the app's identity is enabled and that " + EnvIdentityEndpoint + " is the endpoint App Service set"
	}
	return "managed identity needs an Azure VM or VM scale set (an AKS node) with an identity; check that nothing (a network policy, iptables, a sidecar) blocks 169.254.169.254 from the gateway"
}

// managedFix says what to change for a refusal, from the error code and
// a few known descriptions, without repeating the description.
func (p *Provider) managedFix(status int, code, desc string) string {
	d := strings.ToLower(desc)
	kind, _ := p.ManagedIdentity.idKind()
	switch {
	case strings.Contains(d, "identity not found") || strings.Contains(d, "no managed identity") || strings.Contains(d, "not assigned"):
		if kind != "" {
			return fmt.Sprintf("the %s is not assigned to this resource: assign it (the resource's Identity > User assigned) or correct managed_identity.%s", p.ManagedIdentity.describe(), kind)
		}
		return "this resource has no system-assigned identity: turn it on (the resource's Identity > System assigned), or name a user-assigned one in managed_identity"
	case strings.Contains(d, "metadata") || strings.Contains(d, "x-forwarded-for"):
		return "the identity endpoint refused the request's headers; something between the gateway and 169.254.169.254 rewrites them (a proxy must not be in this path)"
	case code == "invalid_resource" || strings.Contains(d, "aadsts500011"):
		return fmt.Sprintf("the resource %s is not known to the tenant: check resource (its application ID URI)", p.miResource)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		if p.miSource == SourceAppService {
			return "the identity endpoint refused X-IDENTITY-HEADER: " + EnvIdentityHeader + " in the gateway's environment is not the one App Service set for this process"
		}
		return "the identity endpoint refused the request: check that the resource has the identity and that the gateway runs on it"
	}
	return "check managed_identity and resource; the answer's error code names the cause"
}

// parseManaged reads a token answer: access_token, and expires_on
// (seconds since the epoch, a string in IMDS's and App Service's
// answers, a number in some others) or else expires_in.
func (p *Provider) parseManaged(data []byte, start time.Time) (*providers.Credential, error) {
	var out struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresOn   json.RawMessage `json:"expires_on"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.AccessToken == "" {
		return nil, errors.New("the answer (200) holds no access_token; check that managed_identity.endpoint is the identity endpoint")
	}
	if out.TokenType != "" && !strings.EqualFold(out.TokenType, "Bearer") {
		return nil, fmt.Errorf("token_type is %q, not Bearer", safe(out.TokenType))
	}
	exp, err := managedExpiry(out.ExpiresOn, out.ExpiresIn, start)
	if err != nil {
		return nil, err
	}
	return &providers.Credential{
		Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(out.AccessToken)},
		Expiry: cacheExpiry(start, exp),
	}, nil
}

// managedExpiry is when a managed identity token expires: at
// expires_on (seconds since the epoch, a string in IMDS's and App
// Service's answers, a number in some others), or else expires_in
// after start. An expires_on that is not a whole number falls back to
// a valid expires_in; either field 0, negative, or an expiry not after
// start is refused naming the field (providers.ErrBadLifetime), and an
// answer with neither is refused: the identity endpoints always send
// expires_on, and no default lifetime is guessed.
func managedExpiry(expiresOn, expiresIn json.RawMessage, start time.Time) (time.Time, error) {
	in, inPresent, inErr := providers.LifetimeSeconds("expires_in", expiresIn)
	if s := strings.TrimSpace(string(expiresOn)); s != "" && s != "null" {
		on, ok := jsonSeconds(expiresOn)
		switch {
		case ok:
			exp := time.Unix(on, 0)
			if err := providers.CheckExpiry("expires_on", exp, start); err != nil {
				return time.Time{}, err
			}
			return exp, nil
		case !inPresent || inErr != nil:
			return time.Time{}, fmt.Errorf("expires_on is not a whole number of seconds since the epoch, and expires_in gives no lifetime either: %w: %w", providers.ErrBadLifetime, providers.ErrUnavailable)
		}
	}
	switch {
	case inErr != nil:
		return time.Time{}, inErr
	case !inPresent:
		return time.Time{}, errors.New("the answer holds neither expires_on nor expires_in (seconds); the gateway cannot tell how long the token lasts")
	}
	return start.Add(in), nil
}

// jsonSeconds reads a whole number of seconds given as a JSON number or
// a JSON string of digits.
func jsonSeconds(raw json.RawMessage) (int64, bool) {
	s := strings.TrimSpace(string(raw))
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// cacheExpiry is when a token valid until exp, requested at start, is
// treated as expired: expiryMargin earlier, or halfway for a short one.
func cacheExpiry(start, exp time.Time) time.Time {
	life := exp.Sub(start)
	if life <= 2*expiryMargin {
		return start.Add(life / 2)
	}
	return exp.Add(-expiryMargin)
}
