package azuretest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
)

// IMDS token paths and versions, as Microsoft documents them ("How to use
// managed identities for Azure resources on an Azure VM to acquire an
// access token"; "Use managed identities for App Service and Azure
// Functions", REST endpoint reference).
const (
	// IMDSTokenPath is IMDS's token endpoint.
	IMDSTokenPath = "/metadata/identity/oauth2/token"
	// AppServiceTokenPath is where this fake serves the App Service
	// variant (the real path is whatever IDENTITY_ENDPOINT says).
	AppServiceTokenPath = "/msi/token"
)

// imdsVersions are api-versions IMDS's identity endpoint accepts.
var imdsVersions = []string{"2018-02-01", "2019-08-01", "2021-02-01", "2025-04-07"}

// ManagedIdentity is a user-assigned identity assigned to the fake's
// host.
type ManagedIdentity struct {
	// ClientID, ObjectID and ResourceID are the identity's IDs; a request
	// may name it by any one of them.
	ClientID, ObjectID, ResourceID string
}

// IMDSOptions configure an IMDS fake.
type IMDSOptions struct {
	// SystemAssigned says the host has a system-assigned identity.
	SystemAssigned bool
	// AppServiceHeader, if set, enables the App Service variant at
	// AppServiceTokenPath, which requires X-IDENTITY-HEADER to equal it.
	AppServiceHeader string
	// Resources, if set, are the only resources tokens are issued for
	// (others: 400 invalid_resource, as Entra's AADSTS500011).
	Resources []string
	// Now is the server's clock; default time.Now.
	Now func() time.Time
}

// MIIssued describes a token the IMDS fake issued.
type MIIssued struct {
	// Identity is "system" or the user-assigned identity's client ID.
	Identity string
	// Resource is the resource the token is for.
	Resource string
	// Variant is "imds" or "app_service".
	Variant string
	Expires time.Time
}

// IMDS is a fake of the managed identity endpoints of an Azure host: the
// Instance Metadata Service of a VM (GET IMDSTokenPath) and, when
// IMDSOptions.AppServiceHeader is set, the App Service / Functions
// endpoint (GET AppServiceTokenPath). It checks what the real ones check:
//
//   - IMDS: the Metadata: true header (else 400 "Required metadata header
//     not specified"); no X-Forwarded-For header (IMDS refuses requests
//     that came through a proxy); GET only; a known api-version;
//     resource; at most one of client_id, object_id and msi_res_id, naming
//     an identity assigned to the host (else 400 "Identity not found"),
//     or a system-assigned identity when none is named;
//   - App Service: X-IDENTITY-HEADER equal to the secret (else 401);
//     api-version 2019-08-01; resource; at most one of client_id,
//     principal_id (object_id as an alias) and mi_res_id (IMDS's
//     msi_res_id is refused there).
//
// It answers as they do: expires_in, expires_on and not_before as strings
// of seconds (App Service: expires_on only), resource, token_type Bearer,
// client_id. It listens on 127.0.0.1 in plain http, like the real
// endpoints (IMDS on 169.254.169.254, App Service on localhost). Its
// methods are safe for concurrent use.
type IMDS struct {
	// URL is http://127.0.0.1:PORT, the base of both endpoints.
	URL string

	srv  *httptest.Server
	opts IMDSOptions

	mu         sync.Mutex
	identities []ManagedIdentity
	issued     *fakekit.TokenStore[MIIssued]
	requests   int
	failStatus int
	failLeft   int
	refused    []string
	life       fakekit.LifetimeOverride
}

// SetLifetime makes token answers state l from now on (nil: the token's
// own again): as expires_on (the epoch second l.Seconds from now, in a
// string; l.Raw verbatim) and, from IMDS, as expires_in (l.Seconds in a
// string; l.Raw verbatim). Absent leaves both out. A lifetime shape of
// the providers conformance suite; the token itself still lives
// TokenLifetime.
func (m *IMDS) SetLifetime(l *fakekit.Lifetime) { m.life.Set(l) }

// NewIMDS starts an IMDS fake; call Close when done.
func NewIMDS(opts IMDSOptions) *IMDS {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &IMDS{opts: opts, issued: fakekit.NewTokenStore[MIIssued](opts.Now)}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	m.URL = m.srv.URL
	return m
}

// Close stops the server.
func (m *IMDS) Close() { m.srv.Close() }

// AppServiceURL is the App Service endpoint, as IDENTITY_ENDPOINT would
// give it.
func (m *IMDS) AppServiceURL() string { return m.URL + AppServiceTokenPath }

// AddIdentity assigns a user-assigned identity to the host.
func (m *IMDS) AddIdentity(id ManagedIdentity) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.identities = append(m.identities, id)
}

// FailNext makes the next n token requests answer status (IMDS's 404
// while updating, 410, 429, 500...), before any check.
func (m *IMDS) FailNext(status, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failStatus, m.failLeft = status, n
}

// Requests returns how many requests reached the fake.
func (m *IMDS) Requests() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests
}

// Grants returns how many tokens were issued.
func (m *IMDS) Grants() int { return m.issued.Grants() }

// Refused returns why requests were refused, in order.
func (m *IMDS) Refused() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.refused)
}

// Tokens returns the access tokens issued.
func (m *IMDS) Tokens() []string { return m.issued.Tokens() }

// TokenInfo returns what an unexpired token was issued for.
func (m *IMDS) TokenInfo(tok string) (MIIssued, bool) { return m.issued.Info(tok) }

// CheckToken returns nil when tok is an unexpired token for resource.
func (m *IMDS) CheckToken(tok, resource string) error { return m.issued.Check(tok, resource) }

func (m *IMDS) refuse(w http.ResponseWriter, status int, code, desc string) {
	m.mu.Lock()
	m.refused = append(m.refused, fmt.Sprintf("%d %s: %s", status, code, desc))
	m.mu.Unlock()
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (m *IMDS) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.requests++
	fail := 0
	if m.failLeft > 0 {
		m.failLeft--
		fail = m.failStatus
	}
	m.mu.Unlock()
	if fail != 0 {
		m.refuse(w, fail, "temporarily_unavailable", "injected failure "+strconv.Itoa(fail))
		return
	}
	var appService bool
	switch r.URL.Path {
	case IMDSTokenPath:
	case AppServiceTokenPath:
		if m.opts.AppServiceHeader == "" {
			http.NotFound(w, r)
			return
		}
		appService = true
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		m.refuse(w, http.StatusMethodNotAllowed, "invalid_request", "the token endpoint answers GET only")
		return
	}
	q := r.URL.Query()
	idParams := []string{"client_id", "object_id", "msi_res_id"}
	if appService {
		if h := r.Header.Get("X-IDENTITY-HEADER"); h == "" || !equal(h, m.opts.AppServiceHeader) {
			m.refuse(w, http.StatusUnauthorized, "invalid_request", "X-IDENTITY-HEADER is missing or is not this process's IDENTITY_HEADER")
			return
		}
		if v := q.Get("api-version"); v != "2019-08-01" {
			m.refuse(w, http.StatusBadRequest, "invalid_request", "api-version must be 2019-08-01")
			return
		}
		if q.Has("msi_res_id") {
			m.refuse(w, http.StatusBadRequest, "invalid_request", "unknown parameter msi_res_id (App Service names it mi_res_id)")
			return
		}
		idParams = []string{"client_id", "principal_id", "object_id", "mi_res_id"}
	} else {
		if len(r.Header.Values("X-Forwarded-For")) > 0 {
			m.refuse(w, http.StatusBadRequest, "invalid_request", "requests carrying X-Forwarded-For are refused: IMDS does not answer requests that came through a proxy")
			return
		}
		if r.Header.Get("Metadata") != "true" {
			m.refuse(w, http.StatusBadRequest, "invalid_request", "Required metadata header not specified")
			return
		}
		if !slices.Contains(imdsVersions, q.Get("api-version")) {
			m.refuse(w, http.StatusBadRequest, "invalid_request", "Required query variable 'api-version' is missing or invalid")
			return
		}
	}
	resource := q.Get("resource")
	if resource == "" || len(q["resource"]) > 1 {
		m.refuse(w, http.StatusBadRequest, "invalid_request", "Required audience parameter not specified")
		return
	}
	if len(m.opts.Resources) > 0 && !slices.Contains(m.opts.Resources, resource) {
		m.refuse(w, http.StatusBadRequest, "invalid_resource", "AADSTS500011: The resource principal named "+resource+" was not found in the tenant.")
		return
	}
	var named []string
	for _, k := range idParams {
		if q.Has(k) {
			named = append(named, k)
		}
	}
	if len(named) > 1 {
		m.refuse(w, http.StatusBadRequest, "invalid_request", "only one of "+strings.Join(idParams, ", ")+" may be given")
		return
	}
	identity := ""
	if len(named) == 0 {
		if !m.opts.SystemAssigned {
			m.refuse(w, http.StatusBadRequest, "invalid_request", "Identity not found")
			return
		}
		identity = "system"
	} else {
		v := q.Get(named[0])
		m.mu.Lock()
		for _, id := range m.identities {
			switch named[0] {
			case "client_id":
				if strings.EqualFold(id.ClientID, v) {
					identity = id.ClientID
				}
			case "object_id", "principal_id":
				if strings.EqualFold(id.ObjectID, v) {
					identity = id.ClientID
				}
			case "msi_res_id", "mi_res_id":
				if strings.EqualFold(id.ResourceID, v) {
					identity = id.ClientID
				}
			}
		}
		m.mu.Unlock()
		if identity == "" {
			m.refuse(w, http.StatusBadRequest, "invalid_request", "Identity not found")
			return
		}
	}
	now := m.opts.Now()
	tok := "eyMI." + newID() + newID()
	iss := MIIssued{Identity: identity, Resource: resource, Variant: "imds", Expires: now.Add(TokenLifetime)}
	if appService {
		iss.Variant = "app_service"
	}
	m.issued.Add(tok, iss, iss.Resource, iss.Expires)
	clientID := identity
	if identity == "system" {
		clientID = "00000000-0000-0000-0000-000000000001"
	}
	body := map[string]string{
		"access_token": tok,
		"expires_on":   strconv.FormatInt(iss.Expires.Unix(), 10),
		"resource":     resource,
		"token_type":   "Bearer",
		"client_id":    clientID,
	}
	if !appService {
		body["refresh_token"] = ""
		body["expires_in"] = strconv.Itoa(int(TokenLifetime.Seconds()))
		body["ext_expires_in"] = body["expires_in"]
		body["not_before"] = strconv.FormatInt(now.Unix(), 10)
	}
	answer := map[string]any{}
	for k, v := range body {
		answer[k] = v
	}
	if l, ok := m.life.Get(); ok {
		delete(answer, "expires_on")
		delete(answer, "expires_in")
		if raw, ok := l.JSON(); ok {
			on := raw
			if l.Raw == "" {
				raw = strconv.Quote(raw)
				on = strconv.Quote(strconv.FormatInt(now.Unix()+l.Seconds, 10))
			}
			answer["expires_on"] = json.RawMessage(on)
			if !appService {
				answer["expires_in"] = json.RawMessage(raw)
			}
		}
	}
	writeJSON(w, http.StatusOK, answer)
}
