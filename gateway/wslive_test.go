package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
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

// wsLivePolicy: rule ws scrubs the frames of a WebSocket injecting
// credential own; rule store injects credential late, which the gateway
// has not injected before, through its placeholder into a request the
// upstream keeps.
const wsLivePolicy = `
workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
credentials:
  own:
    provider: static
    env: CREDGATE_WSLIVE_OWN
  late:
    provider: static
    env: CREDGATE_WSLIVE_LATE
    placeholder: CREDGATE_PH_late
rules:
  - {name: ws, from: local, to: api, paths: [/live/ws], inject: {credential: own, as: bearer}}
  - {name: store, from: local, to: api, paths: [/store], inject: {credential: late, as: placeholder, substitute_in: ["json:/note"]}}
default: deny
`

// wsLiveSecret is credential late's value.
const wsLiveSecret = "sk_live_wslate_7f3a9c2e41d8b6"

// TestWebSocketScrubsCredentialInjectedLater: an agent opens a WebSocket
// through a scrubbing rule first, then has a credential new to the
// gateway injected through another rule into a request the upstream
// keeps (a chat message stored through its placeholder), and the
// upstream sends it back on the already-open WebSocket. Each frame
// carrying it reaches the client redacted: a text and a binary frame
// (the latter base64), the fragments of a message begun after the
// injection, the last fragment of a message begun before it, a control
// frame whose header and first bytes came before the injection and the
// rest after, a payload over the whole-frame size and a close frame's
// reason; each is counted in the audit line and the metric. Before, the
// frames were scrubbed with the table of every held credential taken at
// the 101, which did not hold the credential.
func TestWebSocketScrubsCredentialInjectedLater(t *testing.T) {
	t.Setenv("CREDGATE_WSLIVE_OWN", "wslive-own-credential-value")
	t.Setenv("CREDGATE_WSLIVE_LATE", wsLiveSecret)
	pki := newTestPKI(t, apiHost)
	o := startOrigin(t, pki)
	stored := make(chan struct{})
	o.route("/store", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !bytes.Contains(b, []byte(wsLiveSecret)) {
			http.Error(w, "the placeholder was not substituted", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "stored")
		close(stored)
	})
	b64 := base64.StdEncoding.EncodeToString([]byte(wsLiveSecret))
	big := bytes.Repeat([]byte("y"), maxWSWhole+100)
	copy(big[maxWSWhole/2:], wsLiveSecret)
	// The frames carrying the secret, in the order the upstream sends
	// them once it stored it.
	cases := []struct {
		name    string
		opcode  byte
		payload string
		want    int // redaction markers
	}{
		{"control frame begun before, ended after", 9, "ping " + wsLiveSecret, 1},
		{"last fragment of a message begun before", 0, "cont " + wsLiveSecret, 1},
		{"text frame", 1, `{"msg":"` + wsLiveSecret + `"}`, 1},
		{"binary frame", 2, "bin:" + b64, 1},
		{"first fragment of a message begun after", 1, "f1 " + wsLiveSecret, 1},
		{"last fragment of a message begun after", 0, "f2 " + wsLiveSecret, 1},
		{"payload over the whole-frame size", 1, string(big), 1},
		{"close frame's reason", 8, "\x03\xe8bye " + wsLiveSecret, 1},
	}
	ping := wsFrame(true, 9, []byte(cases[0].payload))
	splitAt := len(ping) - len(wsLiveSecret)
	o.route("/live/ws", func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(rw, wsSwitch(r)+"\r\n")
		rw.Write(wsFrame(true, 1, []byte("hello")))
		rw.Write(wsFrame(false, 1, []byte("start ")))
		rw.Write(ping[:splitAt]) // the secret not yet sent
		rw.Flush()
		select {
		case <-stored:
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Second):
			return
		}
		rw.Write(ping[splitAt:])
		for _, tc := range cases[1:] {
			fin := tc.name != "first fragment of a message begun after"
			rw.Write(wsFrame(fin, tc.opcode, []byte(tc.payload)))
		}
		rw.Flush()
		_, _ = rw.ReadString('\n') // until the client is done
	})
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(wsLivePolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", o.addr))
	t.Cleanup(func() {
		if out := tg.audit.String() + tg.logs.String(); strings.Contains(out, wsLiveSecret) || strings.Contains(out, b64) {
			t.Errorf("the audit or log output holds the secret")
		}
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
	// The stream is open and relayed before the credential is injected.
	for _, want := range []string{"hello", "start "} {
		if _, p, err := readWSFrame(tbr); err != nil || string(p) != want {
			t.Fatalf("frame %q, %v; want %q", p, err, want)
		}
	}

	// The credential is injected for the first time, by another request.
	c := tg.client(t, false)
	resp, err := c.Post("https://"+apiHost+"/store", "application/json", strings.NewReader(`{"note":"CREDGATE_PH_late"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("store: %s", resp.Status)
	}

	total := 0
	for _, want := range cases {
		op, p, err := readWSFrame(tbr)
		if err != nil || op != want.opcode || len(p) != len(want.payload) {
			t.Fatalf("%s: frame opcode %d (%d bytes), %v; want opcode %d (%d bytes)", want.name, op, len(p), err, want.opcode, len(want.payload))
		}
		if bytes.Contains(p, []byte(wsLiveSecret)) || bytes.Contains(p, []byte(b64)) {
			t.Errorf("%s: the client read the credential injected after the WebSocket opened", want.name)
		}
		if n := bytes.Count(p, []byte(secret.Redacted)); n != want.want {
			t.Errorf("%s: %d redaction markers, want %d", want.name, n, want.want)
		}
		total += want.want
	}
	fmt.Fprint(tc, "done\n")
	tc.Close()
	waitFor(t, 5*time.Second, "the WebSocket's audit line with its scrubbed count", func() bool {
		return strings.Contains(tg.audit.String(), `"status":101`) && strings.Contains(tg.audit.String(), fmt.Sprintf(`"scrubbed":%d`, total))
	})
	var m dto.Metric
	if err := tg.gw.metrics.response.scrubbed.WithLabelValues("ws").Write(&m); err != nil || m.GetCounter().GetValue() != float64(total) {
		t.Errorf("credgate_response_scrubbed_total{rule=ws} = %v (%v), want %d", m.GetCounter().GetValue(), err, total)
	}
}
