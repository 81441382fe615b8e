package gateway

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestUpstreamH1ClientUsed: an HTTP/1.1 client's GET goes upstream
// through the pool's h1client (its connection is then idle there), under
// upstream.http2 match and never; an HTTP/2 client's does not.
func TestUpstreamH1ClientUsed(t *testing.T) {
	for _, tc := range []struct {
		setting  string
		clientH2 bool
		want     int
	}{
		{"", false, 1},
		{"never", false, 1},
		{"never", true, 1},
		{"", true, 0},
		{"always", false, 0},
	} {
		t.Run(fmt.Sprintf("%s/client-h2=%v", tc.setting, tc.clientH2), func(t *testing.T) {
			pki := newTestPKI(t, apiHost)
			tg := newTestGateway(t, pki, startOrigin(t, pki))
			if tc.setting != "" {
				tg.upstreamExtra = ", http2: " + tc.setting
			}
			writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
			tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
			c := tg.client(t, tc.clientH2)
			for range 2 {
				resp, err := c.Get("https://" + apiHost + "/v1/h1c")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "ok /v1/h1c" {
					t.Fatalf("%s %q", resp.Status, b)
				}
			}
			// The test policy allows the origin's loopback address:
			// the private pool serves it.
			tg.gw.pools.mu.Lock()
			h1c := tg.gw.pools.priv.h1c
			tg.gw.pools.mu.Unlock()
			if tc.setting == "always" {
				if h1c != nil {
					t.Fatal("http2: always has an h1client")
				}
				return
			}
			waitFor(t, 5*time.Second, "the h1client's idle connections", func() bool { return h1c.Idle() == tc.want })
			if got := tg.origin.all(); len(got) != 2 || got[1].Header.Get("Authorization") != "Bearer "+tg.token {
				t.Errorf("origin saw %+v, want two requests with the credential", got)
			}
		})
	}
}

// TestUpstreamHeaderTimeoutStatus: an upstream that sends no response
// headers within upstream.response_header_timeout is answered 504
// upstream_timeout, whether the request went through the h1client
// (HTTP/1.1 client) or net/http's Transport (HTTP/2 client).
func TestUpstreamHeaderTimeoutStatus(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	tg.upstreamExtra = ", response_header_timeout: 100ms"
	tg.origin.route("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	for _, h2 := range []bool{false, true} {
		resp, err := tg.client(t, h2).Get("https://" + apiHost + "/hang")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(ReasonHeader) != codeUpstreamTimeout {
			t.Errorf("client h2=%v: %s %s, want 504 %s", h2, resp.Status, resp.Header.Get(ReasonHeader), codeUpstreamTimeout)
		}
	}
}
