package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/exchangetest"
)

// TestHMACExchanges runs examples/exchanges.yaml (adapted to 127.0.0.1)
// in front of internal/exchangetest, whose Binance and OKX fakes
// recompute every signature as the exchanges document them. The client
// is plain net/http through HTTPS_PROXY with no key, no secret and no
// signature of its own.
func TestHMACExchanges(t *testing.T) {
	t.Parallel()
	const (
		binanceKey, binanceSecret        = "e2e-binance-key-5d1f0c", "e2e-binance-secret-9a7b3e"
		okxKey, okxSecret, okxPassphrase = "e2e-okx-key-0c44", "e2e-okx-secret-81fe2a", "e2e-okx-passphrase-3b"
		binanceHost, okxHost             = "api.binance.com", "www.okx.com"
		maxBody                          = 65536
	)
	leaf, err := originCA.Leaf(binanceHost, okxHost, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	fake := exchangetest.New(exchangetest.Options{Certificate: &leaf,
		BinanceKey: binanceKey, BinanceSecret: binanceSecret,
		OKXKey: okxKey, OKXSecret: okxSecret, OKXPassphrase: okxPassphrase})
	t.Cleanup(fake.Close)
	reportPeer(t, "exchanges: fake Binance and OKX (internal/exchangetest) at %s", fake.URL)

	example, err := os.ReadFile(filepath.Join(repoRoot, "examples", "exchanges.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pol := strings.NewReplacer(
		"cidrs: [10.40.0.0/24]", "cidrs: [127.0.0.1/32]",
		"hosts: [api.binance.com]", "hosts: [api.binance.com]\n    allow_private: true",
		"hosts: [www.okx.com]", "hosts: [www.okx.com]\n    allow_private: true",
		// The harness runs the policy through text/template: keep the
		// injector's templates literal.
		"{{", `{{"{{"}}`,
	).Replace(string(example))
	if !strings.Contains(pol, "allow_private") || !strings.Contains(pol, "127.0.0.1/32") || !strings.Contains(pol, "max_body: 65536") {
		t.Fatalf("examples/exchanges.yaml changed shape; adapt this test:\n%s", pol)
	}
	e := startEnv(t, envOptions{
		Policy:  pol,
		Resolve: map[string]string{binanceHost + ":443": fake.Addr, okxHost + ":443": fake.Addr},
		Env: []string{"BINANCE_API_KEY=" + binanceKey, "BINANCE_SECRET_KEY=" + binanceSecret,
			"OKX_API_KEY=" + okxKey, "OKX_SECRET_KEY=" + okxSecret, "OKX_PASSPHRASE=" + okxPassphrase},
	})
	e.secrets = append(e.secrets, binanceKey, binanceSecret, okxKey, okxSecret, okxPassphrase)
	c := newGoClient(t, e.proxyURL, gwCACert, false)

	do := func(t *testing.T, method, url, body string, h http.Header) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, url, rd)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	tests := []struct {
		name, method, url, body string
		header                  http.Header
	}{
		{"binance GET", "GET", "https://api.binance.com/api/v3/account?recvWindow=5000", "", nil},
		{"binance POST form", "POST", "https://api.binance.com/api/v3/order?symbol=LTCBTC",
			"side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}},
		{"binance client key and signature ignored", "DELETE", "https://api.binance.com/api/v3/order?symbol=LTCBTC&orderId=7&signature=forged&timestamp=1",
			"", http.Header{"X-Mbx-Apikey": {"placeholder-key"}}},
		{"okx GET with query", "GET", "https://www.okx.com/api/v5/account/balance?ccy=BTC", "", nil},
		{"okx POST JSON", "POST", "https://www.okx.com/api/v5/trade/order",
			`{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"1"}`,
			http.Header{"Content-Type": {"application/json"}, "Ok-Access-Key": {"placeholder"}, "Ok-Access-Sign": {"forged"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, b := do(t, tt.method, tt.url, tt.body, tt.header)
			if st != http.StatusOK {
				t.Fatalf("status %d: %s (fake refused %v)", st, b, fake.Refused())
			}
			var echo exchangetest.Echo
			if err := json.Unmarshal(b, &echo); err != nil {
				t.Fatalf("answer %s: %v", b, err)
			}
			if echo.Body != tt.body || strings.Contains(echo.Query, "forged") {
				t.Errorf("the fake authenticated %+v", echo)
			}
		})
	}

	t.Run("a body over max_body is refused 413 and not forwarded", func(t *testing.T) {
		before := fake.Accepted() + len(fake.Refused())
		st, b := do(t, "POST", "https://api.binance.com/api/v3/order?symbol=LTCBTC", strings.Repeat("a", maxBody+1),
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
		if st != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "body_too_large") {
			t.Errorf("status %d %s, want 413 body_too_large", st, b)
		}
		if after := fake.Accepted() + len(fake.Refused()); after != before {
			t.Errorf("the fake saw %d more requests, want none", after-before)
		}
	})
	if n := fake.Accepted(); n != len(tests) {
		t.Errorf("the fake accepted %d requests, want %d", n, len(tests))
	}
}
