package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credgate/credgate/internal/testpki"
	"github.com/credgate/credgate/internal/vaulttest"
)

// identityOrigin is a TLS origin (HTTP/1.1 and HTTP/2, session tickets
// on) that asks for a client certificate and records, per request, the
// certificate's common name ("" for none), the Authorization header, the
// connection it came on and whether that connection resumed a session.
type identityOrigin struct {
	addr string
	// closeEach answers every request with Connection: close (a GOAWAY
	// on HTTP/2), so the gateway dials, and resumes, a new connection
	// for the next.
	closeEach bool

	mu   sync.Mutex
	reqs []identitySeen
}

type identitySeen struct {
	cert, auth, conn string
	resumed          bool
}

func startIdentityOrigin(t *testing.T, pki *testPKI, closeEach bool) *identityOrigin {
	t.Helper()
	o := &identityOrigin{closeEach: closeEach}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.addr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := identitySeen{auth: r.Header.Get("Authorization"), conn: r.RemoteAddr, resumed: r.TLS.DidResume}
			if len(r.TLS.PeerCertificates) > 0 {
				s.cert = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			o.mu.Lock()
			o.reqs = append(o.reqs, s)
			o.mu.Unlock()
			if o.closeEach {
				w.Header().Set("Connection", "close")
			}
			io.WriteString(w, "ok")
		}),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pki.leaf},
			ClientAuth:   tls.RequestClientCert,
			NextProtos:   []string{"h2", "http/1.1"},
		},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return o
}

func (o *identityOrigin) seen() []identitySeen {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]identitySeen(nil), o.reqs...)
}

// clientFrom returns an HTTP client of the gateway whose connections come
// from the source address src (a workload by its cidrs).
func (tg *testGateway) clientFrom(t *testing.T, src string, h2 bool) *http.Client {
	t.Helper()
	pu, _ := url.Parse("http://" + tg.gw.ProxyAddr().String())
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	tr := &http.Transport{
		Proxy:             http.ProxyURL(pu),
		DialContext:       d.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: tg.caPool},
		ForceAttemptHTTP2: h2,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// TestUpstreamConnectionsKeepTheirIdentity is the class test of upstream
// connection reuse across identities: workloads a and b present client
// certificates of their own to one origin (tlsclient), workload c a bearer
// token over a connection without one, interleaved, over HTTP/1.1 and
// HTTP/2 clients, under every upstream.http2 setting, with the origin
// keeping connections open (pooled connections, HTTP/2 multiplexing of
// concurrent requests) and closing each (every request a new connection,
// resuming a TLS session where the gateway has one). The origin records, per request, the client
// certificate of the connection and whether it resumed: each request must
// arrive with its own workload's certificate (c's with none), and no
// connection may carry requests of two workloads. A session resumed
// carries the certificate of the handshake that made it, so a session
// cache shared between certificates (or with the connections that present
// none) shows here as a request with another workload's certificate.
func TestUpstreamConnectionsKeepTheirIdentity(t *testing.T) {
	const host = "mtls.origin.test"
	type workload struct{ name, src, cert string }
	workloads := []workload{{"a", "127.0.0.1", "client-a"}, {"b", "127.0.0.2", "client-b"}, {"c", "127.0.0.3", ""}}
	failed, total := 0, 0
	for _, mode := range []string{HTTP2Match, HTTP2Always, HTTP2Never} {
		for _, closeEach := range []bool{false, true} {
			name := fmt.Sprintf("http2-%s/close-%v", mode, closeEach)
			t.Run(name, func(t *testing.T) {
				pki := newTestPKI(t, host)
				o := startIdentityOrigin(t, pki, closeEach)
				tg := newTestGateway(t, pki, nil)
				tg.upstreamExtra = ", http2: " + mode
				var creds, rules strings.Builder
				for _, w := range workloads {
					if w.cert == "" {
						fmt.Fprintf(&rules, "  - {name: %s, from: %s, to: origin, inject: {credential: token, as: bearer}}\n", w.name, w.name)
						continue
					}
					leaf, err := pki.ca.ClientLeaf(w.cert)
					if err != nil {
						t.Fatal(err)
					}
					certPEM, keyPEM, err := testpki.PEM(leaf)
					if err != nil {
						t.Fatal(err)
					}
					cf := writeFile(t, tg.dir, w.name+".pem", certPEM)
					kf := writeFile(t, tg.dir, w.name+"-key.pem", keyPEM)
					fmt.Fprintf(&creds, "  cert-%s:\n    provider: static\n    fields:\n      certificate: {file: %q}\n      private_key: {file: %q}\n", w.name, cf, kf)
					fmt.Fprintf(&rules, "  - {name: %s, from: %s, to: origin, inject: {credential: cert-%s, as: tlsclient}}\n", w.name, w.name, w.name)
				}
				writeFile(t, tg.dir, "policy.yaml", []byte(fmt.Sprintf(`workloads:
  a: {cidrs: [127.0.0.1/32]}
  b: {cidrs: [127.0.0.2/32]}
  c: {cidrs: [127.0.0.3/32]}
destinations:
  origin:
    hosts: [%s]
    allow_private: true
credentials:
  token:
    provider: static
    env: CREDGATE_GATEWAY_TEST_TOKEN
%srules:
%sdefault: deny
`, host, creds.String(), rules.String())))
				tg.run(t, fmt.Sprintf("resolve:\n  %q: %q\n", host+":443", o.addr))

				type client struct {
					w  workload
					h2 bool
					c  *http.Client
				}
				var clients []client
				for _, w := range workloads {
					for _, h2 := range []bool{false, true} {
						clients = append(clients, client{w, h2, tg.clientFrom(t, w.src, h2)})
					}
				}
				// Rounds of one request per client, in turn, then (with
				// connections kept: a GOAWAY after every answer would
				// refuse the requests multiplexed beside it) the same
				// concurrently.
				var want []string // the workload of each request, in order
				send := func(c client) error {
					resp, err := c.c.Get("https://" + host + "/who")
					if err != nil {
						return fmt.Errorf("workload %s (h2 %v): %w", c.w.name, c.h2, err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("workload %s (h2 %v): %s %s", c.w.name, c.h2, resp.Status, body)
					}
					return nil
				}
				for range 4 {
					for _, c := range clients {
						if err := send(c); err != nil {
							t.Fatal(err)
						}
						want = append(want, c.w.name)
					}
				}
				concurrent := 4
				if closeEach {
					concurrent = 0
				}
				var wg sync.WaitGroup
				errs := make(chan error, concurrent*len(clients))
				for range concurrent {
					for _, c := range clients {
						wg.Add(1)
						go func() {
							defer wg.Done()
							errs <- send(c)
						}()
					}
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}

				byCert := map[string]string{"client-a": "a", "client-b": "b"}
				got := o.seen()
				if len(got) != len(want)+concurrent*len(clients) {
					t.Fatalf("the origin saw %d requests, want %d", len(got), len(want)+concurrent*len(clients))
				}
				connOf := map[string]string{} // connection -> workload
				resumed := 0
				bad := 0
				for i, s := range got {
					who := byCert[s.cert]
					switch {
					case s.cert == "" && s.auth == "Bearer "+tg.token:
						who = "c"
					case s.cert != "" && s.auth != "":
						bad++
						t.Errorf("request %d came with certificate %q and an Authorization header", i, s.cert)
					case who == "":
						bad++
						t.Errorf("request %d came with certificate %q and Authorization %v: no workload's", i, s.cert, s.auth != "")
						continue
					}
					if i < len(want) && who != want[i] {
						bad++
						t.Errorf("request %d of workload %s arrived as workload %s's (certificate %q, resumed %v)", i, want[i], who, s.cert, s.resumed)
					}
					if prev, ok := connOf[s.conn]; ok && prev != who {
						bad++
						t.Errorf("connection %s carried requests of workloads %s and %s", s.conn, prev, who)
					}
					connOf[s.conn] = who
					if s.resumed {
						resumed++
					}
				}
				if closeEach && resumed == 0 {
					t.Errorf("no upstream connection resumed a session: the case does not test resumption")
				}
				total++
				if bad > 0 {
					failed++
				}
				t.Logf("%d requests on %d connections, %d resumed", len(got), len(connOf), resumed)
			})
		}
	}
	t.Logf("%d of %d cases mixed identities", failed, total)
}

// TestPerWorkloadSecretsStayTheirs is the class test of per-workload
// credentials and placeholders: workloads a and b share rules whose
// credential is read per workload (a Vault path templated with the
// workload's name) behind a fixed placeholder, a generated per-workload
// placeholder and a bearer injection. Each request, in turn and
// concurrently, over HTTP/1.1 and HTTP/2, must reach the origin with its
// own workload's secret; b sending a's generated placeholder is refused
// and nothing is sent; no response carries either secret (the origin
// echoes what it received), and neither reaches the log or audit lines.
// The placeholder's substitution is memoised per rule and placeholder,
// not per caller: a and b alternating must still each get their own.
func TestPerWorkloadSecretsStayTheirs(t *testing.T) {
	emu := vaulttest.NewServer(vaulttest.Options{})
	t.Cleanup(emu.Close)
	cfg := api.DefaultConfig()
	cfg.Address = emu.URL
	admin, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(emu.RootToken)
	secrets := map[string]string{"a": "secret-of-a-" + fmt.Sprint(time.Now().UnixNano()), "b": "secret-of-b-" + fmt.Sprint(time.Now().UnixNano())}
	for w, v := range secrets {
		if _, err := admin.Logical().Write("secret/data/app-"+w, map[string]any{"data": map[string]any{"token": v}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDGATE_GATEWAY_TEST_VAULT_TOKEN", emu.RootToken)

	pki := newTestPKI(t, apiHost, secondHost)
	o := startOrigin(t, pki)
	o.route("/echo-key", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "key=%s auth=%s", r.Header.Get("X-Key"), r.Header.Get("Authorization"))
	})
	tg := newTestGateway(t, pki, o)
	server := fmt.Sprintf("{address: %q, auth: {method: token, token_env: CREDGATE_GATEWAY_TEST_VAULT_TOKEN}}", emu.URL)
	writeFile(t, tg.dir, "policy.yaml", []byte(fmt.Sprintf(`workloads:
  a: {cidrs: [127.0.0.1/32]}
  b: {cidrs: [127.0.0.2/32]}
destinations:
  api: {hosts: [%s], allow_private: true}
  second: {hosts: [%s], allow_private: true}
credentials:
  fixed:
    provider: vault
    server: %s
    path: 'secret/data/app-{{.workload.name}}'
    field: token
    placeholder: CREDGATE_PH_scoped
  generated:
    provider: vault
    server: %s
    path: 'secret/data/app-{{.workload.name}}'
    field: token
    placeholder: {generate: per_workload}
  bearer:
    provider: vault
    server: %s
    path: 'secret/data/app-{{.workload.name}}'
    field: token
rules:
  - {name: generated, from: "*", to: api, paths: [/gen/*], inject: {credential: generated, as: placeholder}}
  - {name: fixed, from: "*", to: api, inject: {credential: fixed, as: placeholder}}
  - {name: bearer, from: "*", to: second, inject: {credential: bearer, as: bearer}}
default: deny
`, apiHost, secondHost, server, server, server)))
	tg.run(t, fmt.Sprintf("resolve:\n  %q: %q\n  %q: %q\n", apiHost+":443", o.addr, secondHost+":443", o.addr))
	generated := map[string]string{}
	for _, u := range tg.gw.store.Current().Placeholders() {
		if u.Credential == "generated" && u.Workload != "" {
			generated[u.Workload] = u.Placeholder
		}
	}
	src := map[string]string{"a": "127.0.0.1", "b": "127.0.0.2"}

	type probe struct {
		name string
		// url and header of the request workload wl sends.
		req func(wl string) (string, http.Header)
		// the value the origin must see for wl, in header field.
		field string
		want  func(wl string) string
	}
	probes := []probe{
		{"fixed placeholder", func(string) (string, http.Header) {
			return "https://" + apiHost + "/echo-key", http.Header{"X-Key": {"CREDGATE_PH_scoped"}}
		}, "X-Key", func(wl string) string { return secrets[wl] }},
		{"generated placeholder", func(wl string) (string, http.Header) {
			return "https://" + apiHost + "/gen/x", http.Header{"X-Key": {generated[wl]}}
		}, "X-Key", func(wl string) string { return secrets[wl] }},
		{"bearer", func(string) (string, http.Header) {
			return "https://" + secondHost + "/echo-key", nil
		}, "Authorization", func(wl string) string { return "Bearer " + secrets[wl] }},
	}
	clients := map[string]map[bool]*http.Client{}
	for wl, ip := range src {
		clients[wl] = map[bool]*http.Client{false: tg.clientFrom(t, ip, false), true: tg.clientFrom(t, ip, true)}
	}
	var mu sync.Mutex
	failed, total := 0, 0
	// send sends one probe for wl and checks what the origin received:
	// the origin's record is found by a marker query parameter.
	var seq atomic.Int64
	send := func(p probe, wl string, h2 bool) error {
		u, h := p.req(wl)
		mark := fmt.Sprint(seq.Add(1))
		req, _ := http.NewRequest("GET", u+"?m="+mark, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := clients[wl][h2].Do(req)
		if err != nil {
			return fmt.Errorf("%s from %s: %w", p.name, wl, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got string
		found := false
		for _, s := range o.all() {
			if s.Query == "m="+mark {
				got, found = s.Header.Get(p.field), true
			}
		}
		mu.Lock()
		defer mu.Unlock()
		total++
		switch {
		case !found || resp.StatusCode != http.StatusOK:
			failed++
			return fmt.Errorf("%s from %s (h2 %v): %s %q, origin reached %v", p.name, wl, h2, resp.Status, body, found)
		case got != p.want(wl):
			failed++
			return fmt.Errorf("%s from %s (h2 %v): the origin got another value than the workload's own secret (a's: %v)", p.name, wl, h2, strings.Contains(got, secrets["a"]))
		case strings.Contains(string(body), secrets["a"]) || strings.Contains(string(body), secrets["b"]):
			failed++
			return fmt.Errorf("%s from %s (h2 %v): the response carries a secret", p.name, wl, h2)
		}
		return nil
	}
	for round := range 3 {
		for _, p := range probes {
			for _, wl := range []string{"a", "b", "a", "b"} {
				if err := send(p, wl, round%2 == 1); err != nil {
					t.Error(err)
				}
			}
		}
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wl := []string{"a", "b"}[i%2]
			if err := send(probes[i%len(probes)], wl, i%4 < 2); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	// b sending a's generated placeholder: refused, nothing sent.
	before := len(o.all())
	req, _ := http.NewRequest("GET", "https://"+apiHost+"/gen/x", nil)
	req.Header.Set("X-Key", generated["a"])
	resp, err := clients["b"][false].Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	total++
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Credgate-Reason") != codePlaceholderMisuse || len(o.all()) != before {
		failed++
		t.Errorf("b sending a's generated placeholder: %s %s, origin reached %v; want 403 %s, nothing sent", resp.Status, resp.Header.Get("X-Credgate-Reason"), len(o.all()) != before, codePlaceholderMisuse)
	}
	for where, s := range map[string]string{"audit": tg.audit.String(), "log": tg.logs.String()} {
		for wl, v := range secrets {
			if strings.Contains(s, v) {
				t.Errorf("workload %s's secret appears in the %s output", wl, where)
			}
		}
	}
	t.Logf("%d of %d requests got another's secret or were refused", failed, total)
}
