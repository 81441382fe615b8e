package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// saJWT returns a service-account token as the API server would sign it
// (the signature is the API server's to check, and the test API server
// checks nothing): a JWT whose payload is payload.
func saJWT(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc([]byte(payload)) + ".c2lnbmF0dXJl"
}

// projectedToken returns a projected service-account token of sub (a
// JWT with exp, a year after t0) for the test API server to authenticate.
func projectedToken(sub string) string {
	return saJWT(`{"iss":"https://kubernetes.default.svc","sub":"` + sub + `","exp":` + strconv.FormatInt(t0.AddDate(1, 0, 0).Unix(), 10) + `}`)
}

// TestTokenReviewRequiresExp checks the class "a service-account token
// that never expires identifies a workload": a legacy token (a Secret of
// type kubernetes.io/service-account-token, a JWT with no exp), a token
// whose exp is not a positive number, and an opaque token the API server
// authenticates are refused by default, with an error naming the fix
// (projected tokens) and the setting that accepts them; with
// identity.kubernetes.allow_tokens_without_exp they are accepted, the
// factor expiring with the review's answer. A projected token (with exp)
// is accepted either way. Before, every token without exp was accepted:
// 4 of 9 cases failed.
func TestTokenReviewRequiresExp(t *testing.T) {
	future := t0.Unix() + 3600
	cases := []struct {
		name  string
		tok   string
		allow bool
		ok    bool
	}{
		{name: "projected token (exp)", tok: saJWT(`{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:billing:api","exp":` + strconv.FormatInt(future, 10) + `}`), ok: true},
		{name: "legacy token (no exp)", tok: saJWT(`{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:billing:api"}`)},
		{name: "exp zero", tok: saJWT(`{"sub":"system:serviceaccount:billing:api","exp":0}`)},
		{name: "exp a string", tok: saJWT(`{"sub":"system:serviceaccount:billing:api","exp":"` + strconv.FormatInt(future, 10) + `"}`)},
		{name: "opaque token", tok: "opaque-service-account-token"},
		{name: "projected token, allowed", tok: saJWT(`{"sub":"system:serviceaccount:billing:api","exp":` + strconv.FormatInt(future, 10) + `}`), allow: true, ok: true},
		{name: "legacy token, allowed", tok: saJWT(`{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:billing:api"}`), allow: true, ok: true},
		{name: "exp zero, allowed", tok: saJWT(`{"sub":"system:serviceaccount:billing:api","exp":0}`), allow: true, ok: true},
		{name: "opaque token, allowed", tok: "opaque-service-account-token", allow: true, ok: true},
	}
	failed := 0
	for _, tc := range cases {
		ok := t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			api := newAPIServer(t)
			api.authenticate(tc.tok, "system:serviceaccount:billing:api", nil, "")
			cfg := api.config(t)
			cfg.AllowTokensWithoutExp = tc.allow
			v := newTestTokenReview(t, clock, cfg, nil)
			for range 2 { // the review, then the cached answer
				f, err := v.Verify(context.Background(), bearer(tc.tok))
				if tc.ok {
					if err != nil || f == nil {
						t.Fatalf("Verify: %v, %v; want the token accepted", f, err)
					}
					if want := t0.Add(DefaultTokenReviewCacheTTL); !f.Expires.Equal(want) {
						t.Errorf("Expires %v, want the review's answer's %v", f.Expires, want)
					}
					continue
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Verify: %v, %v; want ErrInvalid", f, err)
				}
				for _, want := range []string{"no exp", "projected", "allow_tokens_without_exp"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
				if strings.Contains(err.Error(), tc.tok) {
					t.Errorf("error %q contains the token", err)
				}
			}
		})
		if !ok {
			failed++
		}
	}
	t.Logf("%d of %d cases failed", failed, len(cases))
}
