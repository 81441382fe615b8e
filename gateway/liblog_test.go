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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/lograte"
	"github.com/credgate/credgate/internal/poll"
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
		tg.origin.route(p+"unsolicited", unsolicitedEcho)
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
			// A limit of its own for each case: two cases log lines of
			// one kind (TestLibraryLogFloodLimited tests the limit).
			tg.gw.libLog = lograte.New(libraryLogEvery, nil)
			log.SetOutput(tg.gw.LibraryLog(slog.LevelWarn))
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

// unsolicitedEcho is an origin handler that answers, then sends a response
// the gateway did not ask for, echoing the request's Authorization:
// net/http's Transport logs "Unsolicited response received on idle HTTP
// channel" quoting it.
func unsolicitedEcho(w http.ResponseWriter, r *http.Request) {
	// The whole body first: a response before it would make the
	// Transport close the connection rather than keep it idle.
	_, _ = io.Copy(io.Discard, r.Body)
	c, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	// A whole response, then one the gateway did not ask for, echoing the
	// request's Authorization, in one write: the Transport finds it
	// buffered when the connection goes idle.
	_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" +
		"HTTP/1.1 200 OK\r\nX-Echo: " + r.Header.Get("Authorization") + "\r\n\r\n")
	_ = rw.Flush()
	// Held open until the gateway closes it (it does once it has
	// logged): an EOF first would not be logged.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Read(make([]byte, 1))
}

// countWrites counts the writes it passes on to w.
type countWrites struct {
	w io.Writer
	n atomic.Int64
}

func (c *countWrites) Write(p []byte) (int, error) {
	defer c.n.Add(1)
	return c.w.Write(p)
}

// TestLibraryLogFloodLimited: a hostile upstream answering twice on every
// connection makes net/http's Transport log "Unsolicited response" once
// per request; through Gateway.LibraryLog those lines are kept to the
// first one per libraryLogEvery, and the next one written says how many
// were held back. Before, 20 requests wrote 20 lines.
func TestLibraryLogFloodLimited(t *testing.T) {
	tg := startScrubGateway(t)
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	tg.gw.libLog = lograte.New(libraryLogEvery, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	cw := &countWrites{w: tg.gw.LibraryLog(slog.LevelWarn)}
	out, flags := log.Writer(), log.Flags()
	log.SetOutput(cw)
	log.SetFlags(0)
	t.Cleanup(func() { log.SetOutput(out); log.SetFlags(flags) })
	tg.origin.route("/s/unsolicited", unsolicitedEcho)
	c := tg.client(t, false)
	statuses := map[int]int{}
	send := func() {
		// A body over h1client's 16 KiB goes through net/http's Transport.
		req, _ := http.NewRequest(http.MethodPost, "https://"+apiHost+"/s/unsolicited", strings.NewReader(strings.Repeat("x", 20<<10)))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	const flood = 20
	before := len(tg.logs.String())
	// The Transport logs one line per request whose connection went idle
	// with the second answer buffered; when the next request takes the
	// connection first, that answer is read as its response and nothing
	// is logged (more often on a loaded machine). So send until 20 lines
	// were logged, 100 requests at most.
	for sent := 0; cw.n.Load() < flood && sent < 5*flood; sent++ {
		send()
	}
	if !poll.Within(20*time.Second, func() bool { return cw.n.Load() >= flood }) {
		t.Fatalf("%d library lines after %v; the gateway's log:\n%s", cw.n.Load(), statuses, tg.logs.String()[before:])
	}
	lines := func() []string {
		var got []string
		for _, l := range strings.Split(tg.logs.String()[before:], "\n") {
			if strings.Contains(l, "Unsolicited response received on idle HTTP channel") {
				got = append(got, l)
			}
		}
		return got
	}
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], `"similar_lines_not_logged":0`) {
		t.Fatalf("%d requests each answered twice: %d log lines, want the first only:\n%s", flood, len(got), strings.Join(got, "\n"))
	}
	mu.Lock()
	now = now.Add(libraryLogEvery)
	mu.Unlock()
	send()
	waitFor(t, 20*time.Second, "the line after the interval", func() bool { return len(lines()) == 2 })
	// It counts every line held back: at least the 19 after the first,
	// at most every write but the two logged.
	got := lines()
	var held int64 = -1
	if i := strings.Index(got[1], `"similar_lines_not_logged":`); i >= 0 {
		fmt.Sscanf(got[1][i+len(`"similar_lines_not_logged":`):], "%d", &held)
	}
	if held < flood-1 || held > cw.n.Load()-2 {
		t.Errorf("the line after the interval counts %d held back, want %d to %d:\n%s", held, flood-1, cw.n.Load()-2, got[1])
	}
	if l := holdsSecret(logStrings(t, tg.logs.String())); len(l) > 0 {
		t.Errorf("the log holds the secret as %v", l)
	}
}

// TestLibraryLogKinds: lines of one kind whose variable parts differ (the
// peer's address, its bytes, a count) share one limit, and lines of
// different kinds do not: of 50 lines of each of four kinds, the first of
// each is written; after the interval, the next of each says 49 were held
// back.
func TestLibraryLogKinds(t *testing.T) {
	var buf lockedBuffer
	now := time.Unix(1000, 0)
	l := &libraryLog{log: slog.New(slog.NewJSONHandler(&buf, nil)), level: slog.LevelWarn,
		limit: lograte.New(libraryLogEvery, func() time.Time { return now })}
	kinds := []func(i int) string{
		func(i int) string {
			return fmt.Sprintf("Unsolicited response received on idle HTTP channel starting with %q; err=<nil>", strings.Repeat("y", i))
		},
		func(i int) string {
			return fmt.Sprintf("http: TLS handshake error from 127.0.0.%d:%d: EOF", i, 40000+i)
		},
		func(i int) string {
			return fmt.Sprintf("http2: server: error reading preface from client [::%x]:%d: bogus greeting %q", i, i, "x")
		},
		func(i int) string { return fmt.Sprintf("%d bytes of junk from a peer", i) },
	}
	write := func(i int) {
		for _, k := range kinds {
			_, _ = l.Write([]byte(k(i)))
		}
	}
	for i := range 50 {
		write(i)
	}
	if n := strings.Count(buf.String(), "\n"); n != len(kinds) {
		t.Fatalf("%d lines, want %d (one per kind):\n%s", n, len(kinds), buf.String())
	}
	now = now.Add(libraryLogEvery)
	before := len(buf.String())
	write(50)
	if n := strings.Count(buf.String()[before:], `"similar_lines_not_logged":49`); n != len(kinds) {
		t.Errorf("%d of %d kinds count the 49 held back:\n%s", n, len(kinds), buf.String()[before:])
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
