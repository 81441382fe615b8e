package httpclient_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/policy"
)

// urlSetting is one setting naming an endpoint credgate sends secrets
// to, or fetches keys or identities from.
type urlSetting struct {
	name string
	// policy returns a credential's settings with the URL in place ("" when
	// the setting is in the gateway config rather than the policy).
	policy func(u string) string
	// config returns an identity config with the URL in place.
	config func(u string) identity.Config
	// httpsOnly: plain http is refused even to loopback (identity keys and
	// TokenReview, which were https-only before plain http was allowed to
	// loopback elsewhere; they stay so).
	httpsOnly bool
}

var urlSettings = []urlSetting{
	{name: "oauth2 token_url", policy: func(u string) string {
		return "provider: oauth2\n    token_url: " + u + "/token\n    client_id: c\n    client_secret: {value: s}"
	}},
	{name: "oauth2 client_key.transit server.address", policy: func(u string) string {
		return "provider: oauth2\n    token_url: https://auth.example/token\n    client_id: c\n    client_auth: private_key_jwt\n    client_key: {algorithm: ES256, transit: {key: k, server: {address: '" + u + "', auth: {method: token}}}}"
	}},
	{name: "vault server.address", policy: func(u string) string {
		return "provider: vault\n    server: {address: '" + u + "', auth: {method: token}}\n    path: secret/data/x"
	}},
	{name: "vault-pki server.address", policy: func(u string) string {
		return "provider: vault-pki\n    server: {address: '" + u + "', auth: {method: token}}\n    role: r\n    common_name: x"
	}},
	{name: "awssts endpoint", policy: func(u string) string {
		return "provider: awssts\n    role_arn: arn:aws:iam::123456789012:role/r\n    endpoint: " + u
	}},
	{name: "identity posture.url", config: func(u string) identity.Config {
		return identity.Config{Posture: &identity.PostureConfig{URL: u + "/posture"}}
	}},
	{name: "identity jwt jwks_url", httpsOnly: true, config: func(u string) identity.Config {
		return identity.Config{JWT: identity.JWTConfig{Issuers: []identity.IssuerConfig{{Issuer: "https://i.example", Audiences: []string{"a"}, JWKSURL: u + "/jwks"}}}}
	}},
	{name: "identity jwt discovery_url", httpsOnly: true, config: func(u string) identity.Config {
		return identity.Config{JWT: identity.JWTConfig{Issuers: []identity.IssuerConfig{{Issuer: "https://i.example", Audiences: []string{"a"}, DiscoveryURL: u + "/.well-known/openid-configuration"}}}}
	}},
	{name: "identity kubernetes.api_server", httpsOnly: true, config: func(u string) identity.Config {
		return identity.Config{Kubernetes: &identity.KubernetesConfig{APIServer: u, Audiences: []string{"a"}}}
	}},
}

// check loads the setting with URL u and returns the error.
func (s urlSetting) check(u string) error {
	if s.config != nil {
		return s.config(u).WithDefaults().Validate()
	}
	doc := "credentials:\n  c:\n    " + s.policy(u) + "\n"
	_, err := policy.Parse(context.Background(), "policy.yaml", []byte(doc))
	return err
}

// TestPlainHTTPOnlyToLoopback is the test of the class "an endpoint that
// receives secrets or hands out keys is reached over https, plain http
// only to loopback", over every such URL setting.
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	posRE := regexp.MustCompile(`^policy\.yaml:\d+:\d+: `)
	for _, s := range urlSettings {
		t.Run(s.name, func(t *testing.T) {
			for _, u := range []string{"https://endpoint.example", "https://10.0.0.7:8443"} {
				if err := s.check(u); err != nil {
					t.Errorf("%s: %v", u, err)
				}
			}
			for _, u := range []string{"http://127.0.0.1:8200", "http://127.3.4.5", "http://[::1]:9000", "http://localhost:8080"} {
				err := s.check(u)
				switch {
				case !s.httpsOnly && err != nil:
					t.Errorf("%s (loopback) refused: %v", u, err)
				case s.httpsOnly && (err == nil || !strings.Contains(err.Error(), "must use https")):
					t.Errorf("%s (loopback, https-only setting) = %v, want refused with must use https", u, err)
				}
			}
			for _, u := range []string{"http://endpoint.example", "http://10.0.0.7:8200", "http://[fd00::1]", "http://localhost.example.com", "http://127.0.0.1.nip.io"} {
				err := s.check(u)
				if err == nil {
					t.Errorf("%s accepted; plain http to a host that is not loopback must be refused", u)
					continue
				}
				msg := err.Error()
				if !strings.Contains(msg, "use https") && !strings.Contains(msg, "must use https") {
					t.Errorf("%s: %v: the error does not say to use https", u, err)
				}
				if s.policy != nil && !posRE.MatchString(msg) {
					t.Errorf("%s: %v: the error has no FILE:LINE:COL", u, err)
				}
				field := s.name[strings.LastIndex(s.name, " ")+1:]
				if !strings.Contains(msg, field) {
					t.Errorf("%s: %v: the error does not name %s", u, err, field)
				}
			}
		})
	}
}
