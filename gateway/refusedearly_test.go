package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/policy"
)

// TestRefusedBeforeIdentityNamesTheWorkload is the class of "a request
// refused before the decision is audited without its workload": a path
// or method the gateway will not forward, and a Host naming another
// destination, inside a tunnel over HTTP/1.1 and HTTP/2 and on the proxy
// listener, are audited with the workload the connection's evidence
// verifies (here "local", by source address), as a request the HTTP/1.1
// server cannot read already was. Before, each line said "anonymous".
func TestRefusedBeforeIdentityNamesTheWorkload(t *testing.T) {
	tg := startGateway(t)
	h2 := tg.client(t, true)
	cases := []struct {
		name, code string
		send       func(path string) (int, error)
	}{
		{"h1 tunnel, empty segment", codeBadPath, func(path string) (int, error) {
			tc, br := h1Tunnel(t, tg)
			fmt.Fprintf(tc, "GET /v1/%s//x HTTP/1.1\r\nHost: %s\r\n\r\n", path, apiHost)
			resp, _ := readResp(t, br, http.MethodGet)
			return resp.StatusCode, nil
		}},
		{"h1 tunnel, lower-case method", policy.CodeBadMethod, func(path string) (int, error) {
			tc, br := h1Tunnel(t, tg)
			fmt.Fprintf(tc, "get /v1/%s HTTP/1.1\r\nHost: %s\r\n\r\n", path, apiHost)
			resp, _ := readResp(t, br, http.MethodGet)
			return resp.StatusCode, nil
		}},
		{"h1 tunnel, method override", policy.CodeBadMethod, func(path string) (int, error) {
			tc, br := h1Tunnel(t, tg)
			fmt.Fprintf(tc, "POST /v1/%s HTTP/1.1\r\nHost: %s\r\nX-HTTP-Method-Override: DELETE\r\nContent-Length: 0\r\n\r\n", path, apiHost)
			resp, _ := readResp(t, br, http.MethodPost)
			return resp.StatusCode, nil
		}},
		{"h1 tunnel, Host of another destination", codeHostMismatch, func(path string) (int, error) {
			tc, br := h1Tunnel(t, tg)
			fmt.Fprintf(tc, "GET /v1/%s HTTP/1.1\r\nHost: %s\r\n\r\n", path, tunnelHost)
			resp, _ := readResp(t, br, http.MethodGet)
			return resp.StatusCode, nil
		}},
		{"h2 tunnel, dot segment", codeBadPath, func(path string) (int, error) {
			req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+"/v1/"+path+"/%2e%2e/x", nil)
			return statusOf(h2, req)
		}},
		{"h2 tunnel, lower-case method", policy.CodeBadMethod, func(path string) (int, error) {
			req, _ := http.NewRequest("get", "https://"+apiHost+"/v1/"+path, nil)
			return statusOf(h2, req)
		}},
		{"proxy listener, empty segment", codeBadPath, func(path string) (int, error) {
			conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
			if err != nil {
				return 0, err
			}
			t.Cleanup(func() { conn.Close() })
			br := bufio.NewReader(conn)
			fmt.Fprintf(conn, "GET http://%s/v1/%s//x HTTP/1.1\r\nHost: %s\r\n\r\n", apiHost, path, apiHost)
			resp, _ := readResp(t, br, http.MethodGet)
			return resp.StatusCode, nil
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := fmt.Sprintf("early-%d", i)
			status, err := c.send(path)
			if err != nil {
				t.Fatal(err)
			}
			if status < 400 {
				t.Fatalf("answered %d, want a refusal %s", status, c.code)
			}
			var line map[string]any
			waitFor(t, 10*time.Second, "the audit line of "+c.name, func() bool {
				line = auditNaming(tg, path)
				return line != nil
			})
			if line["code"] != c.code || line["workload"] != "local" {
				t.Errorf("audited with code %v workload %v, want %s local", line["code"], line["workload"], c.code)
			}
		})
	}
}

// statusOf sends req with c and returns the status.
func statusOf(c *http.Client, req *http.Request) (int, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// auditNaming returns the audit line whose path holds part, nil before
// it is written.
func auditNaming(tg *testGateway, part string) map[string]any {
	for line := range strings.SplitSeq(tg.audit.String(), "\n") {
		var ev map[string]any
		if strings.Contains(line, part) && json.Unmarshal([]byte(line), &ev) == nil {
			if p, _ := ev["path"].(string); strings.Contains(p, part) {
				return ev
			}
		}
	}
	return nil
}
