package gateway

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// logStrings returns every string in the JSON log lines of s, decoded
// (the JSON handler escapes a '"' of the secret, which would hide its
// raw form from a search of the encoded line), one a line.
func logStrings(t *testing.T, s string) string {
	t.Helper()
	var out strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Bytes())
		}
		for _, v := range m {
			if s, ok := v.(string); ok {
				out.WriteString(s + "\n")
			}
		}
	}
	return out.String()
}

// TestUpstreamErrorTextNeverLogsTheSecret: an upstream answering bytes
// the gateway's HTTP/1.1 client cannot read as a response, in which it
// echoes the request's Authorization (the injected credential) — as the
// status line, the version, the status code, a header line, a length, a
// header block cut off, a 1xx's header line — puts none of the
// credential's forms in the gateway's log (Go's parser quotes the line it
// could not read in its error, which the gateway logged as "upstream
// request failed"), whether or not the rule scrubs responses; the client
// gets 502 upstream_error and sees nothing of it either.
func TestUpstreamErrorTextNeverLogsTheSecret(t *testing.T) {
	tg := startScrubGateway(t)
	answers := map[string]func(auth string) string{
		"status-line":    func(a string) string { return a + "\r\n\r\n" },
		"version":        func(a string) string { return strings.ReplaceAll(a, " ", "") + " 200 OK\r\n\r\n" },
		"status-code":    func(a string) string { return "HTTP/1.1 " + strings.ReplaceAll(a, " ", "") + " OK\r\n\r\n" },
		"header-line":    func(a string) string { return "HTTP/1.1 200 OK\r\n" + strings.ReplaceAll(a, ":", "") + "\r\n\r\n" },
		"header-name":    func(a string) string { return "HTTP/1.1 200 OK\r\n" + a + ": x\r\n\r\n" },
		"content-length": func(a string) string { return "HTTP/1.1 200 OK\r\nContent-Length: " + a + "\r\n\r\n" },
		"two-lengths": func(a string) string {
			return "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: " + a + "\r\n\r\nx"
		},
		"encoding": func(a string) string { return "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + a + "\r\n\r\n" },
		"informational": func(a string) string {
			return "HTTP/1.1 103 Early Hints\r\n" + strings.ReplaceAll(a, ":", "") + "\r\n\r\n"
		},
	}
	for name, answer := range answers {
		for _, p := range []string{"/s/", "/raw/"} {
			tg.origin.route(p+"malformed-"+name, func(w http.ResponseWriter, r *http.Request) {
				c, rw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = rw.WriteString(answer(r.Header.Get("Authorization")))
				_ = rw.Flush()
			})
		}
	}
	c := tg.client(t, false)
	for name := range answers {
		for _, p := range []string{"/s/", "/raw/"} {
			t.Run(name+p, func(t *testing.T) {
				before := len(tg.logs.String())
				status, all := getScrubbed(t, c, p+"malformed-"+name)
				if status != http.StatusBadGateway {
					t.Errorf("status %d, want 502", status)
				}
				if l := leaks(all); len(l) > 0 {
					t.Errorf("the client saw the secret as %v", l)
				}
				logged := logStrings(t, tg.logs.String()[before:])
				if !strings.Contains(logged, "upstream request failed") {
					t.Fatalf("no \"upstream request failed\" line logged:\n%s", logged)
				}
				if l := leaks(logged); len(l) > 0 {
					t.Errorf("the log holds the secret as %v:\n%s", l, logged)
				}
				// Go's parser quotes the line (%q): the secret's '"' is
				// escaped there, its other characters are not.
				for _, part := range strings.Split(scrubSecret, `"`) {
					if len(part) >= 4 && strings.Contains(logged, part) {
						t.Errorf("the log holds %q of the secret:\n%s", part, logged)
					}
				}
			})
		}
	}
}
