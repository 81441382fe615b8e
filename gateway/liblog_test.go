package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// secretPieces returns the parts of scrubSecret that a quoting library
// leaves whole: Go's %q escapes its '"', so a search for the whole
// secret misses a quoted copy (each part of at least 4 bytes).
func secretPieces() []string {
	var out []string
	for _, p := range strings.Split(scrubSecret, `"`) {
		if len(p) >= 4 {
			out = append(out, p)
		}
	}
	return out
}

// holdsSecret returns the forms and pieces of scrubSecret found in s.
func holdsSecret(s string) []string {
	found := leaks(s)
	for _, p := range secretPieces() {
		if strings.Contains(s, p) {
			found = append(found, fmt.Sprintf("piece %q", p))
		}
	}
	return found
}

// TestLibraryLogNeverHoldsPeerBytes: what libraries log through loggers
// of their own — Go's log package (pointed at Gateway.LibraryLog, as
// credgate serve does), net/http's Server.ErrorLog and goproxy's logger —
// reaches the gateway's JSON log with no byte of the credential, whoever
// sent it: an upstream echoing the injected credential after its
// response (net/http's Transport logs up to 4 KiB of it, %q-quoted, as
// an "Unsolicited response", whatever the rule's scrub setting), a client
// sending it as its HTTP/2 preface (the server quotes the bogus
// greeting). Before, the first was plain text on stderr with the
// credential's pieces in it, the second a debug record quoting them.
func TestLibraryLogNeverHoldsPeerBytes(t *testing.T) {
	tg := startScrubGateway(t)
	out, flags := log.Writer(), log.Flags()
	log.SetOutput(tg.gw.LibraryLog(slog.LevelWarn))
	log.SetFlags(0)
	t.Cleanup(func() { log.SetOutput(out); log.SetFlags(flags) })

	for _, p := range []string{"/s/", "/raw/"} {
		tg.origin.route(p+"unsolicited", func(w http.ResponseWriter, r *http.Request) {
			// The whole body first: a response before it would make the
			// Transport close the connection rather than keep it idle.
			_, _ = io.Copy(io.Discard, r.Body)
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			// A whole response, then one the gateway did not ask for,
			// echoing the request's Authorization, in one write: the
			// Transport finds it buffered when the connection goes idle.
			_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" +
				"HTTP/1.1 200 OK\r\nX-Echo: " + r.Header.Get("Authorization") + "\r\n\r\n")
			_ = rw.Flush()
			// Held open until the gateway closes it (it does once it
			// has logged): an EOF first would not be logged.
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _ = c.Read(make([]byte, 1))
		})
	}
	c := tg.client(t, false)
	cases := []struct {
		name string
		send func(t *testing.T)
		// want is what the log line says (the library's words).
		want string
	}{}
	for _, p := range []string{"/s/", "/raw/"} {
		cases = append(cases, struct {
			name string
			send func(t *testing.T)
			want string
		}{"unsolicited-response" + p, func(t *testing.T) {
			// A body over h1client's 16 KiB goes through net/http's
			// Transport.
			req, _ := http.NewRequest(http.MethodPost, "https://"+apiHost+p+"unsolicited", strings.NewReader(strings.Repeat("x", 20<<10)))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}, "Unsolicited response received on idle HTTP channel"})
	}
	cases = append(cases, struct {
		name string
		send func(t *testing.T)
		want string
	}{"http2-bogus-preface", func(t *testing.T) {
		conn, err := net.Dial("tcp", tg.gw.ProxyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		tc := tls.Client(conn, &tls.Config{ServerName: apiHost, RootCAs: tg.caPool, NextProtos: []string{"h2"}})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		_, _ = tc.Write([]byte("Bearer " + scrubSecret + " and more than a preface\r\n"))
		_, _ = tc.Read(make([]byte, 64)) // the server's GOAWAY or EOF
	}, "bogus greeting"})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tg.logs.String())
			tc.send(t)
			var logged string
			waitFor(t, 10*time.Second, "the library's log line", func() bool {
				logged = logStrings(t, tg.logs.String()[before:])
				return strings.Contains(logged, tc.want)
			})
			if l := holdsSecret(logged); len(l) > 0 {
				t.Errorf("the log holds the secret as %v:\n%s", l, logged)
			}
			if !strings.Contains(logged, "bytes elided") {
				t.Errorf("the quoted bytes are not marked elided:\n%s", logged)
			}
		})
	}
}

// TestElideQuoted: every Go-quoted string in a library's text (%q, %#q,
// with any escape) is replaced by its length, and a quote that does not
// close hides everything after it, so no byte of a quoted value is left
// whatever the quoting; text outside quotes is kept.
func TestElideQuoted(t *testing.T) {
	secret := scrubSecret + "\x00\r\n\x1b[31m\u2028\xff"
	// Unquoted, a '"' of the secret would close the quote: the held
	// credentials' table scrubs a raw copy (TestLibraryLogNeverHoldsPeerBytes).
	bare := strings.ReplaceAll(scrubSecret, `"`, "'")
	for _, tc := range []struct {
		name, in, want string
	}{
		{"%q", fmt.Sprintf("starting with %q; err=<nil>", secret), fmt.Sprintf(`starting with "[%d bytes elided]"; err=<nil>`, len(secret))},
		{"%#q", fmt.Sprintf("got %#q", scrubSecret), fmt.Sprintf("got `[%d bytes elided]`", len(scrubSecret))},
		{"two", fmt.Sprintf("%q = %q", "authorization", secret), fmt.Sprintf(`"[13 bytes elided]" = "[%d bytes elided]"`, len(secret))},
		{"unterminated", `header "Bearer ` + bare, fmt.Sprintf(`header "[%d bytes elided: no closing quote]`, len("Bearer "+bare))},
		{"stray", `error: bad "value` + " " + bare, fmt.Sprintf(`error: bad "[%d bytes elided: no closing quote]`, len("value "+bare))},
		{"backquote-unterminated", "x `" + bare, fmt.Sprintf("x `[%d bytes elided: no closing quote]", len(bare))},
		{"none", "http: TLS handshake error from 127.0.0.1:1: EOF", "http: TLS handshake error from 127.0.0.1:1: EOF"},
		{"empty", `got ""`, `got "[0 bytes elided]"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(elideQuoted([]byte(tc.in)))
			if got != tc.want {
				t.Errorf("elideQuoted(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
			if l := holdsSecret(got); len(l) > 0 {
				t.Errorf("%q holds the secret as %v", got, l)
			}
		})
	}
}
