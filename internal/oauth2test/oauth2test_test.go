package oauth2test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"
)

// TestIntrospect issues a token with client credentials and checks that
// the introspection endpoint says it is active, that an unknown token is
// not, that the resource server must authenticate, that FailWith
// fails the token endpoint but not introspection, and that IssuedTokens
// lists the token issued (and no token of a failed request).
func TestIntrospect(t *testing.T) {
	s := New(Options{})
	t.Cleanup(s.Close)
	s.AddSecretClient("app", "app-secret")
	s.AddSecretClient("api", "api-secret")
	cc := clientcredentials.Config{ClientID: "app", ClientSecret: "app-secret", TokenURL: s.TokenURL()}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := s.IssuedTokens(); len(got) != 1 || got[0] != tok.AccessToken {
		t.Errorf("IssuedTokens: %d tokens, want the one issued", len(got))
	}
	ask := func(id, secret, token string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.IntrospectURL(), strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	s.FailWith(http.StatusServiceUnavailable)
	if _, err := cc.Token(context.Background()); err == nil {
		t.Error("token endpoint answered under FailWith(503)")
	}
	if n := len(s.IssuedTokens()); n != 1 {
		t.Errorf("IssuedTokens after a failed request: %d tokens, want 1", n)
	}
	if code, m := ask("api", "api-secret", tok.AccessToken); code != 200 || m["active"] != true || m["client_id"] != "app" {
		t.Errorf("issued token: %d %v, want 200 active for client app", code, m)
	}
	s.FailWith(0)
	if code, m := ask("api", "api-secret", tok.AccessToken+"x"); code != 200 || m["active"] != false {
		t.Errorf("unknown token: %d %v, want 200 inactive", code, m)
	}
	if code, _ := ask("api", "wrong", tok.AccessToken); code != http.StatusUnauthorized {
		t.Errorf("wrong resource server secret: %d, want 401", code)
	}
}
