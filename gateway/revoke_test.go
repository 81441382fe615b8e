package gateway

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// jobsToken is a Kubernetes service-account token of jobs/runner (the
// workload of expiryPolicy) signed by signer, expiring at exp.
func jobsToken(t *testing.T, signer jose.Signer, exp time.Time) string {
	t.Helper()
	tok, err := jwt.Signed(signer).Claims(map[string]any{
		"iss": "https://k8s.test", "aud": []string{"credgate"}, "sub": "system:serviceaccount:jobs:runner",
		"exp": exp.Unix(), "iat": time.Now().Unix(),
		"kubernetes.io": map[string]any{"namespace": "jobs", "serviceaccount": map[string]any{"name": "runner", "uid": "u"}},
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// newSignerKID is newSigner with key id kid.
func newSignerKID(t *testing.T, kid string) (jose.Signer, *ecdsa.PublicKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	return s, &k.PublicKey
}

// jwksOf is a JWKS document holding the keys of signers.
func jwksOf(t *testing.T, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bearerClient is an HTTP client through the gateway whose CONNECTs carry
// the bearer token as Proxy-Authorization.
func bearerClient(t *testing.T, tg *testGateway, h2 bool, bearer string) *http.Client {
	t.Helper()
	pu, _ := url.Parse("http://" + tg.gw.ProxyAddr().String())
	tr := &http.Transport{
		Proxy:              http.ProxyURL(pu),
		ProxyConnectHeader: http.Header{"Proxy-Authorization": {"Bearer " + bearer}},
		TLSClientConfig:    &tls.Config{RootCAs: tg.caPool},
		ForceAttemptHTTP2:  h2,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// startJWTGateway runs a gateway with expiryPolicy whose jwt issuer's
// keys are the file jwks.json (re-read every 50ms), holding key; extra
// is added to the config.
func startJWTGateway(t *testing.T, key jose.JSONWebKey, extra string) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	writeFile(t, tg.dir, "jwks.json", jwksOf(t, key))
	writeFile(t, tg.dir, "policy.yaml", []byte(expiryPolicy))
	tg.run(t, fmt.Sprintf(`resolve: {"api.origin.test:443": %q, "tunnel.origin.test:443": %q}
identity:
  jwt:
    clock_skew: 1s
    issuers:
      - issuer: https://k8s.test
        profile: kubernetes
        audiences: [credgate]
        jwks_file: jwks.json
        refresh_interval: 50ms
`, tg.origin.addr, tg.origin.addr)+extra)
	return tg
}

// uploadRoute makes path an origin handler that reads 5 bytes of the
// body, reports it on the returned channel, then reads the rest.
func uploadRoute(tg *testGateway, path string) <-chan struct{} {
	got := make(chan struct{}, 1)
	tg.origin.route(path, func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return
		}
		got <- struct{}{}
		_, _ = io.Copy(io.Discard, r.Body) // until the client ends or the gateway cancels
		fmt.Fprint(w, "uploaded")
	})
	return got
}

// inFlightRequest is a request kept in flight through the gateway: a
// streamed answer (/stream: the origin sends "first" then waits) or a
// streamed body (an upload the client never ends).
type inFlightRequest struct {
	// cut waits up to within for the request to end and returns how it
	// ended: "" while it runs, else the reason code the client saw (the
	// X-Credgate-Reason of an answer, or "cut" for a streamed answer cut
	// off), and when.
	cut func(within time.Duration) (string, time.Time)
}

// startInFlight starts a request of kind ("stream" or "upload") with c
// and returns once the origin has it.
func startInFlight(t *testing.T, tg *testGateway, c *http.Client, kind string, got <-chan struct{}, path string) *inFlightRequest {
	t.Helper()
	type result struct {
		code string
		at   time.Time
	}
	done := make(chan result, 1)
	if kind == "stream" {
		resp, err := c.Get("https://" + apiHost + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		br := bufio.NewReader(resp.Body)
		if first, err := br.ReadString('\n'); err != nil || first != "first\n" {
			t.Fatalf("first chunk %q, %v", first, err)
		}
		go func() {
			s, err := br.ReadString('\n')
			if err != nil {
				done <- result{"cut", time.Now()}
				return
			}
			done <- result{"went on: " + s, time.Now()}
		}()
	} else {
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		req, _ := http.NewRequest(http.MethodPost, "https://"+apiHost+path, pr)
		go func() {
			resp, err := c.Do(req)
			if err != nil {
				done <- result{"error: " + err.Error(), time.Now()}
				return
			}
			resp.Body.Close()
			code := resp.Header.Get(ReasonHeader)
			if code == "" {
				code = fmt.Sprintf("status %d", resp.StatusCode)
			}
			done <- result{code, time.Now()}
		}()
		if _, err := pw.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("the origin did not get the first bytes")
		}
	}
	return &inFlightRequest{cut: func(within time.Duration) (string, time.Time) {
		select {
		case r := <-done:
			return r.code, r.at
		case <-time.After(within):
			return "", time.Time{}
		}
	}}
}

// TestIdentityExpiryCutsRequestsInFlight checks the class "no request
// runs on after the identity that sent it expired": a streamed answer
// (server-sent events, a model's answer) or a streamed body, over HTTP/1.1
// and HTTP/2, sent with a token that expires is cut
// limits.in_flight_identity_grace after the token's exp, not before (an
// ordinary request whose token expires during its milliseconds in flight
// is spared); the client waiting for an answer gets 502
// identity_expired_in_flight, one reading a streamed answer sees it cut
// off; both are audited with that code. Before, they ran on for as long
// as the upstream streamed.
func TestIdentityExpiryCutsRequestsInFlight(t *testing.T) {
	signer, pub := newSigner(t)
	const grace = time.Second
	tg := startJWTGateway(t, jose.JSONWebKey{Key: pub, KeyID: "k1", Algorithm: "ES256", Use: "sig"},
		"limits: {in_flight_identity_grace: 1s}\n")
	for _, h2 := range []bool{false, true} {
		for _, kind := range []string{"stream", "upload"} {
			t.Run(fmt.Sprintf("h2=%v/%s", h2, kind), func(t *testing.T) {
				path := fmt.Sprintf("/upload-%v", h2)
				got := uploadRoute(tg, path)
				// exp is in whole seconds: 2 to 3 seconds from now.
				exp := time.Now().Add(3 * time.Second).Truncate(time.Second)
				c := bearerClient(t, tg, h2, jobsToken(t, signer, exp))
				before := strings.Count(tg.audit.String(), `"code":"identity_expired_in_flight"`)
				req := startInFlight(t, tg, c, kind, got, path)
				code, at := req.cut(time.Until(exp.Add(grace).Add(5 * time.Second)))
				switch {
				case code == "":
					t.Fatalf("the request was still in flight %s after its identity expired", time.Since(exp).Round(time.Millisecond))
				case kind == "stream" && code != "cut", kind == "upload" && code != "identity_expired_in_flight":
					t.Fatalf("the request ended with %q, want it cut with identity_expired_in_flight", code)
				case at.Before(exp.Add(grace)):
					t.Fatalf("the request was cut at %s, before its identity's expiry %s plus the grace %s", at.Format(time.RFC3339Nano), exp, grace)
				}
				waitFor(t, 5*time.Second, "the audit line of the cut request", func() bool {
					return strings.Count(tg.audit.String(), `"code":"identity_expired_in_flight"`) > before
				})
			})
		}
	}
	if m := metric(t, tg, `credgate_refusals_total{code="identity_expired_in_flight"}`); m != `credgate_refusals_total{code="identity_expired_in_flight"} 4` {
		t.Errorf("refusals metric: %q, want 4", m)
	}
}

// upgradeInTunnel makes an intercepted tunnel a WebSocket to apiHost/ws
// (the origin's echo protocol) and returns it as a longClient.
func upgradeInTunnel(t *testing.T, tn *tunnel) *longClient {
	t.Helper()
	fmt.Fprintf(tn.c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", apiHost)
	resp, err := http.ReadResponse(tn.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	tc := tn.c.(*tls.Conn)
	lc := &longClient{c: tc, br: tn.br}
	lc.alive = func() bool {
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprint(tc, "ping\n"); err != nil {
			return false
		}
		line, err := readEcho(tn.br)
		return err == nil && line == "echo: ping\n"
	}
	return lc
}

// streamInTunnel sends GET /stream in an intercepted tunnel, reads the
// first chunk and returns a func that waits up to within for the rest:
// "cut" when the answer broke off, "went on" when the second chunk came,
// "" while it runs.
func streamInTunnel(t *testing.T, tn *tunnel) func(within time.Duration) string {
	t.Helper()
	_ = tn.c.SetDeadline(time.Time{})
	fmt.Fprintf(tn.c, "GET /stream HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost)
	resp, err := http.ReadResponse(tn.br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stream: %v %v", resp, err)
	}
	return awaitSecondChunk(t, resp.Body)
}

// TestWithdrawnEvidenceClosesWhatIsOpen checks the class "evidence
// withdrawn while a connection or request is open": what was opened on a
// token whose signing key the issuer removed, or on a client certificate
// whose CA left tls.client_ca or identity.mtls.bundles, stops when the
// source changes, not at the token's exp, the certificate's NotAfter or
// limits.long_lived.max_lifetime. A spliced tunnel and a WebSocket close
// (identity_revoked, counted and audited); a streamed answer and a
// streamed body are cut (identity_revoked_in_flight). A change that keeps
// the key or CA (another added beside it) leaves them running. Before,
// they all ran on until their evidence expired.
func TestWithdrawnEvidenceClosesWhatIsOpen(t *testing.T) {
	for _, change := range []string{"removed", "kept"} {
		t.Run("jwks/"+change, func(t *testing.T) {
			signer, pub := newSigner(t)
			key1 := jose.JSONWebKey{Key: pub, KeyID: "k1", Algorithm: "ES256", Use: "sig"}
			tg := startJWTGateway(t, key1, "")
			got := uploadRoute(tg, "/upload")
			tok := jobsToken(t, signer, time.Now().Add(time.Hour))
			tunnel := openLongClient(t, tg, kindTunnel, tok)
			ws := openLongClient(t, tg, kindWebSocket, tok)
			stream := startInFlight(t, tg, bearerClient(t, tg, false, tok), "stream", nil, "")
			upload := startInFlight(t, tg, bearerClient(t, tg, true, tok), "upload", got, "/upload")

			signer2, pub2 := newSignerKID(t, "k2")
			keys := []jose.JSONWebKey{{Key: pub2, KeyID: "k2", Algorithm: "ES256", Use: "sig"}}
			if change == "kept" {
				keys = append(keys, key1)
			}
			writeFile(t, tg.dir, "jwks.json", jwksOf(t, keys...))
			tok2 := jobsToken(t, signer2, time.Now().Add(time.Hour))
			waitFor(t, 5*time.Second, "the new key set", func() bool {
				resp, err := bearerClient(t, tg, false, tok2).Get("https://" + apiHost + "/v1/probe")
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			})
			if change == "kept" {
				if !tunnel.alive() || !ws.alive() {
					t.Fatal("a long-lived connection closed though its key stayed")
				}
				ack, err := bearerClient(t, tg, false, tok).Get("https://" + apiHost + "/stream-ack")
				if err != nil {
					t.Fatal(err)
				}
				ack.Body.Close()
				if code, _ := stream.cut(10 * time.Second); code != "went on: second\n" {
					t.Errorf("the streamed answer: %q, want it to go on", code)
				}
				if code, _ := upload.cut(0); code != "" {
					t.Errorf("the streamed body ended: %q, want it still in flight", code)
				}
				return
			}
			for name, lc := range map[string]*longClient{"tunnel": tunnel, "websocket": ws} {
				if !lc.closedByGateway(5 * time.Second) {
					t.Errorf("the %s opened with a token whose key was removed is still open", name)
				}
			}
			if code, _ := stream.cut(5 * time.Second); code != "cut" {
				t.Errorf("the streamed answer: %q, want it cut", code)
			}
			if code, _ := upload.cut(5 * time.Second); code != "identity_revoked_in_flight" {
				t.Errorf("the streamed body: %q, want 502 identity_revoked_in_flight", code)
			}
			waitFor(t, 5*time.Second, "the audit lines", func() bool {
				a := tg.audit.String()
				return strings.Count(a, `"closed":"identity_revoked"`) == 2 && strings.Count(a, `"code":"identity_revoked_in_flight"`) == 2
			})
			for _, kind := range longKinds {
				prefix := fmt.Sprintf(`credgate_long_lived_closed_total{kind=%q,reason="identity_revoked"}`, kind)
				waitFor(t, 5*time.Second, prefix+" 1", func() bool { return metric(t, tg, prefix) == prefix+" 1" })
			}
		})
	}
	for _, mode := range []string{"client_ca", "bundles"} {
		for _, change := range []string{"removed", "kept"} {
			t.Run(mode+"/"+change, func(t *testing.T) {
				g := startClientCAGateway(t, mode, "session_tickets: {enabled: false}\n")
				tg, addr, inner, proxyTLS, cert := g.tg, g.addr, g.inner, g.proxyTLS, g.leaf(t)
				ws := upgradeInTunnel(t, openTunnel(t, addr, proxyTLS(cert), apiHost, inner))
				stream := streamInTunnel(t, openTunnel(t, addr, proxyTLS(cert), apiHost, inner))

				g.replaceCA(t, change == "kept")
				if change == "kept" {
					if !ws.alive() {
						t.Fatal("the WebSocket closed though its CA stayed")
					}
					if r := newConnGet(t, addr, proxyTLS(cert), apiHost, inner, "/stream-ack"); r.status != http.StatusOK {
						t.Fatalf("/stream-ack: %+v", r)
					}
					if s := stream(10 * time.Second); s != "went on" {
						t.Errorf("the streamed answer: %q, want it to go on", s)
					}
					return
				}
				if !ws.closedByGateway(5 * time.Second) {
					t.Error("the WebSocket opened with a certificate whose CA was removed is still open")
				}
				if s := stream(5 * time.Second); s != "cut" {
					t.Errorf("the streamed answer: %q, want it cut", s)
				}
				waitFor(t, 5*time.Second, "the audit lines", func() bool {
					a := tg.audit.String()
					return strings.Count(a, `"closed":"identity_revoked"`) == 1 && strings.Count(a, `"code":"identity_revoked_in_flight"`) == 1
				})
			})
		}
	}
}

// TestFlightTimerArmsAtEarliest: the requests in flight share one timer,
// armed at the earliest deadline among them: a request whose deadline is
// later leaves it alone, an earlier one moves it, one without a deadline
// (an identity that does not expire) never arms it.
func TestFlightTimerArmsAtEarliest(t *testing.T) {
	fired := make(chan struct{}, 1)
	s := &flightSet{fire: func() { fired <- struct{}{} }}
	defer s.stop()
	base := time.Now().Add(time.Hour)
	s.add(&inFlight{})
	if s.timer != nil || !s.armed.IsZero() {
		t.Fatal("a request without a deadline armed the timer")
	}
	for i, tc := range []struct {
		deadline, armed time.Time
	}{
		{base, base},
		{base.Add(time.Minute), base},
		{base.Add(-time.Minute), base.Add(-time.Minute)},
		{base, base.Add(-time.Minute)},
	} {
		s.add(&inFlight{deadline: tc.deadline})
		if !s.armed.Equal(tc.armed) {
			t.Errorf("after request %d (deadline %s): armed at %s, want %s", i, tc.deadline, s.armed, tc.armed)
		}
	}
	timer := s.timer
	s.add(&inFlight{deadline: time.Now()})
	if s.timer != timer {
		t.Error("a second timer was made")
	}
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("the timer armed at a deadline passed did not fire")
	}
}

// awaitSecondChunk reads the first chunk of the origin's /stream answer
// from body and returns a func that waits up to within for the rest:
// "cut" when the answer broke off, "went on" when the second chunk came,
// "" while it runs.
func awaitSecondChunk(t *testing.T, body io.Reader) func(within time.Duration) string {
	t.Helper()
	br := bufio.NewReader(body)
	if first, err := br.ReadString('\n'); err != nil || first != "first\n" {
		t.Fatalf("first chunk %q, %v", first, err)
	}
	done := make(chan string, 1)
	go func() {
		if s, err := br.ReadString('\n'); err != nil || s != "second\n" {
			done <- "cut"
			return
		}
		done <- "went on"
	}()
	return func(within time.Duration) string {
		select {
		case s := <-done:
			return s
		case <-time.After(within):
			return ""
		}
	}
}
