package transform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// Place is a part of a request where a binding's placeholder may be
// replaced by its value (a rule's substitute_in, docs/agents.md). A
// bound placeholder found anywhere else is treated as a tripwire: the
// request is refused with a MisuseError whose Misplaced is set, and no
// byte of the value is written.
type Place struct {
	// Where is the position: InHeader, InBasicAuth, InPath, InQuery,
	// InForm, InJSON or InWebSocket.
	Where Where
	// Name narrows the position: the header's name for InHeader
	// (compared case-insensitively), the parameter's name for InQuery,
	// the field's name for InForm (both decoded), and an RFC 6901 JSON
	// pointer for InJSON, written with the ~0 and ~1 escapes ("/auth/key",
	// "/items/0/token"). Empty means anywhere in the position. Named
	// form and JSON places are matched in bodies transformed whole (of
	// known length up to Options.MaxBuffered); in a streamed body the
	// field cannot be established, and a placeholder there is allowed
	// only by a Place naming the whole position.
	Name string
}

// String is the place as substitute_in spells it: "path",
// "header:Authorization", "json:/auth/key".
func (p Place) String() string {
	if p.Name == "" {
		return string(p.Where)
	}
	return string(p.Where) + ":" + p.Name
}

// fieldFunc returns the name of the field (query parameter, form field,
// JSON pointer) the current match is the value of, and false when the
// match is not inside one field's value (in a name, outside any string,
// in a body that does not parse) or the field cannot be established.
// ambiguous, when not empty, says why the field cannot be established
// although the match is in a value: the servers upstream read that value
// as another field's (a parser differential), and the gateway refuses
// rather than choose one reading.
type fieldFunc func() (name string, ok bool, ambiguous string)

// allows reports whether b may be substituted at where: in header
// (InHeader, InBasicAuth), in the field field returns (nil: the field is
// not known, as in a streamed body). When it may not and a named place
// was refused because the field is ambiguous, ambiguous says why.
func (b *Binding) allows(where Where, header string, field fieldFunc) (ok bool, ambiguous string) {
	if b.Places == nil {
		return true, ""
	}
	var name string
	known, asked := false, false
	for _, p := range b.Places {
		if p.Where != where {
			continue
		}
		if p.Name == "" {
			return true, ""
		}
		if where == InHeader {
			if strings.EqualFold(p.Name, header) {
				return true, ""
			}
			continue
		}
		if field == nil {
			continue
		}
		if !asked {
			name, known, ambiguous = field()
			asked = true
		}
		if known && p.Name == name {
			return true, ""
		}
	}
	return false, ambiguous
}

// paramAt returns the decoded name of the parameter of a
// `name=value&...` string (a raw query or a form body) whose value holds
// the byte at, and false when at is in a parameter's name. Servers differ
// on ';': some end a parameter there too (Rack before 3, Python before
// 3.9.2, Perl's CGI.pm, Go before 1.17), others do not (WHATWG URL, PHP,
// Node, Python since 3.9.2; Go since 1.17 drops the pair). The value must
// be the same parameter's under both readings: in "cb=x;key=PH" a server
// splitting on ';' sees key, one that does not sees cb (which it may echo
// or store); that is ambiguous, and refused.
func paramAt(s []byte, at int) (name string, ok bool, ambiguous string) {
	amp, ampOK := paramName(s, at, "&")
	semi, semiOK := paramName(s, at, "&;")
	switch {
	case ampOK && semiOK && amp == semi:
		return amp, true, ""
	case ampOK || semiOK:
		return "", false, "';' in the parameter: servers that split parameters on ';' and servers that do not read the placeholder as the value of different parameters (send the parameter on its own, after '&')"
	}
	return "", false, ""
}

// paramName is paramAt for one set of separators.
func paramName(s []byte, at int, seps string) (string, bool) {
	start := bytes.LastIndexAny(s[:at], seps) + 1
	eq := bytes.IndexByte(s[start:at], '=')
	if eq < 0 {
		return "", false // in the name
	}
	name, err := url.QueryUnescape(string(s[start : start+eq]))
	if err != nil {
		return "", false
	}
	return name, true
}

// formAt is paramAt for a whole application/x-www-form-urlencoded body.
// Every form encoder (browsers' WHATWG serializer, Go's url.Values,
// Python's urlencode, curl --data-urlencode, URLSearchParams) escapes
// control characters, '"', '\', '{', '}', '<' and '>'; a body that holds
// one raw is not a form serialization but, most likely, JSON, multipart
// or XML under a form Content-Type, which an upstream that parses its
// body without looking at Content-Type (a JSON API) reads with other
// fields: {"text":"a&token=PH"} is field token to the gateway and member
// text to such a server. A named field is not established in it.
func formAt(body []byte, at int) (string, bool, string) {
	if i := bytes.IndexFunc(body, notFormByte); i >= 0 {
		return "", false, fmt.Sprintf("the body is not an application/x-www-form-urlencoded serialization (byte %d is %q, which form encoders escape): an upstream that reads it as JSON, multipart or XML would see the placeholder in another field (percent-encode the body, or send it with its own Content-Type)", i, body[i])
	}
	return paramAt(body, at)
}

// notFormByte reports a rune form encoders never leave unescaped.
func notFormByte(r rune) bool {
	return r < ' ' || r == 0x7f || strings.ContainsRune("\"\\{}<>", r)
}

// jsonFields finds, in a whole JSON body, the string value each match
// lies in. It parses the body once, on first use.
type jsonFields struct {
	body   []byte
	parsed bool
	err    error
	spans  []jsonSpan
}

// jsonSpan is one string value: its bytes between the quotes, and its
// JSON pointer.
type jsonSpan struct {
	start, end int
	pointer    string
}

// at returns the pointer of the string value a placeholder starting at
// body[at] lies in, and false when none does (a key, a bare word,
// invalid JSON). A placeholder holds no '"' or backslash: one that starts
// inside a string's content ends inside it.
func (j *jsonFields) at(at int) (string, bool, string) {
	if !j.parsed {
		j.parsed = true
		j.spans, j.err = jsonStringValues(j.body)
	}
	if j.err != nil {
		return "", false, ""
	}
	for _, sp := range j.spans {
		if sp.start <= at && at < sp.end {
			return sp.pointer, true, ""
		}
	}
	return "", false, ""
}

// jsonFrame is one open container while a JSON text is read.
type jsonFrame struct {
	obj     bool
	key     string // the current member's key (objects)
	idx     int    // the next element's index (arrays)
	wantKey bool   // the next string of an object is a key
}

// errJSONShape: the body is not the JSON its Content-Type says.
var errJSONShape = errors.New("transform: body is not valid JSON")

// jsonStringValues lists the string values of the JSON texts in b with
// their byte spans (inside the quotes) and pointers. An invalid body is
// an error: no field of it can be established.
func jsonStringValues(b []byte) ([]jsonSpan, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var (
		stack []jsonFrame
		spans []jsonSpan
	)
	pointer := func() string {
		var sb strings.Builder
		for _, f := range stack {
			sb.WriteByte('/')
			if f.obj {
				sb.WriteString(escapePointerToken(f.key))
			} else {
				sb.WriteString(strconv.Itoa(f.idx))
			}
		}
		return sb.String()
	}
	// value records that a value (not a key) ended: the member's or
	// element's position moves on.
	value := func() {
		if n := len(stack); n > 0 {
			if f := &stack[n-1]; f.obj {
				f.wantKey = true
			} else {
				f.idx++
			}
		}
	}
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) != 0 {
				return nil, errJSONShape
			}
			return spans, nil
		}
		if err != nil {
			return nil, errJSONShape
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, jsonFrame{obj: t == '{', wantKey: t == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				value()
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
				stack[n-1].key, stack[n-1].wantKey = t, false
				continue
			}
			end := int(dec.InputOffset())
			start := bytes.IndexByte(b[before:end], '"')
			if start < 0 {
				return nil, errJSONShape
			}
			spans = append(spans, jsonSpan{start: int(before) + start + 1, end: end - 1, pointer: pointer()})
			value()
		default:
			value()
		}
	}
}

// escapePointerToken escapes one reference token of a JSON pointer.
func escapePointerToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// CheckPointer reports why p is not an RFC 6901 JSON pointer naming a
// member or element ("/auth/key", "/a~1b" for the key "a/b"), or nil.
func CheckPointer(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New("a JSON pointer starts with '/'")
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '~' && (i+1 == len(p) || p[i+1] != '0' && p[i+1] != '1') {
			return errors.New("'~' must be written ~0, and '/' inside a key ~1")
		}
	}
	return nil
}
