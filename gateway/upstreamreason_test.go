package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// TestUpstreamCannotForgeGatewayReason: X-Credgate-Reason is the
// gateway's word to the client (its refusals and upstream failures, each
// audited); an upstream that sends the field — in its final response's
// header, in a 103 before it, in a trailer, in the 101 of a WebSocket
// upgrade — reaches no client with it, over HTTP/1.1 and HTTP/2 (clients
// and upstreams, upstream.http2: match), for a request the gateway's
// HTTP/1.1 client sends (GET) and one net/http's transports send (a
// chunked POST). The upstream's answer is still relayed, its other fields
// with it, and the gateway's own refusals keep the field. Before, all 13
// cells reached the client with the upstream's "disabled", a kill switch's
// code.
func TestUpstreamCannotForgeGatewayReason(t *testing.T) {
	tg := startGateway(t)
	tg.origin.route("/forge", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set(ReasonHeader, "disabled")
		h.Set("X-Other", "hint")
		w.WriteHeader(http.StatusEarlyHints)
		h.Set("X-Other", "final")
		h.Set("Trailer", ReasonHeader+", X-Sum")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"code":"disabled"}`)
		h.Set(ReasonHeader, "disabled")
		h.Set("X-Sum", "42")
	})
	tg.origin.route("/ws-forge", func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(rw, wsSwitch(r)+ReasonHeader+": disabled\r\nX-Other: final\r\n\r\n")
		rw.Flush()
		_, _ = io.Copy(io.Discard, rw)
	})

	failed := 0
	for _, h2 := range []bool{false, true} {
		for _, post := range []bool{false, true} {
			t.Run(fmt.Sprintf("h2=%v/post=%v", h2, post), func(t *testing.T) {
				var hints []http.Header
				ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					hints = append(hints, http.Header(h).Clone())
					return nil
				}})
				method, body := http.MethodGet, io.Reader(nil)
				if post {
					method, body = http.MethodPost, io.MultiReader(strings.NewReader("x")) // no length: chunked
				}
				req, _ := http.NewRequestWithContext(ctx, method, "https://"+apiHost+"/forge", body)
				resp, err := tg.client(t, h2).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusForbidden || string(b) != `{"code":"disabled"}` || resp.Header.Get("X-Other") != "final" || resp.Trailer.Get("X-Sum") != "42" {
					t.Fatalf("status %d, body %q, X-Other %q, trailer X-Sum %q: want the upstream's answer relayed", resp.StatusCode, b, resp.Header.Get("X-Other"), resp.Trailer.Get("X-Sum"))
				}
				if len(hints) != 1 || hints[0].Get("X-Other") != "hint" {
					t.Fatalf("1xx responses %v, want the 103 relayed", hints)
				}
				for where, h := range map[string]http.Header{"header": resp.Header, "trailer": resp.Trailer, "103": hints[0]} {
					if v, ok := h[ReasonHeader]; ok {
						t.Errorf("the client got the upstream's %s: %q in the %s", ReasonHeader, v, where)
						failed++
					}
				}
			})
		}
	}
	t.Run("101", func(t *testing.T) {
		conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		tc := tls.Client(conn, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"http/1.1"}})
		fmt.Fprintf(tc, "GET /ws-forge HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", apiHost)
		resp, err = http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Other") != "final" {
			t.Fatalf("upgrade: %v %v, want the upstream's 101 relayed", resp, err)
		}
		if v, ok := resp.Header[ReasonHeader]; ok {
			t.Errorf("the client got the upstream's %s: %q in the 101", ReasonHeader, v)
			failed++
		}
	})
	t.Run("gateway-refusal-keeps-it", func(t *testing.T) {
		resp, err := tg.client(t, false).Get("https://" + apiHost + "/unavailable")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get(ReasonHeader); got != codeCredentialNotConfigured {
			t.Errorf("the gateway's own refusal: %s %q, want %s", ReasonHeader, got, codeCredentialNotConfigured)
		}
	})
	t.Logf("%d cells reached the client with the upstream's %s", failed, ReasonHeader)
}
