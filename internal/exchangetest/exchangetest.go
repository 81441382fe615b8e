// Package exchangetest is a fake of two HMAC-signed exchange APIs, served
// over TLS on 127.0.0.1, for testing the hmac injector end to end. Each
// recomputes the signature as the service documents it, independently of
// the injector's code, and answers as the service does when it does not
// match:
//
//   - Binance (SIGNED endpoints, developers.binance.com "Request
//     security"): the API key in X-MBX-APIKEY; signature =
//     hex(HMAC-SHA256(secretKey, totalParams)), where totalParams is the
//     query string (without signature) concatenated with the request
//     body; a timestamp parameter in milliseconds within recvWindow
//     (default 5000 ms, at most 60000) of the server's clock and at most
//     1000 ms ahead. Errors: 401 {"code":-2014/-2015}, 400 {"code":-1022}
//     (signature), 400 {"code":-1021} (timestamp), 400 {"code":-1131}
//     (recvWindow over 60000).
//   - OKX (REST "Authentication", the same scheme as Coinbase Exchange
//     with a raw secret): OK-ACCESS-KEY, OK-ACCESS-PASSPHRASE,
//     OK-ACCESS-TIMESTAMP (ISO 8601 UTC with milliseconds, within 30 s),
//     OK-ACCESS-SIGN = base64(HMAC-SHA256(secret, timestamp + METHOD +
//     requestPath + body)), where requestPath includes "?query" when there
//     is one. Errors: 401 {"code":"50111"} (key), 401 "50105"
//     (passphrase), 401 "50102" (timestamp), 401 "50113" (signature).
//   - Coinbase Exchange (Host api.exchange.coinbase.com, "Signing
//     requests"): CB-ACCESS-KEY, CB-ACCESS-PASSPHRASE, CB-ACCESS-TIMESTAMP
//     (Unix seconds, within 30 s), CB-ACCESS-SIGN = base64(HMAC-SHA256(
//     base64-decoded secret, timestamp + METHOD + requestPath + body)).
//     Errors: 401 {"message":"invalid signature"} (and "invalid api key",
//     "invalid passphrase", "invalid timestamp").
//
// Accepted requests are answered 200 with a JSON echo of the method,
// path, query and body the service authenticated.
package exchangetest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
)

// MaxRecvWindow is the widest recvWindow Binance accepts, in ms.
const MaxRecvWindow = 60000

// Options configure a Server.
type Options struct {
	// Certificate is the server's TLS certificate; default httptest's.
	Certificate *tls.Certificate
	// Now is the server's clock; default time.Now.
	Now func() time.Time

	// BinanceKey and BinanceSecret are the Binance API key and secret key.
	BinanceKey, BinanceSecret string
	// OKXKey, OKXSecret and OKXPassphrase are the OKX API key, secret and
	// passphrase.
	OKXKey, OKXSecret, OKXPassphrase string
	// CoinbaseKey, CoinbaseSecret (base64, as Coinbase issues it) and
	// CoinbasePassphrase are the Coinbase Exchange credentials.
	CoinbaseKey, CoinbaseSecret, CoinbasePassphrase string
}

// Server serves Binance under /api/ and /sapi/, OKX under /api/v5/.
// Its methods are safe for concurrent use.
type Server struct {
	// URL is https://127.0.0.1:PORT; Addr is 127.0.0.1:PORT.
	URL, Addr string

	srv  *httptest.Server
	opts Options

	mu       sync.Mutex
	accepted int
	refused  []string // the error codes answered
}

// New starts a Server; call Close when done.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts}
	s.srv = fakekit.StartTLS(http.HandlerFunc(s.serve), opts.Certificate)
	s.URL = s.srv.URL
	s.Addr = s.srv.Listener.Addr().String()
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Client returns an HTTP client trusting the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Accepted is the number of requests whose signature verified.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Refused returns the error codes answered so far, in order.
func (s *Server) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refused...)
}

// Echo is the body of an accepted request's answer.
type Echo struct {
	Service string `json:"service"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	Query   string `json:"query"`
	Body    string `json:"body"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	service := "binance"
	var status int
	var code, msg string
	if host, _, _ := strings.Cut(r.Host, ":"); host == "api.exchange.coinbase.com" {
		service = "coinbase"
		status, code, msg = s.coinbase(r, body)
	} else if strings.HasPrefix(r.URL.Path, "/api/v5/") {
		service = "okx"
		status, code, msg = s.okx(r, body)
	} else {
		status, code, msg = s.binance(r, body)
	}
	w.Header().Set("Content-Type", "application/json")
	s.mu.Lock()
	if status != http.StatusOK {
		s.refused = append(s.refused, code)
		s.mu.Unlock()
		w.WriteHeader(status)
		switch service {
		case "coinbase":
			_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
		case "okx":
			_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "msg": msg})
		default:
			c, _ := strconv.Atoi(code)
			_ = json.NewEncoder(w).Encode(map[string]any{"code": c, "msg": msg})
		}
		return
	}
	s.accepted++
	s.mu.Unlock()
	_ = json.NewEncoder(w).Encode(Echo{Service: service, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(body)})
}

// binance verifies a SIGNED request as Binance documents it.
func (s *Server) binance(r *http.Request, body []byte) (int, string, string) {
	key := r.Header.Get("X-MBX-APIKEY")
	switch {
	case key == "":
		return http.StatusUnauthorized, "-2014", "API-key format invalid."
	case !hmac.Equal([]byte(key), []byte(s.opts.BinanceKey)):
		return http.StatusUnauthorized, "-2015", "Invalid API-key, IP, or permissions for action."
	}
	// totalParams: the query string without the signature parameter,
	// followed by the body.
	var rest []string
	var sigs []string
	for _, kv := range strings.Split(r.URL.RawQuery, "&") {
		if k, v, _ := strings.Cut(kv, "="); k == "signature" {
			sigs = append(sigs, v)
			continue
		}
		rest = append(rest, kv)
	}
	if len(sigs) != 1 {
		return http.StatusBadRequest, "-1102", "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return http.StatusBadRequest, "-1100", "Illegal characters found in a parameter."
	}
	ts, err := strconv.ParseInt(q.Get("timestamp"), 10, 64)
	if err != nil || len(q["timestamp"]) != 1 {
		return http.StatusBadRequest, "-1102", "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
	}
	window := int64(5000)
	if rw := q.Get("recvWindow"); rw != "" {
		if window, err = strconv.ParseInt(rw, 10, 64); err != nil {
			return http.StatusBadRequest, "-1100", "Illegal characters found in parameter 'recvWindow'."
		}
		// "Timing security" (developers.binance.com, Endpoint security
		// type): recvWindow may widen the window, but not past 60000 ms.
		if window <= 0 || window > MaxRecvWindow {
			return http.StatusBadRequest, "-1131", "recvWindow must be less than 60000"
		}
	}
	now := s.opts.Now().UnixMilli()
	if ts >= now+1000 || now-ts > window {
		return http.StatusBadRequest, "-1021", "Timestamp for this request is outside of the recvWindow."
	}
	m := hmac.New(sha256.New, []byte(s.opts.BinanceSecret))
	m.Write([]byte(strings.Join(rest, "&")))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	if !hmac.Equal([]byte(strings.ToLower(sigs[0])), []byte(want)) {
		return http.StatusBadRequest, "-1022", "Signature for this request is not valid."
	}
	return http.StatusOK, "", ""
}

// okx verifies a private REST request as OKX documents it.
func (s *Server) okx(r *http.Request, body []byte) (int, string, string) {
	h := r.Header
	if !hmac.Equal([]byte(h.Get("OK-ACCESS-KEY")), []byte(s.opts.OKXKey)) {
		return http.StatusUnauthorized, "50111", "Invalid OK-ACCESS-KEY."
	}
	if !hmac.Equal([]byte(h.Get("OK-ACCESS-PASSPHRASE")), []byte(s.opts.OKXPassphrase)) {
		return http.StatusUnauthorized, "50105", "Invalid OK-ACCESS-PASSPHRASE."
	}
	tsv := h.Get("OK-ACCESS-TIMESTAMP")
	ts, err := time.Parse("2006-01-02T15:04:05.000Z", tsv)
	if d := s.opts.Now().Sub(ts); err != nil || d > 30*time.Second || d < -30*time.Second {
		return http.StatusUnauthorized, "50102", "Timestamp request expired."
	}
	path := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		path += "?" + r.URL.RawQuery
	}
	m := hmac.New(sha256.New, []byte(s.opts.OKXSecret))
	m.Write([]byte(tsv + r.Method + path))
	m.Write(body)
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	if !hmac.Equal([]byte(h.Get("OK-ACCESS-SIGN")), []byte(want)) {
		return http.StatusUnauthorized, "50113", "Invalid Sign."
	}
	return http.StatusOK, "", ""
}

// coinbase verifies a Coinbase Exchange request as Coinbase documents it.
func (s *Server) coinbase(r *http.Request, body []byte) (int, string, string) {
	h := r.Header
	if !hmac.Equal([]byte(h.Get("CB-ACCESS-KEY")), []byte(s.opts.CoinbaseKey)) {
		return http.StatusUnauthorized, "key", "invalid api key"
	}
	if !hmac.Equal([]byte(h.Get("CB-ACCESS-PASSPHRASE")), []byte(s.opts.CoinbasePassphrase)) {
		return http.StatusUnauthorized, "passphrase", "invalid passphrase"
	}
	tsv := h.Get("CB-ACCESS-TIMESTAMP")
	ts, err := strconv.ParseInt(tsv, 10, 64)
	if d := s.opts.Now().Unix() - ts; err != nil || d > 30 || d < -30 {
		return http.StatusUnauthorized, "timestamp", "invalid timestamp"
	}
	secret, err := base64.StdEncoding.DecodeString(s.opts.CoinbaseSecret)
	if err != nil {
		return http.StatusInternalServerError, "secret", "the fake's secret is not base64"
	}
	path := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		path += "?" + r.URL.RawQuery
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tsv + r.Method + path))
	m.Write(body)
	if !hmac.Equal([]byte(h.Get("CB-ACCESS-SIGN")), []byte(base64.StdEncoding.EncodeToString(m.Sum(nil)))) {
		return http.StatusUnauthorized, "signature", "invalid signature"
	}
	return http.StatusOK, "", ""
}
