package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestGRPCStreamNotHeldBack: a gRPC response streamed through an inject
// rule (which scrubs responses) reaches the client message by message,
// also a message whose last bytes begin the injected credential (here
// its first letter; transform TestGRPCMessagesNotHeldBack has every form
// and length), for HTTP/1.1 and HTTP/2 clients and upstreams. The origin
// sends its second message only when the client has the first, as a
// bidirectional call's server waits for the client's next message.
// Before, the scrubber held the first message's last byte back until the
// second arrived: the call hung until the test's deadline.
func TestGRPCStreamNotHeldBack(t *testing.T) {
	for _, up := range []string{"", "never"} {
		t.Run("upstream.http2="+up, func(t *testing.T) {
			tg := startUpstreamGateway(t, up)
			// The first message ends in the credential's first byte.
			first := grpcFrame("hello " + tg.token[:1])
			second := grpcFrame("bye")
			next := make(chan struct{}, 1)
			tg.origin.route("/v1/grpc.Echo/Stream", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/grpc")
				w.Header().Set("Trailer", "Grpc-Status")
				_, _ = w.Write(first)
				w.(http.Flusher).Flush()
				select {
				case <-next:
				case <-r.Context().Done():
					return
				}
				_, _ = w.Write(second)
				w.Header().Set("Grpc-Status", "0")
			})
			for _, h2 := range []bool{false, true} {
				t.Run(fmt.Sprintf("client-h2=%v", h2), func(t *testing.T) {
					req, err := http.NewRequest(http.MethodPost, "https://"+apiHost+"/v1/grpc.Echo/Stream", strings.NewReader(string(grpcFrame("hi"))))
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("Content-Type", "application/grpc")
					req.Header.Set("Te", "trailers")
					resp, err := tg.client(t, h2).Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					got := make(chan error, 1)
					go func() {
						b := make([]byte, len(first))
						_, err := io.ReadFull(resp.Body, b)
						if err == nil && string(b) != string(first) {
							err = fmt.Errorf("first message %q, want %q", b, first)
						}
						got <- err
					}()
					select {
					case err := <-got:
						if err != nil {
							t.Fatal(err)
						}
					case <-time.After(5 * time.Second):
						next <- struct{}{} // let the origin end
						t.Fatal("the first message did not arrive whole before the origin sent the second: held back")
					}
					next <- struct{}{}
					rest, err := io.ReadAll(resp.Body)
					if err != nil || string(rest) != string(second) || resp.Trailer.Get("Grpc-Status") != "0" {
						t.Errorf("then %q (%v), trailer %v; want the second message and grpc-status 0", rest, err, resp.Trailer)
					}
				})
			}
		})
	}
}

// startUpstreamGateway runs a gateway with canonPolicy in front of the
// test origin, speaking to it as upstream.http2 up says ("": match).
func startUpstreamGateway(t *testing.T, up string) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	if up != "" {
		tg.upstreamExtra = ", http2: " + up
	}
	writeFile(t, tg.dir, "policy.yaml", []byte(canonPolicy))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	return tg
}

// grpcFrame is payload as one uncompressed gRPC message.
func grpcFrame(payload string) []byte {
	b := make([]byte, 5, 5+len(payload))
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// TestGRPCCompressedNotPassed: under an inject rule (which scrubs), the
// gateway asks the upstream for uncompressed gRPC messages
// (grpc-accept-encoding: identity, whatever the client accepts), and a
// message the upstream compresses anyway (here the credential, gzipped,
// which the scrubber cannot read) never reaches the client: its call is
// cut there, after the messages before it, and audited
// response_not_scrubbable, for HTTP/1.1 and HTTP/2 clients and upstreams. Before, the client's grpc-accept-encoding went
// to the upstream and a compressed message passed unscrubbed.
func TestGRPCCompressedNotPassed(t *testing.T) {
	for _, up := range []string{"", "never"} {
		t.Run("upstream.http2="+up, func(t *testing.T) {
			tg := startUpstreamGateway(t, up)
			var zb bytes.Buffer
			zw := gzip.NewWriter(&zb)
			fmt.Fprintf(zw, `{"echo":%q}`, tg.token)
			_ = zw.Close()
			zipped := grpcFrame(zb.String())
			zipped[0] = 1 // compressed
			first := grpcFrame("hello")
			accepted := make(chan []string, 4)
			var calls atomic.Int64 // audited so far
			tg.origin.route("/v1/grpc.Echo/Zipped", func(w http.ResponseWriter, r *http.Request) {
				accepted <- r.Header.Values("Grpc-Accept-Encoding")
				w.Header().Set("Content-Type", "application/grpc")
				w.Header().Set("Grpc-Encoding", "gzip")
				w.Header().Set("Trailer", "Grpc-Status")
				_, _ = w.Write(first)
				w.(http.Flusher).Flush()
				_, _ = w.Write(zipped)
				w.Header().Set("Grpc-Status", "0")
			})
			for _, h2 := range []bool{false, true} {
				t.Run(fmt.Sprintf("client-h2=%v", h2), func(t *testing.T) {
					req, err := http.NewRequest(http.MethodPost, "https://"+apiHost+"/v1/grpc.Echo/Zipped", bytes.NewReader(grpcFrame("hi")))
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("Content-Type", "application/grpc")
					req.Header.Set("Te", "trailers")
					req.Header.Set("Grpc-Accept-Encoding", "gzip")
					resp, err := tg.client(t, h2).Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if got := <-accepted; len(got) != 1 || got[0] != "identity" {
						t.Errorf("the upstream was sent grpc-accept-encoding %q, want identity", got)
					}
					if bytes.Contains(body, zb.Bytes()[:8]) || !bytes.HasPrefix(body, first) {
						t.Errorf("the client read %q (%v); want the first message and none of the compressed one", body, err)
					}
					want := calls.Add(1)
					defer func() {
						if t.Failed() {
							for _, l := range strings.Split(tg.audit.String(), "\n") {
								if strings.Contains(l, "Zipped") {
									t.Logf("AUDIT %s", l)
								}
							}
						}
					}()
					waitFor(t, 5*time.Second, "the call's audit line with response_not_scrubbable", func() bool {
						n := 0
						for _, l := range strings.Split(tg.audit.String(), "\n") {
							if strings.Contains(l, "grpc.Echo/Zipped") && strings.Contains(l, `"code":"response_not_scrubbable"`) {
								n++
							}
						}
						return int64(n) == want
					})
					if err == nil && resp.Trailer.Get("Grpc-Status") == "0" {
						t.Errorf("the call ended as if whole (grpc-status 0), want it cut")
					}
				})
			}
		})
	}
}
