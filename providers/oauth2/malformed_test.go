package oauth2

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
)

// TestNoSecretInMalformedAnswers: a token endpoint answering bytes that
// do not parse as a response, echoing what it was sent (the
// Authorization header, the form body) as its status line or status
// code, gets no client secret, assertion or subject token into the
// provider's error: Go's parser quotes the line in its error, which the
// provider passed on as "the token request failed: ..." and the gateway
// logged.
func TestNoSecretInMalformedAnswers(t *testing.T) {
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		echo := r.Header.Get("Authorization") + " " + string(body)
		sent = append(sent, string(body), r.Header.Get("Authorization"))
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		if strings.HasPrefix(r.URL.Path, "/code") {
			echo = "HTTP/1.1 " + strings.ReplaceAll(echo, " ", "") + " OK"
		}
		_, _ = rw.WriteString(echo + "\r\n\r\n")
		_ = rw.Flush()
	}))
	t.Cleanup(srv.Close)
	const secret = "malformed-client-secret-0d6f"
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	file, _ := writeKey(t, key)
	subject := workloadToken(t, key, "https://issuer", "workload-sub")
	wl := identity.Workload{Name: "w", Factors: []identity.Factor{{Kind: identity.KindJWT, Token: identity.NewToken(subject)}}}
	in := map[string]providers.Provider{"s": input(providers.FieldToken, secret)}
	for _, path := range []string{"/line", "/code"} {
		for _, c := range []string{
			"client_id: c\nclient_secret: {credential: s}\n",
			"client_id: c\nclient_auth: client_secret_post\nclient_secret: {credential: s}\n",
			"client_id: c\nclient_key: {file: " + file + "}\n",
			"grant: token_exchange\nclient_id: c\nclient_secret: {credential: s}\n",
		} {
			sent = sent[:0]
			p := load(t, "token_url: "+srv.URL+path+"\nretries: 1\nretry_backoff: 1ms\n"+c, in)
			_, err := p.Fetch(context.Background(), providers.Request{Credential: "x", Workload: wl})
			if err == nil {
				t.Fatalf("%s %q: no error", path, c)
			}
			basic := base64.StdEncoding.EncodeToString([]byte("c:" + secret))
			for _, s := range []string{secret, basic[4:20], subject[10:30]} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("%s %q: the error holds %q: %v", path, c, s, err)
				}
			}
			// An assertion the gateway signed: any 16 bytes of it.
			for _, b := range sent {
				for _, f := range strings.FieldsFunc(b, func(r rune) bool { return r == '&' || r == '=' || r == ' ' }) {
					if len(f) > 40 && strings.Contains(err.Error(), f[len(f)-20:]) {
						t.Errorf("%s %q: the error holds a piece of %q: %v", path, c, f, err)
					}
				}
			}
		}
	}
}
