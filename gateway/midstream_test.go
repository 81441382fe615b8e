package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/credgate/credgate/secret"
)

// midstreamPolicy: rule live scrubs the streaming answers (and WebSocket
// frames) of requests injecting credential own; rule store injects
// credential late, which the gateway has not injected before, through
// its placeholder into a request the upstream keeps. own's value begins
// as late's does, so the first bytes of late's value ("sk_live_") are
// held back by the table without late (they may begin own's).
const midstreamPolicy = `
workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
credentials:
  own:
    provider: static
    env: CREDGATE_MIDSTREAM_OWN
  late:
    provider: static
    env: CREDGATE_MIDSTREAM_LATE
    placeholder: CREDGATE_PH_late
rules:
  - {name: live, from: local, to: api, paths: ["/live/*"], inject: {credential: own, as: bearer}}
  - {name: store, from: local, to: api, paths: [/store], inject: {credential: late, as: placeholder, substitute_in: ["json:/note"]}}
default: deny
`

// midstreamSecret is credential late's value.
const midstreamSecret = "sk_live_midlate_5c1e9a7b30f2d4"

// startMidstream starts an origin whose /store keeps what it is sent
// (closing the returned channel once it received late's value) and whose
// /live/* routes are added by the caller, and a gateway under
// midstreamPolicy in front of it.
func startMidstream(t *testing.T) (*testOrigin, *testGateway, chan struct{}) {
	t.Helper()
	t.Setenv("CREDGATE_MIDSTREAM_OWN", "sk_live_own_midstream_value_1")
	t.Setenv("CREDGATE_MIDSTREAM_LATE", midstreamSecret)
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	stored := make(chan struct{})
	o.route("/store", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !bytes.Contains(b, []byte(midstreamSecret)) {
			http.Error(w, "the placeholder was not substituted", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "stored")
		close(stored)
	})
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(midstreamPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))
	t.Cleanup(func() {
		if out := tg.audit.String() + tg.logs.String(); strings.Contains(out, midstreamSecret) {
			t.Errorf("the audit or log output holds the secret")
		}
	})
	return o, tg, stored
}

// storeLate has the gateway inject credential late for the first time,
// through another request, which the upstream keeps.
func storeLate(t *testing.T, tg *testGateway) {
	t.Helper()
	resp, err := tg.client(t, false).Post("https://"+apiHost+"/store", "application/json", strings.NewReader(`{"note":"CREDGATE_PH_late"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("store: %s", resp.Status)
	}
}

// awaitStored waits until the upstream stored late's value, or the
// request that waits is gone.
func awaitStored(r *http.Request, stored chan struct{}) bool {
	select {
	case <-stored:
		return true
	case <-r.Context().Done():
		return false
	case <-time.After(10 * time.Second):
		return false
	}
}

// checkScrubbedCount waits for the audit line of the request to path
// and checks that it, and the live rule's metric, count want.
func checkScrubbedCount(t *testing.T, tg *testGateway, path string, want int) {
	t.Helper()
	waitFor(t, 5*time.Second, "the audit line of "+path+" with its scrubbed count", func() bool {
		for line := range strings.SplitSeq(tg.audit.String(), "\n") {
			if strings.Contains(line, `"path":"`+path+`"`) && strings.Contains(line, fmt.Sprintf(`"scrubbed":%d`, want)) {
				return true
			}
		}
		return false
	})
	var m dto.Metric
	if err := tg.gw.metrics.response.scrubbed.WithLabelValues("live").Write(&m); err != nil || m.GetCounter().GetValue() != float64(want) {
		t.Errorf("credgate_response_scrubbed_total{rule=live} = %v (%v), want %d", m.GetCounter().GetValue(), err, want)
	}
}

// TestStreamScrubsCredentialInjectedLater: an agent opens a streaming
// answer through a scrubbing rule first (server-sent events, chunked
// with no length; and the same gzip-encoded), then has a credential new
// to the gateway injected through another rule into a request the
// upstream keeps, and the upstream sends it on the already-open stream:
// whole in one chunk, split across two chunks, and with its first bytes
// sent before it was injected (held back then, since they may begin the
// stream's own credential). Each reaches the client redacted and is
// counted in the audit line and the metric. Before, the body was
// scrubbed to its end with the table of every held credential taken
// when the answer arrived, which did not hold the credential.
func TestStreamScrubsCredentialInjectedLater(t *testing.T) {
	for _, coding := range []string{"", "gzip"} {
		t.Run("coding="+coding, func(t *testing.T) {
			o, tg, stored := startMidstream(t)
			const head = "sk_live_"
			o.route("/live/events", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				var out io.Writer = w
				flush := http.NewResponseController(w).Flush
				if coding == "gzip" {
					w.Header().Set("Content-Encoding", "gzip")
					zw := gzip.NewWriter(w)
					defer zw.Close()
					out = zw
					flush = func() error {
						if err := zw.Flush(); err != nil {
							return err
						}
						return http.NewResponseController(w).Flush()
					}
				}
				send := func(s string) {
					_, _ = io.WriteString(out, s)
					_ = flush()
				}
				send("data: hello\n\n")
				send("data: " + head) // the secret's first bytes, before it is stored
				if !awaitStored(r, stored) {
					return
				}
				send(midstreamSecret[len(head):] + "\n\n")
				send("data: {\"k\":\"" + midstreamSecret + "\"}\n\n")
				send("data: " + midstreamSecret[:12])
				send(midstreamSecret[12:] + "\n\n")
				send("data: bye\n\n")
			})
			resp, err := tg.client(t, false).Get("https://" + apiHost + "/live/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			// The stream is open and relayed before the credential
			// is injected.
			if first, err := br.ReadString('\n'); err != nil || first != "data: hello\n" {
				t.Fatalf("first event %q, %v", first, err)
			}
			storeLate(t, tg)
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(rest, []byte(midstreamSecret)) || bytes.Contains(rest, []byte(midstreamSecret[len(head):])) {
				t.Errorf("the client read the credential injected after the stream opened: %q", rest)
			}
			if n := bytes.Count(rest, []byte(secret.Redacted)); n != 3 {
				t.Errorf("%d redaction markers in %q, want 3", n, rest)
			}
			if !bytes.HasSuffix(rest, []byte("data: bye\n\n")) {
				t.Errorf("the stream's end is missing: %q", rest)
			}
			checkScrubbedCount(t, tg, "/live/events", 3)
		})
	}
}

// TestWebSocketLongPayloadScrubsCredentialInjectedLater: a WebSocket
// payload over maxWSWhole, which streams through the scrubber, whose
// header and first bytes reached the client before a credential new to
// the gateway was injected through another request, has that credential
// redacted from its rest: whole, and split across the upstream's
// writes. Before, such a payload kept the table taken when its header
// arrived.
func TestWebSocketLongPayloadScrubsCredentialInjectedLater(t *testing.T) {
	o, tg, stored := startMidstream(t)
	payload := bytes.Repeat([]byte("y"), maxWSWhole+5000)
	copy(payload[maxWSWhole/2:], midstreamSecret)
	copy(payload[maxWSWhole:], midstreamSecret)
	const before = 1000 // payload bytes sent before the secret is stored
	splitAt := maxWSWhole + 10
	frame := wsFrame(true, 2, payload)
	hdrLen := len(frame) - len(payload)
	o.route("/live/ws", func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(rw, wsSwitch(r)+"\r\n")
		rw.Write(wsFrame(true, 1, []byte("hello")))
		rw.Write(frame[:hdrLen+before])
		rw.Flush()
		if !awaitStored(r, stored) {
			return
		}
		rw.Write(frame[hdrLen+before : hdrLen+splitAt])
		rw.Flush()
		rw.Write(frame[hdrLen+splitAt:])
		rw.Flush()
		_, _ = rw.ReadString('\n') // until the client is done
	})
	conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"http/1.1"}})
	fmt.Fprintf(tc, "GET /live/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", apiHost)
	tbr := bufio.NewReader(tc)
	if resp, err := http.ReadResponse(tbr, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if _, p, err := readWSFrame(tbr); err != nil || string(p) != "hello" {
		t.Fatalf("frame %q, %v; want hello", p, err)
	}
	// The long frame's header and first bytes reach the client before
	// the credential is injected.
	got := make([]byte, hdrLen+before)
	if _, err := io.ReadFull(tbr, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:hdrLen], frame[:hdrLen]) || binary.BigEndian.Uint64(got[2:10]) != uint64(len(payload)) {
		t.Fatalf("long frame header % x", got[:hdrLen])
	}
	storeLate(t, tg)
	rest := make([]byte, len(payload)-before)
	if _, err := io.ReadFull(tbr, rest); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rest, []byte(midstreamSecret)) {
		t.Errorf("the client read the credential injected while the payload streamed")
	}
	if n := bytes.Count(rest, []byte(secret.Redacted)); n != 2 {
		t.Errorf("%d redaction markers, want 2", n)
	}
	fmt.Fprint(tc, "done\n")
	tc.Close()
	waitFor(t, 5*time.Second, "the WebSocket's audit line with its scrubbed count", func() bool {
		return strings.Contains(tg.audit.String(), `"status":101`) && strings.Contains(tg.audit.String(), `"scrubbed":2`)
	})
	var m dto.Metric
	if err := tg.gw.metrics.response.scrubbed.WithLabelValues("live").Write(&m); err != nil || m.GetCounter().GetValue() != 2 {
		t.Errorf("credgate_response_scrubbed_total{rule=live} = %v (%v), want 2", m.GetCounter().GetValue(), err)
	}
}
