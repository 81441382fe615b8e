package identity

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// TestTokenTimeClaimsAgree is a differential test of the time claims of
// tokens: the same exp, nbf and iat get the same verdict from every
// issuer profile (Kubernetes service-account tokens, SPIFFE JWT-SVIDs,
// GitHub Actions, any OIDC issuer), the first time a token is seen and
// again from the verified-token cache as the clock moves on, and that
// verdict is the one docs/config.md (identity.jwt) documents, evaluated
// here independently: with leeway s = clock_skew, a token is accepted at
// now when it has an exp, exp >= now - s, nbf (if any) <= now + s, iat
// (if any) <= now + s, and its validity is not empty (nbf and iat not
// after exp). Before the fix 16 of the 60 verdicts differed from the
// reference: the tokens whose nbf or iat is after their exp, valid at no
// instant, were accepted by every profile.
func TestTokenTimeClaimsAgree(t *testing.T) {
	const s = DefaultClockSkew
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(t0.Add(d)) }
	cases := []struct {
		name          string
		exp, nbf, iat *jwt.NumericDate
	}{
		{"valid", at(10 * time.Minute), at(-time.Minute), at(-time.Minute)},
		{"exp exactly now", at(0), at(-time.Minute), at(-time.Minute)},
		{"exp at the edge of the leeway", at(-s), at(-time.Hour), at(-time.Hour)},
		{"exp a second past the leeway", at(-s - time.Second), at(-time.Hour), at(-time.Hour)},
		{"nbf at the edge of the leeway", at(time.Hour), at(s), nil},
		{"nbf a second past the leeway", at(time.Hour), at(s + time.Second), nil},
		{"iat at the edge of the leeway", at(time.Hour), nil, at(s)},
		{"iat a second past the leeway", at(time.Hour), nil, at(s + time.Second)},
		{"no exp", nil, at(-time.Minute), at(-time.Minute)},
		{"only exp", at(time.Minute), nil, nil},
		{"exp ten years ahead", at(10 * 365 * 24 * time.Hour), nil, at(-time.Minute)},
		{"nbf after exp, both within the leeway", at(5 * time.Second), at(20 * time.Second), nil},
		{"iat after exp, both within the leeway", at(5 * time.Second), nil, at(20 * time.Second)},
		{"nbf after exp, in the past", at(-20 * time.Second), at(-10 * time.Second), nil},
		{"iat after exp, in the past", at(-20 * time.Second), nil, at(-10 * time.Second)},
	}
	reference := func(exp, nbf, iat *jwt.NumericDate, now time.Time) bool {
		switch {
		case exp == nil, exp.Time().Before(now.Add(-s)):
			return false
		case nbf != nil && (nbf.Time().After(now.Add(s)) || nbf.Time().After(exp.Time())):
			return false
		case iat != nil && (iat.Time().After(now.Add(s)) || iat.Time().After(exp.Time())):
			return false
		}
		return true
	}

	clock := newFakeClock()
	dir := t.TempDir()
	k8sKey, spiffeKey, ghKey, oidcKey := newRSAKey(t, "k8s-1"), newECKey(t, "spire-1"), newRSAKey(t, "gh-1"), newECKey(t, "idp-1")
	const (
		k8sIss = "https://kubernetes.default.svc.cluster.local"
		ghIss  = "https://token.actions.githubusercontent.com"
		idpIss = "https://idp.example.org"
	)
	v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{
		{Issuer: k8sIss, Profile: ProfileKubernetes, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, dir, "k8s.json", jwks(t, k8sKey))},
		{Profile: ProfileSPIFFE, TrustDomain: "prod.example.org", Audiences: []string{"credgate"}, JWKSFile: writeFile(t, dir, "spire.json", jwks(t, spiffeKey))},
		{Issuer: ghIss, Profile: ProfileGitHubActions, Audiences: []string{"https://github.com/example"}, JWKSFile: writeFile(t, dir, "gh.json", jwks(t, ghKey))},
		{Issuer: idpIss, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, dir, "idp.json", jwks(t, oidcKey))},
	}})
	profiles := []struct {
		name string
		mint func(c jwt.Claims) string
	}{
		{ProfileKubernetes, func(c jwt.Claims) string {
			c.Issuer, c.Subject, c.Audience = k8sIss, "system:serviceaccount:billing:api", jwt.Audience{"credgate"}
			return k8sKey.sign(t, c, k8sClaims("billing", "api", "api-1"))
		}},
		{ProfileSPIFFE, func(c jwt.Claims) string {
			c.Subject, c.Audience = "spiffe://prod.example.org/ns/billing/sa/api", jwt.Audience{"credgate"}
			return spiffeKey.sign(t, c)
		}},
		{ProfileGitHubActions, func(c jwt.Claims) string {
			c.Issuer, c.Subject, c.Audience = ghIss, "repo:example/app:ref:refs/heads/main", jwt.Audience{"https://github.com/example"}
			return ghKey.sign(t, c, map[string]any{"repository": "example/app", "repository_owner": "example", "ref": "refs/heads/main"})
		}},
		{ProfileOIDC, func(c jwt.Claims) string {
			c.Issuer, c.Subject, c.Audience = idpIss, "svc-42", jwt.Audience{"credgate"}
			return oidcKey.sign(t, c)
		}},
	}
	failed, total := 0, 0
	for _, tc := range cases {
		want := reference(tc.exp, tc.nbf, tc.iat, t0)
		for _, p := range profiles {
			tok := p.mint(jwt.Claims{Expiry: tc.exp, NotBefore: tc.nbf, IssuedAt: tc.iat})
			f, err := v.Verify(context.Background(), bearer(tok))
			got := err == nil && f != nil
			total++
			if got != want {
				failed++
				t.Errorf("%s, %s: accepted %v (err %v), reference %v", tc.name, p.name, got, err, want)
			}
		}
	}
	// The same tokens from the cache as the clock moves on: each is
	// accepted exactly while the reference accepts it, at the edges of
	// its exp and leeway.
	for _, p := range profiles {
		tok := p.mint(jwt.Claims{Expiry: at(time.Minute), IssuedAt: at(-time.Minute)})
		for _, step := range []struct {
			to   time.Duration
			want bool
		}{{0, true}, {time.Minute, true}, {time.Minute + s, true}, {time.Minute + s + time.Second, false}, {time.Minute, true}} {
			clock.mu.Lock()
			clock.t = t0.Add(step.to)
			clock.mu.Unlock()
			f, err := v.Verify(context.Background(), bearer(tok))
			if got := err == nil && f != nil; got != step.want {
				t.Errorf("%s at exp%+v: accepted %v (err %v), want %v", p.name, step.to-time.Minute, got, err, step.want)
			}
		}
		clock.mu.Lock()
		clock.t = t0
		clock.mu.Unlock()
	}
	t.Logf("%d of %d verdicts differed from the reference", failed, total)
}

// TestTokenMaxLifetime: an issuer's max_lifetime refuses tokens valid for
// longer (exp minus iat, or minus now without iat), with the same
// clock_skew leeway as the other time claims; 0 is no maximum. Before
// the setting existed, the 4 tokens over it were accepted.
func TestTokenMaxLifetime(t *testing.T) {
	const s = DefaultClockSkew
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(t0.Add(d)) }
	clock := newFakeClock()
	key := newECKey(t, "idp-1")
	const iss = "https://idp.example.org"
	v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{
		{Issuer: iss, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, t.TempDir(), "idp.json", jwks(t, key)), MaxLifetime: time.Hour},
	}})
	for _, tc := range []struct {
		name     string
		exp, iat *jwt.NumericDate
		want     bool
	}{
		{"an hour", at(59 * time.Minute), at(-time.Minute), true},
		{"an hour and the leeway", at(time.Hour + s - time.Minute), at(-time.Minute), true},
		{"a second more", at(time.Hour + s + time.Second - time.Minute), at(-time.Minute), false},
		{"a day", at(23 * time.Hour), at(-time.Hour), false},
		{"ten years", at(10 * 365 * 24 * time.Hour), at(-time.Minute), false},
		{"no iat: an hour left", at(time.Hour), nil, true},
		{"no iat: two hours left", at(2 * time.Hour), nil, false},
	} {
		tok := key.sign(t, jwt.Claims{Issuer: iss, Subject: "svc", Audience: jwt.Audience{"credgate"}, Expiry: tc.exp, IssuedAt: tc.iat})
		f, err := v.Verify(context.Background(), bearer(tok))
		if got := err == nil && f != nil; got != tc.want {
			t.Errorf("%s: accepted %v (err %v), want %v", tc.name, got, err, tc.want)
		}
		if err != nil && !tc.want && !strings.Contains(err.Error(), "longer than the issuer's max_lifetime 1h0m0s") {
			t.Errorf("%s: error %q does not name max_lifetime", tc.name, err)
		}
	}
	for _, bad := range []time.Duration{-time.Second, 500 * time.Millisecond} {
		cfg := Config{JWT: JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"credgate"}, JWKSFile: "/x.json", MaxLifetime: bad}}}}.WithDefaults()
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "max_lifetime") {
			t.Errorf("max_lifetime %v: %v, want an error naming it", bad, err)
		}
	}
}

// TestTokenReviewExpAgrees: the kubernetes factor (TokenReview) gives a
// token's exp the verdict the jwt factor gives it, with the same
// clock_skew, whatever leeway the API server allows itself (kube-apiserver
// allows a minute; the fake here authenticates whatever it was told to).
// Before the fix the API server's verdict stood: the 2 tokens expired
// beyond clock_skew but within the API server's leeway were accepted.
func TestTokenReviewExpAgrees(t *testing.T) {
	const s = DefaultClockSkew
	clock := newFakeClock()
	api := newAPIServer(t)
	v := newTestTokenReview(t, clock, api.config(t), nil)
	key := newRSAKey(t, "k8s-1")
	for _, tc := range []struct {
		name string
		exp  time.Duration // from now
		want bool
	}{
		{"valid", 10 * time.Minute, true},
		{"exp exactly now", 0, true},
		{"exp at the edge of the leeway", -s, true},
		{"exp a second past the leeway", -s - time.Second, false},
		{"exp 59 seconds ago (within kube-apiserver's minute)", -59 * time.Second, false},
	} {
		c := std("https://kubernetes.default.svc.cluster.local", "system:serviceaccount:billing:api", "credgate")
		c.Expiry = jwt.NewNumericDate(t0.Add(tc.exp))
		c.IssuedAt, c.NotBefore = jwt.NewNumericDate(t0.Add(-time.Hour)), nil
		tok := key.sign(t, c, k8sClaims("billing", "api", "api-1"))
		api.authenticate(tok, "system:serviceaccount:billing:api", nil, "api-1")
		f, err := v.Verify(context.Background(), bearer(tok))
		if got := err == nil && f != nil; got != tc.want {
			t.Errorf("%s: accepted %v (err %v), want %v as the jwt factor", tc.name, got, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), "clock_skew") {
			t.Errorf("%s: error %q does not name clock_skew", tc.name, err)
		}
	}
}
