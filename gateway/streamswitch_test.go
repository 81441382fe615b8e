package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStreamsObeyKillSwitch: an intercepted request whose body or
// response streams on after a kill switch came to cover its rule,
// workload or credential passes nothing more: a streamed response (server-sent events; a
// long download, a gRPC or HTTP/2 stream) and a streamed request body (an upload,
// the client side of a bidirectional stream) each break off at their next
// bytes, over HTTP/1.1 and HTTP/2, with the audit line's code disabled. A
// switch that covers something else lets them go on. Without this, a
// workload kept a stream open under a rule the operator had just
// disabled, for as long as the upstream and it wished (invariant 12
// covered only tunnels and WebSockets).
func TestStreamsObeyKillSwitch(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	t.Setenv("CREDGATE_GATEWAY_TEST_ADMIN", token)
	tg := startSwitchGateway(t, "admin:\n  token_env: CREDGATE_GATEWAY_TEST_ADMIN\n")
	next := make(chan string)
	tg.origin.route("/v1/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		for {
			select {
			case ev := <-next:
				fmt.Fprintf(w, "data: %s\n\n", ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	got := make(chan string, 16)
	ended := make(chan struct{}, 16)
	tg.origin.route("/v1/upload", func(w http.ResponseWriter, r *http.Request) {
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				got <- line
			}
			if err != nil {
				break
			}
		}
		fmt.Fprint(w, "stored")
		ended <- struct{}{}
	})
	for _, tc := range []struct {
		dir        string
		h2         bool
		switchKind string
		name       string
		cut        bool
	}{
		{"response", false, "rule", "api", true},
		{"response", true, "workload", "local", true},
		{"response", false, "credential", "token", true},
		{"response", true, "rule", "tunnel", false},
		{"request", false, "rule", "api", true},
		{"request", true, "credential", "token", true},
		{"request", false, "credential", "missing", false},
	} {
		proto := "HTTP/1.1"
		if tc.h2 {
			proto = "HTTP/2"
		}
		t.Run(tc.dir+"/"+proto+"/"+tc.switchKind+":"+tc.name, func(t *testing.T) {
			c := tg.client(t, tc.h2)
			sw := fmt.Sprintf(`{"kind":%q,"name":%q,"reason":"test"}`, tc.switchKind, tc.name)
			disable := func() {
				if st, _, body := adminCall(t, tg, "/admin/v1/disable", token, sw); st != 200 {
					t.Fatalf("disable: %d %v", st, body)
				}
				t.Cleanup(func() {
					if st, _, body := adminCall(t, tg, "/admin/v1/enable", token, sw); st != 200 {
						t.Errorf("enable: %d %v", st, body)
					}
				})
			}
			before := strings.Count(tg.audit.String(), `"code":"disabled"`)
			if tc.dir == "response" {
				resp, err := c.Get("https://" + apiHost + "/v1/events")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				next <- "one"
				if line, err := br.ReadString('\n'); err != nil || line != "data: one\n" {
					t.Fatalf("first event %q, %v", line, err)
				}
				_, _ = br.ReadString('\n')
				disable()
				select {
				case next <- "two after the switch":
				case <-time.After(5 * time.Second):
					// The gateway ended the upstream request already.
				}
				if !tc.cut {
					if line, err := br.ReadString('\n'); err != nil || line != "data: two after the switch\n" {
						t.Fatalf("a switch that does not cover the stream cut it: %q, %v", line, err)
					}
					return
				}
				rest, err := io.ReadAll(br)
				if strings.Contains(string(rest), "after the switch") || err == nil {
					t.Fatalf("after the switch the client read %q, %v; want the stream broken off before the next event", rest, err)
				}
			} else {
				pr, pw := io.Pipe()
				req, _ := http.NewRequest(http.MethodPost, "https://"+apiHost+"/v1/upload", pr)
				done := make(chan error, 1)
				var resp *http.Response
				go func() {
					var err error
					resp, err = c.Do(req)
					done <- err
				}()
				fmt.Fprint(pw, "part one\n")
				if line := <-got; line != "part one\n" {
					t.Fatalf("the upstream got %q first", line)
				}
				disable()
				fmt.Fprint(pw, "part two after the switch\n")
				pw.Close()
				err := <-done
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if tc.cut && string(body) == "stored" {
						t.Errorf("the upload completed after the switch: %d %q", resp.StatusCode, body)
					}
				}
				select {
				case <-ended:
				case <-time.After(10 * time.Second):
					t.Fatal("the upstream's handler did not end")
				}
				if tc.cut {
					for len(got) > 0 {
						if line := <-got; strings.Contains(line, "after the switch") {
							t.Fatalf("the upstream received %q after the switch", line)
						}
					}
				} else if line := <-got; line != "part two after the switch\n" {
					t.Fatalf("a switch that does not cover the upload cut it: the upstream got %q", line)
				}
			}
			if tc.cut {
				waitFor(t, 5*time.Second, "the audit line with code disabled", func() bool {
					return strings.Count(tg.audit.String(), `"code":"disabled"`) > before
				})
			}
		})
	}
}
