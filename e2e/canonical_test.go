package e2e

import (
	"net/http"
	"testing"
)

// TestCanonicalRequestThroughClients: through curl, Go and Python as
// configured only by HTTPS_PROXY, every path spelling a server could
// route differently from what the policy matched is refused with 400
// bad_path, a lower-case method with 400 bad_method, and nothing of it
// reaches the origin (invariant 11). The class is tested in
// internal/canonical and gateway's TestPathDifferential; this checks
// that real clients' requests meet the same checks.
func TestCanonicalRequestThroughClients(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	cases := []struct {
		name, method, path, code string
	}{
		{"dot-dot", "GET", "/v1/x/../../admin/users", "bad_path"},
		{"encoded dot-dot", "GET", "/v1/x/%2e%2e/%2e%2e/admin/users", "bad_path"},
		{"empty segment", "GET", "/v1//admin", "bad_path"},
		{"path parameter", "GET", "/v1/x/..;/..;/admin", "bad_path"},
		{"encoded backslash", "GET", "/v1/x%5C..%5C..%5Cadmin", "bad_path"},
		{"encoded slash", "GET", "/v1/x%2F..%2F..%2Fadmin", "bad_path"},
		{"double encoding", "GET", "/v1/%252e%252e/admin", "bad_path"},
		{"lower-case method", "get", "/v1/lower", "bad_method"},
	}
	for _, c := range clients {
		for _, tc := range cases {
			t.Run(c.Name()+"/"+tc.name, func(t *testing.T) {
				r := c.Do(t, e, clientRequest{Method: tc.method, URL: "https://" + apiHost + tc.path, PathAsIs: true})
				if r.Err != "" {
					t.Fatalf("client error: %s", r.Err)
				}
				checkDenialStatus(t, r.Status, r.Header, r.Body, http.StatusBadRequest, tc.code)
			})
		}
	}
	for _, p := range []string{"/admin/users", "/v1/admin", "/v1/lower"} {
		if got := e.origin.byPath(p); len(got) != 0 {
			t.Errorf("origin received %d requests for %s", len(got), p)
		}
	}
}

// TestConnectionCannotStripCredential: curl over HTTP/1.1 names the
// injected header in Connection; the origin still receives the
// credential, never the client's value (invariant 3).
func TestConnectionCannotStripCredential(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	h := http.Header{"Connection": {"Authorization"}, "Authorization": {"Bearer client-chosen"}}
	r := curlClient{}.Do(t, e, clientRequest{URL: "https://" + apiHost + "/v1/connection-named", Header: h, HTTP1: true})
	if r.Err != "" || r.Status != http.StatusOK {
		t.Fatalf("status %d err %s", r.Status, r.Err)
	}
	got := e.origin.one(t, "/v1/connection-named")
	if a := got.Header.Get("Authorization"); a != "Bearer "+e.token {
		t.Errorf("origin received Authorization %q, want the injected credential", a)
	}
}
