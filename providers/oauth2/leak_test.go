package oauth2

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
)

// TestNoSecretInErrors: a token endpoint that echoes everything it was
// sent (form, headers) in its error answers, with 400, 401, 500 and a
// malformed 200, never gets a secret, assertion, subject token or access
// token into an error, a log line or the provider's printed form.
func TestNoSecretInErrors(t *testing.T) {
	var mu sync.Mutex
	var sent []string // every value the endpoint received
	status := http.StatusBadRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		sent = append(sent, string(body), r.Header.Get("Authorization"))
		st := status
		mu.Unlock()
		echo := string(body) + " " + r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		if st == http.StatusOK {
			fmt.Fprintf(w, `{"token_type":"bearer","note":%q}`, echo) // no access_token
			return
		}
		w.WriteHeader(st)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": echo, "error_uri": "https://x/" + echo})
	}))
	t.Cleanup(srv.Close)

	const secret = "leak-test-client-secret-0d6f"
	const inline = "leak-test-inline-secret-77aa"
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	file, keyPEM := writeKey(t, key)
	subject := workloadToken(t, key, "https://issuer", "workload-sub")
	wl := identity.Workload{Name: "w", Factors: []identity.Factor{{Kind: identity.KindJWT, Token: identity.NewToken(subject)}}}
	in := map[string]providers.Provider{"s": input(providers.FieldToken, secret)}
	configs := []string{
		"client_id: c\nclient_secret: {credential: s}\n",
		"client_id: c\nclient_auth: client_secret_post\nclient_secret: {value: " + inline + "}\n",
		"client_id: c\nclient_key: {file: " + file + "}\n",
		"grant: token_exchange\nclient_id: c\nclient_secret: {credential: s}\n",
		"grant: jwt_bearer\nclient_key: {file: " + file + "}\njwt_bearer: {issuer: i}\n",
	}
	var outputs []string
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	for _, st := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusInternalServerError, http.StatusOK} {
		mu.Lock()
		status = st
		mu.Unlock()
		for _, c := range configs {
			p := load(t, "token_url: "+srv.URL+"/token\nretries: 1\nretry_backoff: 1ms\n"+c, in)
			_, err := p.Fetch(context.Background(), providers.Request{Credential: "x", Workload: wl})
			if err == nil {
				t.Fatalf("status %d, %q: no error", st, c)
			}
			log.Error("fetch failed", slog.Any("error", err), slog.Any("provider", p))
			outputs = append(outputs, err.Error(), fmt.Sprintf("%+v %#v", p, p))
		}
	}
	outputs = append(outputs, logs.String())
	mu.Lock()
	defer mu.Unlock()
	// Everything the endpoint received that is secret: the secrets, and
	// the assertions (the form values that are JWTs).
	needles := []string{secret, inline, subject, keyPEM[30:80]}
	for _, s := range sent {
		for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '&' || r == '=' || r == ' ' }) {
			if strings.Count(part, ".") == 2 && len(part) > 40 {
				needles = append(needles, part)
			}
		}
	}
	if len(needles) < 6 {
		t.Fatalf("only %d secret values were collected; the test is not looking at assertions", len(needles))
	}
	for _, out := range outputs {
		for _, n := range needles {
			if strings.Contains(out, n) {
				t.Fatalf("a secret value leaked into: %s", out)
			}
		}
	}
}
