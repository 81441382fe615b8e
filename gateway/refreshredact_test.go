package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

// leakyPrevious is the first credential gwtest-leaky serves: what its
// failing refreshes quote, with the secret the gateway's static
// credential holds.
const leakyPrevious = "leaky-PREVIOUS-credential-0123456789"

func init() {
	providers.Register(providers.Module{Name: "gwtest-leaky", New: func() providers.Provider { return new(leaky) }})
}

// leaky serves leakyPrevious for 3 s once, then fails every fetch with
// an error quoting the credential it replaces (which providers see
// through providers.Previous) and the static credential's secret (an
// endpoint's answer echoing what it was sent, say).
type leaky struct {
	Env   string `yaml:"env"`
	calls atomic.Int32
}

func (l *leaky) Fetch(ctx context.Context, _ providers.Request) (*providers.Credential, error) {
	if l.calls.Add(1) == 1 {
		return &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret(leakyPrevious)},
			Expiry: time.Now().Add(3 * time.Second)}, nil
	}
	var prev string
	if p := providers.Previous(ctx); p != nil {
		prev = p.Fields[providers.FieldToken].Reveal()
	}
	return nil, fmt.Errorf("leaky: refresh of %s refused; the endpoint said %q (Bearer %s): %w", prev, os.Getenv(l.Env), prev, providers.ErrUnavailable)
}

// TestRefreshErrorRedacted is the class test of "a provider's error is
// logged with no secret the gateway holds", for the errors no caller's
// request redacts: a background refresh that fails while the cached
// credential is still in use, and then the fetch that fails once it has
// expired. The provider's error quotes its previous credential and the
// static credential's secret, which the gateway injected earlier; the
// log shows neither (the test gateway's cleanup also greps the log and
// audit output for the static secret). Before, both lines held both
// values (4 of 4 checks failed).
func TestRefreshErrorRedacted(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	pol := strings.Replace(testPolicy, "credentials:\n", "credentials:\n  leaky:\n    provider: gwtest-leaky\n    env: CREDGATE_GATEWAY_TEST_TOKEN\n", 1)
	pol = strings.Replace(pol, "rules:\n", "rules:\n  - name: leaky\n    from: local\n    to: api\n    paths: [/leaky/*]\n    inject: {credential: leaky, as: bearer}\n", 1)
	writeFile(t, tg.dir, "policy.yaml", []byte(pol))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\ncache: {refresh_ahead: 1h, error_backoff: 100ms}\n", tg.origin.addr))
	c := tg.client(t, false)
	get := func(path string) int {
		resp, err := c.Get("https://" + apiHost + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := get("/plain"); s != http.StatusOK { // the static secret is now held
		t.Fatalf("GET /plain: %d", s)
	}
	if s := get("/leaky/x"); s != http.StatusOK {
		t.Fatalf("GET /leaky/x: %d", s)
	}
	// Refreshed in the background from 2 s on (refresh_ahead is capped at
	// a third of the lifetime), served until 3 s, refused after.
	waitFor(t, 10*time.Second, "a failed refresh and then a failed fetch", func() bool {
		get("/leaky/x")
		l := tg.logs.String()
		return strings.Contains(l, "credential refresh failed") && strings.Contains(l, "credential fetch failed")
	})
	for _, line := range strings.Split(tg.logs.String(), "\n") {
		if !strings.Contains(line, "credential refresh failed") && !strings.Contains(line, "credential fetch failed") {
			continue
		}
		if !strings.Contains(line, "leaky: refresh of") {
			t.Errorf("the line lost the provider's error: %s", line)
		}
		for name, s := range map[string]string{"previous credential": leakyPrevious, "held secret": tg.token} {
			if strings.Contains(line, s) {
				t.Errorf("the log holds the %s: %s", name, line)
			}
		}
	}
}
