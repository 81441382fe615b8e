package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/credgate/credgate/internal/lograte"
)

// maxLibraryLogText bounds the text of one library log record: what a
// library quotes of a peer is elided, but an unquoted error text can
// still be long.
const maxLibraryLogText = 2048

// libraryLog turns what libraries write through loggers of their own
// into records of the gateway's JSON log: Go's log package (net/http's
// Transport, OpenTelemetry's global error handler), net/http's
// Server.ErrorLog and goproxy's logger. Their text can quote bytes a peer
// sent: net/http's Transport logs "Unsolicited response received on idle
// HTTP channel starting with %q" with up to 4 KiB of what an upstream
// sent after its response, so an upstream echoing the request it got put
// the injected credential in the log (invariant 4), as plain text, not
// JSON. So every quoted string in the text ("…" or `…`, the forms of %q
// and %#q) is elided, keeping its length; an unterminated quote elides
// the rest; the remainder is scrubbed of every credential the gateway
// holds (whole forms) and cut at maxLibraryLogText.
//
// A peer can make a library log at will (an upstream answering twice on
// every connection, a client sending bogus prefaces), so lines of one
// kind (libraryLogKind) are kept to one per libraryLogEvery: the first
// is always written, and the next one written says how many were held
// back ("similar_lines_not_logged"), as the gateway's refusal lines do.
type libraryLog struct {
	log   *slog.Logger
	level slog.Level
	// held is the table of every held credential (nil: none).
	held *scrubbers
	// limit keeps lines to one per kind per libraryLogEvery.
	limit *lograte.Limiter
}

// libraryLogEvery is the interval of library log lines of one kind.
const libraryLogEvery = 10 * time.Second

// maxLibraryLogKind bounds the text that names a library line's kind.
const maxLibraryLogKind = 40

// LibraryLog returns a writer whose every write is one record of the
// gateway's log at level, its text made safe as libraryLog says and its
// lines rate-limited per kind. Point Go's log package at it (log.SetOutput,
// with log.SetFlags(0)) to have net/http's and OpenTelemetry's messages
// in the JSON log without any byte a peer sent: credgate serve does.
func (g *Gateway) LibraryLog(level slog.Level) io.Writer { return g.libraryLog(level) }

func (g *Gateway) libraryLog(level slog.Level) *libraryLog {
	return &libraryLog{log: g.log, level: level, held: &g.scrubbers, limit: g.libLog}
}

// LibraryLogTo returns what LibraryLog does for what libraries log
// before a gateway exists (OpenTelemetry's exporters, built by New, log
// errors in their environment settings): records of logger at level, the
// same elision, cut and rate limit, with no held credential to scrub yet.
func LibraryLogTo(logger *slog.Logger, level slog.Level) io.Writer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &libraryLog{log: logger, level: level, limit: lograte.New(libraryLogEvery, nil)}
}

func (l *libraryLog) Write(p []byte) (int, error) {
	if !l.log.Enabled(context.Background(), l.level) {
		return len(p), nil
	}
	b := elideQuoted(p)
	ok, held := l.limit.Allow(libraryLogKind(b))
	if !ok {
		return len(p), nil
	}
	if l.held != nil {
		for _, s := range l.held.current().appendTo(nil) {
			b, _ = s.Bytes(b)
		}
	}
	if len(b) > maxLibraryLogText {
		n := maxLibraryLogText
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		b = append(b[:n:n], "…[cut]"...)
	}
	l.log.LogAttrs(context.Background(), l.level, strings.TrimSpace(string(b)), slog.Int("similar_lines_not_logged", held))
	return len(p), nil
}

// libraryLogKind names the kind of a library line (its text with quoted
// strings elided) for the rate limit: its words up to the first digit,
// quote, bracket or parenthesis — where what varies between lines of one
// kind (an address, a count, a peer's bytes) begins — at most
// maxLibraryLogKind bytes of them.
func libraryLogKind(b []byte) string {
	n := min(len(b), maxLibraryLogKind)
	if i := bytes.IndexAny(b[:n], "0123456789\"`[("); i >= 0 {
		n = i
	}
	return strings.TrimSpace(string(b[:n]))
}

// elideQuoted returns p with the content of every Go-quoted string ("…"
// or `…`, as %q and %#q write them) replaced by its length:
// `"[N bytes elided]"`. A quote that does not start a valid quoted string
// (unterminated, or a stray '"' in an error text) elides everything after
// it: a library's text is never trusted to say where a peer's bytes end.
func elideQuoted(p []byte) []byte {
	s := string(p)
	out := make([]byte, 0, min(len(s), maxLibraryLogText+64))
	for {
		i := strings.IndexAny(s, "\"`")
		if i < 0 {
			return append(out, s...)
		}
		out = append(out, s[:i]...)
		q, err := strconv.QuotedPrefix(s[i:])
		if err != nil {
			out = append(out, s[i])
			out = append(out, "["...)
			out = strconv.AppendInt(out, int64(len(s)-i-1), 10)
			return append(out, " bytes elided: no closing quote]"...)
		}
		// The length of what was quoted, as the peer sent it.
		n := len(q) - 2
		if u, err := strconv.Unquote(q); err == nil {
			n = len(u)
		}
		out = append(out, s[i])
		out = append(out, "["...)
		out = strconv.AppendInt(out, int64(n), 10)
		out = append(out, " bytes elided]"...)
		out = append(out, s[i])
		s = s[i+len(q):]
	}
}
