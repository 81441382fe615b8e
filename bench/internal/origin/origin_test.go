package origin

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/credgate/credgate/internal/oauth2test"
	"github.com/credgate/credgate/internal/testpki"
)

// start runs an origin on 127.0.0.1 that wants token, and returns its
// address and a TLS config that trusts it.
func start(t *testing.T, token string) (string, *tls.Config) {
	t.Helper()
	ca, err := testpki.NewAuthority("origin test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("api.origin.test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := Start(ln, Config{Certificate: leaf, Token: token})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "api.origin.test"}
}

// Every path refuses a request without the token, and uploads and the
// WebSocket echo work with it.
func TestOriginPaths(t *testing.T) {
	addr, tcfg := start(t, "s3cret")
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tcfg, ForceAttemptHTTP2: true}}
	defer c.CloseIdleConnections()
	body := bytes.Repeat([]byte("x"), 300<<10)
	for _, tt := range []struct {
		path, auth string
		body       []byte
		want       int
	}{
		{"/v1/charges", "", nil, 401},
		{"/v1/charges", "Bearer s3cret", nil, 200},
		{UploadPath, "", body, 401},
		{UploadPath, "Bearer wrong", body, 401},
		{UploadPath, "Bearer s3cret", body, 200},
		{EchoPath, "", nil, 401},
	} {
		method, r := http.MethodGet, io.Reader(nil)
		if tt.body != nil {
			method, r = http.MethodPost, bytes.NewReader(tt.body)
		}
		req, err := http.NewRequest(method, "https://"+addr+tt.path, r)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "api.origin.test"
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, tt.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s with %q: status %d, want %d", method, tt.path, tt.auth, resp.StatusCode, tt.want)
		}
	}

	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: tcfg.RootCAs, ServerName: tcfg.ServerName, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	cfg, err := websocket.NewConfig("wss://api.origin.test"+EchoPath, "https://api.origin.test")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header = http.Header{"Authorization": {"Bearer s3cret"}}
	ws, err := websocket.NewClient(cfg, tc)
	if err != nil {
		t.Fatalf("WebSocket handshake with the token: %v", err)
	}
	defer ws.Close()
	msg := "hello " + strings.Repeat("y", 100)
	if err := websocket.Message.Send(ws, msg); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := websocket.Message.Receive(ws, &got); err != nil {
		t.Fatal(err)
	}
	if got != msg {
		t.Errorf("echo = %q, want %q", got, msg)
	}
}

// ResetPath breaks its answer off: a client reading it gets an error,
// over HTTP/1.1 and HTTP/2, never the promised 64 KiB.
func TestOriginReset(t *testing.T) {
	addr, tcfg := start(t, "s3cret")
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: tcfg, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+ResetPath, nil)
		req.Host = "api.origin.test"
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil || n >= 64<<10 {
			t.Errorf("h2=%v: read %d bytes, err %v; want an error before 64 KiB", h2, n, err)
		}
		c.CloseIdleConnections()
	}
}

// Under the introspection prefix, only a token the authorization server
// calls active is accepted (not the static token, not an unknown one);
// elsewhere the static token still is.
func TestOriginIntrospection(t *testing.T) {
	as := oauth2test.New(oauth2test.Options{})
	t.Cleanup(as.Close)
	as.AddSecretClient("app", "app-secret")
	as.AddSecretClient("origin", "origin-secret")
	tok, err := (&clientcredentials.Config{ClientID: "app", ClientSecret: "app-secret", TokenURL: as.TokenURL()}).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := testpki.NewAuthority("origin test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("api.origin.test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := Start(ln, Config{Certificate: leaf, Token: "s3cret", Introspection: &Introspection{
		Prefix: "/oauth2/", URL: as.IntrospectURL(), ClientID: "origin", ClientSecret: "origin-secret"}})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "api.origin.test"}}}
	defer c.CloseIdleConnections()
	for _, tt := range []struct {
		path, auth string
		want       int
	}{
		{"/oauth2/charges", "", 401},
		{"/oauth2/charges", "Bearer s3cret", 401},
		{"/oauth2/charges", "Bearer " + tok.AccessToken + "x", 401},
		{"/oauth2/charges", "Bearer " + tok.AccessToken, 200},
		{"/v1/charges", "Bearer " + tok.AccessToken, 401},
		{"/v1/charges", "Bearer s3cret", 200},
	} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+ln.Addr().String()+tt.path, nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s with %.20q: %d, want %d", tt.path, tt.auth, resp.StatusCode, tt.want)
		}
	}
}

// DownloadPath sends as many bytes as asked, with that Content-Length,
// to a request with the token, and refuses a size it cannot parse or
// will not send.
func TestOriginDownload(t *testing.T) {
	addr, tcfg := start(t, "s3cret")
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tcfg, ForceAttemptHTTP2: true}}
	defer c.CloseIdleConnections()
	for _, tt := range []struct {
		query, auth string
		want        int
		size        int64
	}{
		{"?bytes=1000", "", 401, -1},
		{"?bytes=0", "Bearer s3cret", 200, 0},
		{"?bytes=200000", "Bearer s3cret", 200, 200000},
		{"", "Bearer s3cret", 400, -1},
		{"?bytes=-1", "Bearer s3cret", 400, -1},
		{"?bytes=68719476737", "Bearer s3cret", 400, -1},
	} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+DownloadPath+tt.query, nil)
		req.Host = "api.origin.test"
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, err %v; want %d", tt.query, resp.StatusCode, err, tt.want)
			continue
		}
		if tt.size < 0 {
			continue
		}
		if int64(len(b)) != tt.size || resp.ContentLength != tt.size {
			t.Errorf("%s: %d bytes, Content-Length %d; want %d", tt.query, len(b), resp.ContentLength, tt.size)
		}
		if tt.size > 0 && !bytes.Equal(b[:min(len(b), len(patternBlock))], patternBlock[:min(len(b), len(patternBlock))]) {
			t.Errorf("%s: body starts %.20q, want the pattern", tt.query, b)
		}
	}
}

// Pattern fills every read whole with the repeating block.
func TestPattern(t *testing.T) {
	for _, n := range []int{0, 1, 100, 64 << 10, 64<<10 + 1, 200 << 10} {
		p := make([]byte, n)
		got, err := Pattern{}.Read(p)
		if err != nil || got != n {
			t.Fatalf("Read(%d bytes) = %d, %v", n, got, err)
		}
		for i := range p {
			if p[i] != patternBlock[i%len(patternBlock)] {
				t.Fatalf("Read(%d bytes): byte %d is %#x, want %#x", n, i, p[i], patternBlock[i%len(patternBlock)])
			}
		}
	}
	seen := map[byte]bool{}
	for _, c := range patternBlock {
		seen[c] = true
	}
	if len(seen) < 250 {
		t.Errorf("the block holds %d distinct byte values; want nearly all 256", len(seen))
	}
}
