package exchangetest_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/exchangetest"
)

// flipBit changes the lowest bit of sig's first character that stays in
// the encoding's alphabet (hex or base64), so the signature is one bit off.
func flipBit(sig string) string {
	b := []byte(sig)
	switch b[0] {
	case '0':
		b[0] = '1'
	case '1':
		b[0] = '0'
	default:
		b[0] ^= 1
	}
	return string(b)
}

// TestFakeRefusesWhatTheExchangesRefuse: each exchange's fake accepts a
// request signed as the exchange documents it, and refuses the same
// request with its signature one bit off, signed over another method,
// path, query or body, with its timestamp outside the window (Binance's
// recvWindow, at most 60000 ms; OKX and Coinbase 30 s), with the wrong
// key or passphrase, or without a signature. The signatures are computed
// here, apart from both the fake and the hmac injector.
func TestFakeRefusesWhatTheExchangesRefuse(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_123)
	cbSecret := base64.StdEncoding.EncodeToString([]byte("coinbase-raw-secret"))
	s := exchangetest.New(exchangetest.Options{Now: func() time.Time { return now },
		BinanceKey: "bkey", BinanceSecret: "bsecret",
		OKXKey: "okey", OKXSecret: "osecret", OKXPassphrase: "opass",
		CoinbaseKey: "ckey", CoinbaseSecret: cbSecret, CoinbasePassphrase: "cpass"})
	t.Cleanup(s.Close)
	send := func(host, method, target, body string, h http.Header) int {
		t.Helper()
		r, err := http.NewRequest(method, s.URL+target, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			r.Host = host
		}
		r.Header = h
		resp, err := s.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	mac := func(key []byte, parts ...string) []byte {
		m := hmac.New(sha256.New, key)
		for _, p := range parts {
			m.Write([]byte(p))
		}
		return m.Sum(nil)
	}

	t.Run("binance", func(t *testing.T) {
		ms := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixMilli(), 10) }
		// req signs query+body (totalParams) and sends sentQuery, sentBody.
		req := func(signQuery, signBody, sentQuery, sentBody, key string, mutate func(string) string) int {
			sig := hex.EncodeToString(mac([]byte("bsecret"), signQuery, signBody))
			if mutate != nil {
				sig = mutate(sig)
			}
			h := http.Header{}
			if key != "" {
				h.Set("X-MBX-APIKEY", key)
			}
			h.Set("Content-Type", "application/x-www-form-urlencoded")
			return send("", "POST", "/api/v3/order?"+sentQuery+"&signature="+sig, sentBody, h)
		}
		q := "symbol=LTCBTC&side=BUY&timestamp=" + ms(0)
		body := "quantity=1&price=0.1"
		if code := req(q, body, q, body, "bkey", nil); code != http.StatusOK {
			t.Fatalf("a valid SIGNED request: %d; refused %q", code, s.Refused())
		}
		for _, c := range []struct {
			name                      string
			signQ, signB, sentQ, sent string
			key                       string
			mutate                    func(string) string
		}{
			{"signature one bit off", q, body, q, body, "bkey", flipBit},
			{"signature over another query", strings.Replace(q, "BUY", "SELL", 1), body, q, body, "bkey", nil},
			{"signature over another body", q, "quantity=9&price=0.1", q, body, "bkey", nil},
			{"signature without the body", q, "", q, body, "bkey", nil},
			{"timestamp older than recvWindow", "symbol=LTCBTC&timestamp=" + ms(-6*time.Second), "", "symbol=LTCBTC&timestamp=" + ms(-6*time.Second), "", "bkey", nil},
			{"timestamp over 1 s ahead", "symbol=LTCBTC&timestamp=" + ms(2*time.Second), "", "symbol=LTCBTC&timestamp=" + ms(2*time.Second), "", "bkey", nil},
			{"recvWindow over 60000", "symbol=LTCBTC&recvWindow=70000&timestamp=" + ms(-65*time.Second), "", "symbol=LTCBTC&recvWindow=70000&timestamp=" + ms(-65*time.Second), "", "bkey", nil},
			{"no timestamp", "symbol=LTCBTC", "", "symbol=LTCBTC", "", "bkey", nil},
			{"another API key", q, body, q, body, "other", nil},
			{"no API key", q, body, q, body, "", nil},
		} {
			if code := req(c.signQ, c.signB, c.sentQ, c.sent, c.key, c.mutate); code == http.StatusOK {
				t.Errorf("%s: accepted", c.name)
			}
		}
		if code := send("", "GET", "/api/v3/account?"+q, "", http.Header{"X-Mbx-Apikey": {"bkey"}}); code == http.StatusOK {
			t.Error("no signature: accepted")
		}
	})

	// prehash is OKX's and Coinbase's: timestamp + METHOD + path?query + body.
	for _, ex := range []struct {
		name, host, prefix, path string
		secret                   []byte
		key, pass                string
		ts                       func(time.Duration) string
	}{
		{"okx", "", "OK-ACCESS-", "/api/v5/account/balance", []byte("osecret"), "okey", "opass",
			func(d time.Duration) string { return now.Add(d).UTC().Format("2006-01-02T15:04:05.000Z") }},
		{"coinbase", "api.exchange.coinbase.com", "CB-ACCESS-", "/orders", []byte("coinbase-raw-secret"), "ckey", "cpass",
			func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }},
	} {
		t.Run(ex.name, func(t *testing.T) {
			type sig struct{ ts, method, target, body string }
			req := func(signed sig, method, target, body, key, pass string, mutate func(string) string) int {
				sg := base64.StdEncoding.EncodeToString(mac(ex.secret, signed.ts, signed.method, signed.target, signed.body))
				if mutate != nil {
					sg = mutate(sg)
				}
				h := http.Header{}
				h.Set(ex.prefix+"KEY", key)
				h.Set(ex.prefix+"PASSPHRASE", pass)
				h.Set(ex.prefix+"TIMESTAMP", signed.ts)
				h.Set(ex.prefix+"SIGN", sg)
				h.Set("Content-Type", "application/json")
				return send(ex.host, method, target, body, h)
			}
			target, body := ex.path+"?ccy=BTC", `{"size":"1"}`
			ok := sig{ex.ts(0), "POST", target, body}
			if code := req(ok, "POST", target, body, ex.key, ex.pass, nil); code != http.StatusOK {
				t.Fatalf("a valid signed request: %d; refused %q", code, s.Refused())
			}
			for _, c := range []struct {
				name   string
				signed sig
				key    string
				pass   string
				mutate func(string) string
			}{
				{"signature one bit off", ok, ex.key, ex.pass, flipBit},
				{"signature over another method", sig{ok.ts, "GET", target, body}, ex.key, ex.pass, nil},
				{"signature over another path", sig{ok.ts, "POST", ex.path + "x?ccy=BTC", body}, ex.key, ex.pass, nil},
				{"signature over another query", sig{ok.ts, "POST", ex.path + "?ccy=ETH", body}, ex.key, ex.pass, nil},
				{"signature without the query", sig{ok.ts, "POST", ex.path, body}, ex.key, ex.pass, nil},
				{"signature over another body", sig{ok.ts, "POST", target, `{"size":"9"}`}, ex.key, ex.pass, nil},
				{"timestamp 31 s old", sig{ex.ts(-31 * time.Second), "POST", target, body}, ex.key, ex.pass, nil},
				{"timestamp 31 s ahead", sig{ex.ts(31 * time.Second), "POST", target, body}, ex.key, ex.pass, nil},
				{"another key", ok, "other", ex.pass, nil},
				{"another passphrase", ok, ex.key, "other", nil},
				{"no passphrase", ok, ex.key, "", nil},
			} {
				if code := req(c.signed, "POST", target, body, c.key, c.pass, c.mutate); code == http.StatusOK {
					t.Errorf("%s: accepted", c.name)
				}
			}
		})
	}
}
