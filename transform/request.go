package transform

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/credgate/credgate/secret"
)

// ErrPlaceholderMisuse marks a request carrying a placeholder that is not
// bound to its destination (a tripwire). The gateway answers 403
// placeholder_misuse and never forwards the request.
var ErrPlaceholderMisuse = errors.New("placeholder not bound to this destination")

// ErrPlaceholderMissing is returned when Require is set and the request
// carries none of its bound placeholders.
var ErrPlaceholderMissing = errors.New("request carries no placeholder")

// ErrUnsafeValue is returned when a secret cannot be put where its
// placeholder is (a control character in a header value).
var ErrUnsafeValue = errors.New("secret value cannot be placed in this position")

// DefaultMaxBuffered is how large a request body with a known length may be
// for the Substituter to transform it whole and send an exact
// Content-Length, unless Options.MaxBuffered says otherwise.
const DefaultMaxBuffered = 64 << 10

// Binding is a placeholder the decision allows for this destination and the
// secret that replaces it.
type Binding struct {
	// Name names the binding in reports and errors (the credential and
	// field, say "stripe-live.token"); never the value.
	Name string
	// Placeholder is what the application sends instead of the secret:
	// 8 to 256 bytes of letters, digits, '-', '.', '_' and '~' (characters
	// no encoding rewrites, so it is found literally in every position).
	Placeholder string
	// Value replaces it.
	Value secret.Value
	// Places are where the placeholder may be replaced (a rule's
	// substitute_in); nil means in every position. Found anywhere else,
	// the bound placeholder is treated as a tripwire (a MisuseError with
	// Misplaced set): the request is refused and no byte of the value is
	// written.
	Places []Place
}

// Tripwire is a placeholder bound to another destination: seen in this
// request, it stops it.
type Tripwire struct {
	// Name names it in errors and reports.
	Name string
	// Placeholder is the string to detect.
	Placeholder string
}

// Options configure a Substituter. The zero value is usable.
type Options struct {
	// Require refuses a request in which no bound placeholder was seen
	// (a rule's require_placeholder).
	Require bool
	// MaxBuffered bounds the request bodies transformed whole so that
	// Content-Length stays exact; 0 means DefaultMaxBuffered, negative
	// means always stream. Longer bodies, and those of unknown length,
	// stream and are sent chunked when a substitution can change their
	// length.
	MaxBuffered int64
}

// Where names a position in a request.
type Where string

// The positions a placeholder is looked for in.
const (
	InHeader    Where = "header"
	InBasicAuth Where = "basic"
	InPath      Where = "path"
	InQuery     Where = "query"
	InForm      Where = "form"
	InJSON      Where = "json"
	InWebSocket Where = "websocket"
	// InTrailer is a request trailer: never forwarded, only searched for
	// tripwires (CheckTrailer).
	InTrailer Where = "trailer"
)

// Position is where a binding was substituted, for the audit line.
type Position struct {
	// Where is the part of the request.
	Where Where
	// Header is the header name for InHeader and InBasicAuth.
	Header string `json:",omitempty"`
	// Binding is the Binding's Name.
	Binding string
	// Count is how many times.
	Count int
}

// MisuseError is the tripwire's error; it wraps ErrPlaceholderMisuse.
type MisuseError struct {
	// Tripwire is the Name of the Tripwire seen, or of the Binding found
	// outside its Places.
	Tripwire string
	// Where and Header say where.
	Where  Where
	Header string
	// Misplaced is set when the placeholder is bound to this request but
	// was found outside the binding's Places.
	Misplaced bool
	// Ambiguous, when Misplaced, says why a named place (query:NAME,
	// form:NAME) could not be established although the placeholder is in
	// a value: servers read that value as different fields' (a parser
	// differential), and what to send instead. Empty otherwise.
	Ambiguous string
}

func (e *MisuseError) Error() string {
	at := string(e.Where)
	if e.Header != "" {
		at += " " + e.Header
	}
	if e.Misplaced && e.Ambiguous != "" {
		return fmt.Sprintf("transform: placeholder %q found in %s, whose field is ambiguous (%s): %v", e.Tripwire, at, e.Ambiguous, ErrPlaceholderMisuse)
	}
	if e.Misplaced {
		return fmt.Sprintf("transform: placeholder %q found in %s, where it may not be substituted: %v", e.Tripwire, at, ErrPlaceholderMisuse)
	}
	return fmt.Sprintf("transform: placeholder %q found in %s: %v", e.Tripwire, at, ErrPlaceholderMisuse)
}

// Unwrap returns ErrPlaceholderMisuse.
func (e *MisuseError) Unwrap() error { return ErrPlaceholderMisuse }

// Report records what a Substituter did to one request. Body positions are
// added while the body streams, so read it (Positions, Seen) after the
// body was sent; it is safe for concurrent use.
type Report struct {
	mu   sync.Mutex
	pos  []Position
	seen bool
}

// Positions returns the substitutions so far, in the order first seen.
func (r *Report) Positions() []Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Position(nil), r.pos...)
}

// Seen reports whether any bound placeholder was seen (require_placeholder).
func (r *Report) Seen() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen
}

func (r *Report) add(where Where, header, binding string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = true
	for i := range r.pos {
		if p := &r.pos[i]; p.Where == where && p.Header == header && p.Binding == binding {
			p.Count++
			return
		}
	}
	r.pos = append(r.pos, Position{Where: where, Header: header, Binding: binding, Count: 1})
}

// RequestTransform rewrites an outbound request after the decision and
// before the upstream round trip.
type RequestTransform interface {
	TransformRequest(r *http.Request) (*Report, error)
}

var _ RequestTransform = (*Substituter)(nil)

// encoding is how a secret is spelled in one position.
type encoding int

const (
	encRaw encoding = iota
	encPath
	encQuery
	encJSON
)

// Substituter replaces bound placeholders with their secrets and stops on
// tripwires. Build one per decision; it is immutable and safe for
// concurrent use.
type Substituter struct {
	bindings []Binding
	trips    []Tripwire
	// m holds one matcher per encoding of the values.
	m           [4]*matcher
	require     bool
	maxBuffered int64
	sameLength  [4]bool
}

// NewSubstituter checks the placeholders and builds a Substituter.
func NewSubstituter(bindings []Binding, tripwires []Tripwire, opts Options) (*Substituter, error) {
	s := &Substituter{bindings: bindings, trips: tripwires, require: opts.Require, maxBuffered: opts.MaxBuffered}
	if s.maxBuffered == 0 {
		s.maxBuffered = DefaultMaxBuffered
	}
	seen := map[string]string{}
	check := func(name, ph string) error {
		if err := checkPlaceholder(ph); err != nil {
			return fmt.Errorf("transform: placeholder of %q: %w", name, err)
		}
		if other, dup := seen[ph]; dup {
			return fmt.Errorf("transform: %q and %q have the same placeholder", other, name)
		}
		seen[ph] = name
		return nil
	}
	for _, b := range bindings {
		if err := check(b.Name, b.Placeholder); err != nil {
			return nil, err
		}
		if b.Value.IsZero() {
			// Substituting nothing would send an unauthenticated call.
			return nil, fmt.Errorf("transform: binding %q has no value", b.Name)
		}
	}
	var trips []needle
	for i, t := range tripwires {
		if err := check(t.Name, t.Placeholder); err != nil {
			return nil, err
		}
		trips = append(trips, needle{find: []byte(t.Placeholder), act: trip, id: i})
	}
	for enc := range s.m {
		ns := append([]needle(nil), trips...)
		same, asRaw := true, true
		for i, b := range bindings {
			v := encode(encoding(enc), b.Value.Reveal())
			same = same && len(v) == len(b.Placeholder)
			asRaw = asRaw && v == b.Value.Reveal()
			ns = append(ns, needle{find: []byte(b.Placeholder), repl: []byte(v), act: replace, id: i})
		}
		s.sameLength[enc] = same
		if enc > 0 && asRaw {
			// Most API keys need no escaping: share the raw matcher.
			s.m[enc] = s.m[encRaw]
			continue
		}
		s.m[enc] = newMatcher(ns)
	}
	return s, nil
}

func checkPlaceholder(ph string) error {
	if len(ph) < 8 || len(ph) > 256 {
		return fmt.Errorf("length %d is not between 8 and 256", len(ph))
	}
	for i := 0; i < len(ph); i++ {
		c := ph[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return fmt.Errorf("byte %d is not a letter, digit, '-', '.', '_' or '~'", i)
		}
	}
	return nil
}

func encode(enc encoding, v string) string {
	switch enc {
	case encPath:
		return url.PathEscape(v)
	case encQuery:
		return url.QueryEscape(v)
	case encJSON:
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false)
		_ = e.Encode(v) // a string always encodes
		s := strings.TrimSuffix(b.String(), "\n")
		return s[1 : len(s)-1]
	}
	return v
}

// onHit returns the hit function of a position: a tripwire becomes a
// MisuseError, a binding is recorded.
func (s *Substituter) onHit(rep *Report, where Where, header string) hit {
	return s.onHitField(rep, where, header, nil)
}

// onHitField is onHit for a position with fields (query parameters, form
// fields, JSON members): field names the field of the current match, for
// bindings whose Places name fields; nil when it cannot be known. A
// binding found outside its Places becomes a MisuseError too.
func (s *Substituter) onHitField(rep *Report, where Where, header string, field fieldFunc) hit {
	return func(n *needle) error {
		if n.act == trip {
			return &MisuseError{Tripwire: s.trips[n.id].Name, Where: where, Header: header}
		}
		b := &s.bindings[n.id]
		if ok, ambiguous := b.allows(where, header, field); !ok {
			return &MisuseError{Tripwire: b.Name, Where: where, Header: header, Misplaced: true, Ambiguous: ambiguous}
		}
		rep.add(where, header, b.Name)
		return nil
	}
}

// TransformRequest substitutes r in place: every header value (and the
// user:password inside an Authorization Basic header), the path, the query
// and, for application/x-www-form-urlencoded and JSON bodies, the body.
// Everything that can fail in the headers, path, query and a body of at
// most Options.MaxBuffered bytes fails here, before anything is sent, and
// r is then left as it was. A longer body streams: a tripwire there, or
// a missing required placeholder, fails the body's Read, which aborts the
// round trip (the upstream gets an incomplete request); the error is a
// MisuseError or ErrPlaceholderMissing for errors.Is/As on the round
// trip's error. r.Host and the URL's host are never touched.
func (s *Substituter) TransformRequest(r *http.Request) (*Report, error) {
	rep := &Report{}
	header := r.Header.Clone()
	for name, vs := range header {
		for i, v := range vs {
			nv, err := s.headerValue(rep, name, v)
			if err != nil {
				return nil, err
			}
			vs[i] = nv
		}
	}
	u := *r.URL
	if u.Path != "" || u.RawPath != "" {
		esc, changed, err := s.escaped(rep, InPath, u.EscapedPath(), encPath)
		if err != nil {
			return nil, err
		}
		if changed {
			for seg := range strings.SplitSeq(esc, "/") {
				if seg == "." || seg == ".." {
					// A value that is a whole dot-segment would move the
					// request to another path than the one decided.
					return nil, fmt.Errorf("transform: path: %w", ErrUnsafeValue)
				}
			}
			p, err := url.PathUnescape(esc)
			if err != nil {
				return nil, fmt.Errorf("transform: substituted path: %w", err)
			}
			u.Path, u.RawPath = p, esc
		}
	}
	if u.RawQuery != "" {
		q, changed, err := s.escaped(rep, InQuery, u.RawQuery, encQuery)
		if err != nil {
			return nil, err
		}
		if changed {
			u.RawQuery = q
		}
	}
	body, length, getBody, err := s.body(rep, r, header)
	if err != nil {
		return nil, err
	}
	if s.require && !rep.Seen() && body == nil {
		return nil, fmt.Errorf("transform: %w", ErrPlaceholderMissing)
	}
	r.Header, r.URL = header, &u
	if body != nil {
		r.Body, r.ContentLength, r.GetBody = body, length, getBody
		if length < 0 {
			header.Del("Content-Length")
		} else {
			header.Set("Content-Length", strconv.FormatInt(length, 10))
		}
	}
	return rep, nil
}

// CheckTrailer looks for tripwires in h, a request's trailers, which are
// known only once its body was read. The gateway forwards no request
// trailers, so nothing is substituted in them and bound placeholders are
// passed over; a placeholder bound elsewhere is misuse all the same. It
// returns a *MisuseError (Where InTrailer) for the first one found, taking
// the fields in sorted order and looking inside Basic credentials as in
// headers, or nil. No secret value is built.
func (s *Substituter) CheckTrailer(h http.Header) error {
	if s.m[encRaw].empty() || len(h) == 0 {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			id := s.tripwireIn([]byte(v))
			if scheme, payload, ok := strings.Cut(v, " "); id < 0 && ok && strings.EqualFold(scheme, "Basic") {
				if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload)); err == nil {
					id = s.tripwireIn(dec)
				}
			}
			if id >= 0 {
				return &MisuseError{Tripwire: s.trips[id].Name, Where: InTrailer, Header: name}
			}
		}
	}
	return nil
}

// tripwireIn returns the index in s.trips of the first tripwire in b, or
// -1. It reads b as substitution would, left to right without overlaps,
// passing over bound placeholders without replacing them.
func (s *Substituter) tripwireIn(b []byte) int {
	m := s.m[encRaw]
	for off := 0; off < len(b); {
		at, w := m.first(b[off:])
		if at < 0 {
			return -1
		}
		n := &m.needles[w]
		if n.act == trip {
			return n.id
		}
		off += at + len(n.find)
	}
	return -1
}

// headerValue substitutes one header value, looking inside Basic
// credentials too.
func (s *Substituter) headerValue(rep *Report, name, v string) (string, error) {
	if scheme, payload, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Basic") && name == "Authorization" {
		if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload)); err == nil {
			out, err := s.m[encRaw].apply(dec, s.onHit(rep, InBasicAuth, name))
			if err != nil {
				return "", err
			}
			if !bytes.Equal(out, dec) {
				if err := checkHeader(out); err != nil {
					return "", fmt.Errorf("transform: header %s: %w", name, err)
				}
				return scheme + " " + base64.StdEncoding.EncodeToString(out), nil
			}
		}
	}
	onHit := s.onHit(rep, InHeader, name)
	out, err := s.m[encRaw].apply([]byte(v), func(n *needle) error {
		if n.act != trip && !sameOnTheWire(n.repl) {
			return fmt.Errorf("transform: header %s: the secret begins or ends with a space or tab, or holds a byte that is not ASCII, which a server would read as another value than the secret: %w", name, ErrUnsafeValue)
		}
		return onHit(n)
	})
	if err != nil {
		return "", err
	}
	if err := checkHeader(out); err != nil {
		return "", fmt.Errorf("transform: header %s: %w", name, err)
	}
	return string(out), nil
}

// sameOnTheWire reports whether a secret put in a header value reaches
// the upstream as these bytes: not when it begins or ends with a space or
// tab, which HTTP drops around a field value (and the secret may end the
// value), nor when it holds a byte that is not ASCII, which servers read
// as ISO-8859-1. Else the upstream would receive, and could echo, a
// value the response scrubber, searching for the secret's bytes, does
// not find (the injectors refuse the same for the fields they put in
// headers). Basic credentials carry any bytes intact (base64).
func sameOnTheWire(secret []byte) bool {
	if len(secret) > 0 && (secret[0] == ' ' || secret[0] == '\t' || secret[len(secret)-1] == ' ' || secret[len(secret)-1] == '\t') {
		return false
	}
	for _, c := range secret {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// checkHeader refuses bytes net/http would refuse or that would split a
// header: control characters other than tab.
func checkHeader(b []byte) error {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return ErrUnsafeValue
		}
	}
	return nil
}

// escaped substitutes a percent-encoded string (a path or a query): the
// placeholder is found also when some of its bytes are %XX-escaped, and
// only the bytes of a match change; the value is escaped for the position
// (url.PathEscape keeps it within its segment, url.QueryEscape within its
// parameter).
func (s *Substituter) escaped(rep *Report, where Where, raw string, enc encoding) (string, bool, error) {
	m := s.m[enc]
	if m.empty() {
		return raw, false, nil
	}
	// cur is the raw offset of the current match: a query parameter's
	// name is read from raw there.
	var cur int
	var field fieldFunc
	if where == InQuery {
		field = func() (string, bool, string) { return paramAt([]byte(raw), cur) }
	}
	onHit := s.onHitField(rep, where, "", field)
	if !strings.Contains(raw, "%") {
		out, err := m.applyAt([]byte(raw), onHit, &cur)
		if err != nil {
			return "", false, err
		}
		return string(out), string(out) != raw, nil
	}
	// Decode, remembering where each decoded byte starts in raw.
	dec := make([]byte, 0, len(raw))
	starts := make([]int, 0, len(raw)+1)
	for i := 0; i < len(raw); {
		starts = append(starts, i)
		if raw[i] == '%' && i+2 < len(raw) && isHex(raw[i+1]) && isHex(raw[i+2]) {
			dec = append(dec, unhex(raw[i+1])<<4|unhex(raw[i+2]))
			i += 3
			continue
		}
		dec = append(dec, raw[i])
		i++
	}
	starts = append(starts, len(raw))
	var out strings.Builder
	last, off := 0, 0 // raw emitted up to last; dec searched from off
	for {
		at, w := m.first(dec[off:])
		if at < 0 {
			break
		}
		n := &m.needles[w]
		cur = starts[at+off]
		if err := onHit(n); err != nil {
			return "", false, err
		}
		at += off
		out.WriteString(raw[last:starts[at]])
		out.Write(n.repl)
		off = at + len(n.find)
		last = starts[off]
	}
	if last == 0 {
		return raw, false, nil
	}
	out.WriteString(raw[last:])
	return out.String(), true, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// bodyEncoding returns how values are spelled in a body of this type, and
// whether it is transformed at all. A body whose type is ambiguous is not:
// with two Content-Type fields servers differ on which one they read (Go
// and Node the first, others the last or both joined), and a
// Content-Encoding field, even an empty one beside another, may mean the
// bytes are compressed. Left alone, the placeholder reaches the upstream
// as itself, never the secret.
func bodyEncoding(h http.Header) (encoding, Where, bool) {
	if len(h.Values("Content-Encoding")) > 0 || len(h.Values("Content-Type")) != 1 {
		return 0, "", false
	}
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return 0, "", false
	}
	switch {
	case mt == "application/x-www-form-urlencoded":
		return encQuery, InForm, true
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return encJSON, InJSON, true
	}
	return 0, "", false
}

// body returns r's new body, its length (-1 unknown) and GetBody, or a nil
// body when it is left alone.
func (s *Substituter) body(rep *Report, r *http.Request, h http.Header) (io.ReadCloser, int64, func() (io.ReadCloser, error), error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, 0, nil, nil
	}
	enc, where, ok := bodyEncoding(h)
	if !ok || s.m[enc].empty() {
		return nil, 0, nil, nil
	}
	m := s.m[enc]
	if r.ContentLength >= 0 && r.ContentLength <= s.maxBuffered {
		b, err := io.ReadAll(io.LimitReader(r.Body, s.maxBuffered+1))
		if err != nil {
			return nil, 0, nil, fmt.Errorf("transform: read request body: %w", err)
		}
		if int64(len(b)) != r.ContentLength {
			return nil, 0, nil, fmt.Errorf("transform: request body is %d bytes, Content-Length says %d", len(b), r.ContentLength)
		}
		_ = r.Body.Close()
		// The whole body is here: a named form field or JSON member can
		// be established for each match.
		var cur int
		var field fieldFunc
		switch where {
		case InForm:
			field = func() (string, bool, string) { return formAt(b, cur) }
		case InJSON:
			jf := &jsonFields{body: b}
			field = func() (string, bool, string) { return jf.at(cur) }
		}
		out, err := m.applyAt(b, s.onHitField(rep, where, "", field), &cur)
		if err != nil {
			return nil, 0, nil, err
		}
		if s.require && !rep.Seen() {
			return nil, 0, nil, fmt.Errorf("transform: %w", ErrPlaceholderMissing)
		}
		getBody := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(out)), nil }
		return io.NopCloser(bytes.NewReader(out)), int64(len(out)), getBody, nil
	}
	wrap := func(src io.ReadCloser) io.ReadCloser {
		sr := newStreamReader(src, m, s.onHit(rep, where, ""))
		if s.require {
			sr.atEOF = func() error {
				if !rep.Seen() {
					return fmt.Errorf("transform: %w", ErrPlaceholderMissing)
				}
				return nil
			}
		}
		return sr
	}
	var getBody func() (io.ReadCloser, error)
	if r.GetBody != nil {
		orig := r.GetBody
		getBody = func() (io.ReadCloser, error) {
			b, err := orig()
			if err != nil {
				return nil, err
			}
			return wrap(b), nil
		}
	}
	length := int64(-1)
	if s.sameLength[enc] {
		length = r.ContentLength
	}
	return wrap(r.Body), length, getBody, nil
}

// TextFrame substitutes the payload of one WebSocket text frame (unmasked;
// the caller unmasks, and masks and re-frames the result with its new
// length). Values are JSON-escaped when asJSON is set (a JSON message such
// as Discord's IDENTIFY), raw otherwise. A placeholder split between two
// frames of a fragmented message is found only if the caller passes the
// reassembled message.
// rep may be the Report of the request that opened the WebSocket.
func (s *Substituter) TextFrame(rep *Report, payload []byte, asJSON bool) ([]byte, error) {
	if rep == nil {
		rep = &Report{}
	}
	enc := encRaw
	if asJSON {
		enc = encJSON
	}
	return s.m[enc].apply(payload, s.onHit(rep, InWebSocket, ""))
}

// Format implements fmt.Formatter: every verb prints the binding and
// tripwire names, never a value (the matchers hold the secrets).
func (s Substituter) Format(f fmt.State, _ rune) {
	var names []string
	for _, b := range s.bindings {
		names = append(names, b.Name)
	}
	var trips []string
	for _, t := range s.trips {
		trips = append(trips, t.Name)
	}
	fmt.Fprintf(f, "transform.Substituter{bindings: %q, tripwires: %q}", names, trips)
}
