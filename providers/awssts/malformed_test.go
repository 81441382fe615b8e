package awssts

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credgate/credgate/providers"
)

// TestNoSecretInMalformedAnswers: an STS endpoint answering bytes that
// do not parse as a response, echoing what it was sent — the web
// identity token of AssumeRoleWithWebIdentity (in the form body), the
// source credential's session token (X-Amz-Security-Token) — as its
// status line or status code, gets none of it into the provider's error:
// the SDK passes on Go's parser error, which quotes the line.
func TestNoSecretInMalformedAnswers(t *testing.T) {
	const token = "NO_LEAK_web-identity-token.value"
	const session = "NO_LEAK_source-session-token/value"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		q, _ := url.ParseQuery(string(body))
		echo := q.Get("WebIdentityToken") + " " + r.Header.Get("X-Amz-Security-Token") + " " + string(body)
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
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	src := sourceCred()
	src.Fields[providers.FieldSessionToken] = providers.NewSecret(session)
	for _, path := range []string{"/line", "/code"} {
		for name, p := range map[string]*Provider{
			"web-identity": load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s%s, retries: 0, web_identity_token_file: %s}", srv.URL, path, tok), nil),
			"source":       load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s%s, retries: 0, source_credential: src}", srv.URL, path), map[string]providers.Provider{"src": staticSource{cred: src}}),
		} {
			_, err := p.Fetch(context.Background(), providers.Request{Workload: billing()})
			if err == nil {
				t.Fatalf("%s %s: no error", path, name)
			}
			for _, s := range []string{"NO_LEAK", "web-identity-token", "source-session-token", "NO_LEAK_source_secret"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("%s %s: the error holds %q: %v", path, name, s, err)
				}
			}
		}
	}
}
