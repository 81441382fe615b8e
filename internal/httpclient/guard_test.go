package httpclient_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/httpclient"
)

// TestGuard: every redirect status is an error naming the status and
// where it pointed (without its query), whatever the client on top would
// do; a 304 and other statuses pass; an answer body fails past the limit
// and not at it.
func TestGuard(t *testing.T) {
	var status int
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://elsewhere.example/token?secret=NO_LEAK_query")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	// A client that follows redirects, as vault/api and the AWS SDK do.
	c := &http.Client{Transport: httpclient.Guard(http.DefaultTransport, 10)}
	for _, st := range []int{300, 301, 302, 303, 305, 307, 308, 399} {
		status, body = st, ""
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%d: no error", st)
			continue
		}
		var rd *httpclient.RedirectError
		if !errors.As(err, &rd) || rd.Status != st || rd.Location != "https://elsewhere.example/token" || strings.Contains(err.Error(), "NO_LEAK") {
			t.Errorf("%d: error %v, want a RedirectError to https://elsewhere.example/token", st, err)
		}
	}
	for _, tc := range []struct {
		status int
		body   string
		tooBig bool
	}{{200, "0123456789", false}, {200, "0123456789a", true}, {304, "", false}, {500, strings.Repeat("x", 1<<20), true}} {
		status, body = tc.status, tc.body
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Errorf("%d: %v", tc.status, err)
			continue
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.tooBig != errors.Is(err, httpclient.ErrAnswerTooLarge) || len(got) > 10 {
			t.Errorf("%d with %d bytes: read %d bytes, error %v; want too large: %v", tc.status, len(tc.body), len(got), err, tc.tooBig)
		}
	}
}
