package oauth2

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

// TestExpiresInShapes: expires_in in a JSON and in a form-encoded answer
// (RFC 6749 answers JSON; some servers still answer a query string,
// which x/oauth2 reads too). An absent or empty expires_in gets
// default_expires_in; 0, a negative count and a value that is not a
// whole number are refused, naming expires_in, never given the default
// (before, x/oauth2's tok.Expiry made 0 the default and -1 a token
// expired on arrival, and a form answer's "soon" the default).
func TestExpiresInShapes(t *testing.T) {
	var (
		mu          sync.Mutex
		contentType string
		body        string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", contentType)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	p := load(t, "token_url: "+srv.URL+"\ndefault_expires_in: 90s\nretries: 0\n", nil)
	for _, tc := range []struct {
		name, contentType, body string
		want                    time.Duration // 0: refused
	}{
		{"json absent", "application/json", `{"access_token":"at","token_type":"bearer"}`, 90 * time.Second},
		{"json null", "application/json", `{"access_token":"at","expires_in":null}`, 90 * time.Second},
		{"json 3600", "application/json", `{"access_token":"at","expires_in":3600}`, time.Hour},
		{"json string 3600", "application/json", `{"access_token":"at","expires_in":"3600"}`, time.Hour},
		{"json 0", "application/json", `{"access_token":"at","expires_in":0}`, 0},
		{"json -1", "application/json", `{"access_token":"at","expires_in":-1}`, 0},
		{"json 3600.0", "application/json", `{"access_token":"at","expires_in":3600.0}`, 0},
		{"json soon", "application/json", `{"access_token":"at","expires_in":"soon"}`, 0},
		{"form absent", "application/x-www-form-urlencoded", "access_token=at&token_type=bearer", 90 * time.Second},
		{"form empty", "application/x-www-form-urlencoded", "access_token=at&expires_in=", 90 * time.Second},
		{"form 3600", "application/x-www-form-urlencoded", "access_token=at&expires_in=3600", time.Hour},
		{"form 0", "application/x-www-form-urlencoded", "access_token=at&expires_in=0", 0},
		{"form -3600", "application/x-www-form-urlencoded", "access_token=at&expires_in=-3600", 0},
		{"form soon", "application/x-www-form-urlencoded", "access_token=at&expires_in=soon", 0},
		{"form 3600.5", "application/x-www-form-urlencoded", "access_token=at&expires_in=3600.5", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			contentType, body = tc.contentType, tc.body
			mu.Unlock()
			start := time.Now()
			c, err := p.Fetch(t.Context(), providers.Request{})
			if tc.want == 0 {
				if err == nil {
					t.Fatalf("Fetch returned a token expiring in %v; want an error naming expires_in", time.Until(c.Expiry).Round(time.Second))
				}
				if !strings.Contains(err.Error(), "expires_in") || !errors.Is(err, providers.ErrUnavailable) {
					t.Errorf("error %q does not name expires_in or wrap ErrUnavailable", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			margin := min(DefaultExpiryMargin, tc.want/10)
			if life := c.Expiry.Sub(start); life < tc.want-margin-time.Second || life > tc.want-margin+time.Second {
				t.Errorf("lifetime %v, want %v less %v", life, tc.want, margin)
			}
		})
	}
}
