package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
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
			tg.gw.pools.Load().mu.Lock()
			h1c := tg.gw.pools.Load().priv.h1c
			tg.gw.pools.Load().mu.Unlock()
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

// TestUpstreamH1ClientPost: an HTTP/1.1 client's POST with a body of
// declared length up to 16 KiB goes upstream through the pool's h1client
// (its connection is then idle there), with its body intact, the
// credential injected, and the audit line's bytes_in the body's length;
// a larger body, and one of unknown length (chunked), go through
// net/http's Transport the same way.
func TestUpstreamH1ClientPost(t *testing.T) {
	pki := newTestPKI(t, apiHost)
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	type upload struct {
		body, auth, ct string
		cl             int64
	}
	got := make(chan upload, 1)
	tg.origin.route("/upload", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- upload{string(b), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.ContentLength}
		fmt.Fprintf(w, "got %d", len(b))
	})
	writeFile(t, tg.dir, "policy.yaml", []byte(testPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	c := tg.client(t, false)
	json := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("hello ", 170) + `"}]}`
	// The Transport's cases first: the h1client has no idle connection
	// until the first of its own.
	for _, tc := range []struct {
		name    string
		body    string
		chunked bool
		fast    bool
	}{
		{"16 KiB + 1", strings.Repeat("b", 16<<10+1), false, false},
		{"chunked", json, true, false},
		{"1 KiB JSON", json, false, true},
		{"16 KiB", strings.Repeat("a", 16<<10), false, true},
		{"1 byte", "x", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				rd = struct{ io.Reader }{rd} // unknown length
			}
			req, _ := http.NewRequest("POST", "https://"+apiHost+"/upload", rd)
			req.Header.Set("Content-Type", "application/json")
			audits := strings.Count(tg.audit.String(), "\n")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != fmt.Sprintf("got %d", len(tc.body)) {
				t.Fatalf("%s %q", resp.Status, b)
			}
			u := <-got
			wantCL := int64(len(tc.body))
			if tc.chunked {
				wantCL = -1
			}
			if u.body != tc.body || u.auth != "Bearer "+tg.token || u.ct != "application/json" || u.cl != wantCL {
				t.Errorf("origin got %d bytes (equal: %v), Authorization %q, Content-Type %q, length %d", len(u.body), u.body == tc.body, u.auth, u.ct, u.cl)
			}
			tg.gw.pools.Load().mu.Lock()
			h1c := tg.gw.pools.Load().priv.h1c
			tg.gw.pools.Load().mu.Unlock()
			want := 0
			if tc.fast {
				want = 1
			}
			waitFor(t, 5*time.Second, "the h1client's idle connections", func() bool { return h1c.Idle() == want })
			waitFor(t, 5*time.Second, "the audit line", func() bool { return strings.Count(tg.audit.String(), "\n") > audits })
			lines := strings.Split(strings.TrimSpace(tg.audit.String()), "\n")
			line := lines[len(lines)-1]
			if !strings.Contains(line, `"path":"/upload"`) || !strings.Contains(line, fmt.Sprintf(`"status":200,"bytes_in":%d,`, len(tc.body))) {
				t.Errorf("audit line %s, want bytes_in %d", line, len(tc.body))
			}
		})
	}
}
