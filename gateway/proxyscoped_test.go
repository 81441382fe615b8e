package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/headerset"
)

// TestProxyScopedNeverForwarded: every field of headerset.ProxyScoped —
// forwarding, identity and original-target claims — sent by a client in
// its canonical, lower- and upper-case spelling, reaches no upstream, on
// an injected request over HTTP/1.1 and HTTP/2 (invariants 3, 7 and 11).
// The list is the test's table, so a field added to it is covered; the
// front-proxy claims servers route by are named too, so the list cannot
// lose them.
func TestProxyScopedNeverForwarded(t *testing.T) {
	tg := startGateway(t)
	fields := append([]string{"X-Original-Url", "X-Rewrite-Url", "X-Original-Uri", "X-Forwarded-Prefix", "X-Forwarded-Uri"}, headerset.ProxyScoped...)
	for _, h2 := range []bool{false, true} {
		for i, spell := range []func(string) string{func(s string) string { return s }, strings.ToLower, strings.ToUpper} {
			t.Run(fmt.Sprintf("h2=%v/spelling=%d", h2, i), func(t *testing.T) {
				path := fmt.Sprintf("/scoped-%v-%d", h2, i)
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+apiHost+path, nil)
				for _, k := range fields {
					req.Header[spell(k)] = []string{"/v1/admin"}
				}
				resp, err := tg.client(t, h2).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200", resp.StatusCode)
				}
				var got *seen
				for _, s := range tg.origin.all() {
					if s.Path == path {
						got = &s
					}
				}
				if got == nil {
					t.Fatal("the origin did not receive the request")
				}
				for _, k := range fields {
					if v := got.Header.Values(k); len(v) > 0 {
						t.Errorf("the origin received %s: %q", k, v)
					}
				}
			})
		}
	}
}
