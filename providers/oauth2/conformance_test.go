package oauth2

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"testing"

	"github.com/credgate/credgate/internal/oauth2test"
	"github.com/credgate/credgate/providers/providertest"
)

// TestConformance runs the checks every provider passes against the fake
// authorization server (private_key_jwt with a key file, so the provider
// needs no input credential).
func TestConformance(t *testing.T) {
	srv := oauth2test.New(oauth2test.Options{})
	t.Cleanup(srv.Close)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	srv.AddKeyClient("conformance-client", key.Public())
	keyFile, _ := writeKey(t, key)
	client := "client_id: conformance-client\nclient_key: {file: " + keyFile + ", key_id: k1}\nscopes: [read]\n"
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     "oauth2",
		Settings: "token_url: " + srv.TokenURL() + "\n" + client,
		Bad: []providertest.BadSettings{
			{Settings: "token_url: http://auth.example.com/token\n" + client, Want: "https"},
			{Settings: "token_url: " + srv.TokenURL() + "\ngrant: password\n" + client, Want: "password"},
		},
		Issued: func() int { return len(srv.Requests()) },
		Unauthorized: func(on bool) {
			if on {
				srv.FailWith(http.StatusUnauthorized)
			} else {
				srv.FailWith(0)
			}
		},
		Stalled: func(url string) string {
			return "token_url: " + url + "/token\n" + client
		},
		Lifetime:        srv.SetLifetime,
		LifetimeField:   "expires_in",
		DefaultLifetime: DefaultExpiresIn,
	})
}
