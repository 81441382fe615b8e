package gateway

import (
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/credgate/credgate/identity/runtoken"
)

// Admin API reason codes of the run-token endpoints.
const (
	codeRunTokensOff     = "run_tokens_off"
	codeWorkloadNotAllow = "workload_not_allowed"
	codeRunTokenUnavail  = "revocation_unavailable"
)

// newRunTokens builds the issuer of run_tokens, sharing its revocation
// list through cache.redis when the gateway has it.
func (g *Gateway) newRunTokens() (*runtoken.Issuer, error) {
	opts := runtoken.Options{Log: g.log.With(slog.String("component", "run_tokens"))}
	if g.shared != nil {
		opts.Redis = g.shared.rdb
		opts.Namespace = g.cfg.Cache.Redis.Namespace
		opts.Timeout = g.cfg.Cache.Redis.Timeout.D()
		opts.ResyncInterval = g.cfg.Admin.ResyncInterval.D()
	}
	return runtoken.New(*g.cfg.RunTokens, opts)
}

// RunTokenRequest is the body of POST /admin/v1/run-tokens: the admin
// API's wire type, shared with `credgate run`.
type RunTokenRequest struct {
	// Workload is the workload the token names (its sub claim).
	Workload string `json:"workload"`
	// TTL is the token's lifetime ("15m"); empty for run_tokens.ttl.
	TTL string `json:"ttl,omitempty"`
	// By says who asks (declared, logged).
	By string `json:"by,omitempty"`
}

// RunTokenResponse answers POST /admin/v1/run-tokens.
type RunTokenResponse struct {
	Token    string    `json:"token"`
	ID       string    `json:"id"`
	Workload string    `json:"workload"`
	Issuer   string    `json:"issuer"`
	Expires  time.Time `json:"expires"`
}

// RunTokenRevokeRequest is the body of POST /admin/v1/run-tokens/revoke.
type RunTokenRevokeRequest struct {
	Token string `json:"token"`
}

// RunTokenRevokeResponse answers POST /admin/v1/run-tokens/revoke.
type RunTokenRevokeResponse struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
	// Scope is "fleet" (written to Redis) or "replica".
	Scope string `json:"scope"`
}

// runTokenRoutes adds the interception CA and the run-token API to the
// admin mux:
//
//	GET  /admin/v1/ca.pem                   the interception CA certificate (public)
//	GET  /admin/v1/run-tokens/jwks.json     the keys that verify run tokens (public)
//	POST /admin/v1/run-tokens               issue a token (admin token)
//	POST /admin/v1/run-tokens/revoke        revoke one (admin token)
func (g *Gateway) runTokenRoutes(mux *adminMux) {
	mux.handle("GET /admin/v1/ca.pem", false, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Cache-Control", "no-store")
		_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: g.issuer.CACertificate().Raw})
	})
	mux.handle("GET /admin/v1/run-tokens/jwks.json", false, func(w http.ResponseWriter, _ *http.Request) {
		if g.runTokens == nil {
			adminError(w, http.StatusNotFound, codeRunTokensOff, "run tokens are off: set run_tokens in the gateway config")
			return
		}
		b, err := g.runTokens.JWKS()
		if err != nil {
			adminError(w, http.StatusInternalServerError, codeRunTokensOff, "cannot encode the JWKS; see the gateway log")
			g.log.Error("run tokens: JWKS", slog.Any("error", err))
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
	mux.handle("POST /admin/v1/run-tokens", true, g.serveRunTokenIssue)
	mux.handle("POST /admin/v1/run-tokens/revoke", true, g.serveRunTokenRevoke)
}

// runTokenCall checks the admin token and decodes the body into v;
// false when it answered the request itself. The admin wrapper
// (serveAdmin) writes every run-token call's audit line.
func (g *Gateway) runTokenCall(w http.ResponseWriter, r *http.Request, v any) bool {
	if st, code, reason := g.adminRefusal(r); st != 0 {
		if st == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="credgate admin"`)
		}
		adminError(w, st, code, reason)
		return false
	}
	if g.runTokens == nil {
		adminError(w, http.StatusNotFound, codeRunTokensOff, "run tokens are off: set run_tokens (with the workloads credgate run may ask for) in the gateway config")
		return false
	}
	if err := decodeAdminBody(w, r, 32<<10, v); err != nil {
		adminError(w, http.StatusBadRequest, codeAdminBadReq, "the body is not the JSON object this endpoint takes: "+err.Error())
		return false
	}
	return true
}

// serveRunTokenIssue handles POST /admin/v1/run-tokens.
func (g *Gateway) serveRunTokenIssue(w http.ResponseWriter, r *http.Request) {
	var req RunTokenRequest
	if !g.runTokenCall(w, r, &req) {
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			adminError(w, http.StatusBadRequest, codeAdminBadReq, "ttl: not a duration such as 15m")
			return
		}
		ttl = d
	}
	tok, err := g.runTokens.Issue(req.Workload, ttl)
	switch {
	case errors.Is(err, runtoken.ErrWorkloadNotAllowed):
		adminError(w, http.StatusForbidden, codeWorkloadNotAllow, err.Error())
		return
	case err != nil:
		adminError(w, http.StatusBadRequest, codeAdminBadReq, err.Error())
		return
	}
	g.log.Info("run token issued", slog.String("workload", tok.Workload), slog.String("jti", tok.ID),
		slog.Time("expires", tok.Expires), slog.String("by", req.By), slog.String("source", sourceString(evidence(r))))
	writeJSON(w, http.StatusOK, RunTokenResponse{Token: tok.Value.Reveal(), ID: tok.ID, Workload: tok.Workload,
		Issuer: g.runTokens.IssuerName(), Expires: tok.Expires})
}

// serveRunTokenRevoke handles POST /admin/v1/run-tokens/revoke.
func (g *Gateway) serveRunTokenRevoke(w http.ResponseWriter, r *http.Request) {
	var req RunTokenRevokeRequest
	if !g.runTokenCall(w, r, &req) {
		return
	}
	rev, err := g.runTokens.Revoke(r.Context(), req.Token)
	switch {
	case errors.Is(err, runtoken.ErrUnavailable):
		// Revoked on this replica; the others learn it when the token
		// expires. Said, not hidden.
		adminError(w, http.StatusServiceUnavailable, codeRunTokenUnavail, "revoked on this replica only: Redis did not answer, so the other replicas accept the token until it expires")
		return
	case err != nil:
		adminError(w, http.StatusBadRequest, codeAdminBadReq, err.Error())
		return
	}
	g.log.Info("run token revoked", slog.String("workload", rev.Workload), slog.String("jti", rev.ID), slog.Bool("shared", rev.Shared))
	scope := "replica"
	if rev.Shared {
		scope = "fleet"
	}
	writeJSON(w, http.StatusOK, RunTokenRevokeResponse{ID: rev.ID, Expires: rev.Expires, Scope: scope})
}
