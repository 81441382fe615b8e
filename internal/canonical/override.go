package canonical

import (
	"net/url"
	"strings"
)

// OverrideHeaders are the header fields, in canonical form, with which
// frameworks let a request ask to be run as another method than its own
// (Rails and Rack, Laravel and Symfony, Express's method-override, Google
// APIs, ASP.NET): X-HTTP-Method-Override, X-HTTP-Method and
// X-Method-Override. MethodOverride checks them.
var OverrideHeaders = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// overrideNames are OverrideHeaders as their documentation spells them,
// for refusal reasons.
var overrideNames = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

// OverrideParam is the query parameter frameworks read as a method
// override (Laravel and Symfony read it from the query string).
const OverrideParam = "_method"

// Override is a method override that names another method than the
// request's own.
type Override struct {
	// Field names where the override is: "header field
	// X-HTTP-Method-Override" or "query parameter _method".
	Field string
	// Method is the method it names, upper-cased, when that is a plain
	// method name (letters, at most 20); "" for anything else, which is
	// not repeated in a reason.
	Method string
}

// MethodOverride reports the first method override in the header h (as
// net/http's servers hand it over: canonical keys) or the raw query that
// names another method than method. A server honouring it would run a
// request the policy never judged (a POST decided as POST and executed
// as DELETE), so such a request is refused rather than forwarded. An
// override naming the request's own method changes nothing and passes.
//
// Each header value is read as a comma-separated list, each element
// trimmed and compared case-insensitively; empty elements name nothing.
// Query parameters are separated by '&' or ';' (Rack 2 reads both); the
// name is compared after percent- and '+'-decoding, with leading spaces
// dropped, a leading '.' read as '_' and the name cut at a NUL, as PHP
// names the parameter ($_GET turns ".method" and "_method%00x" into
// "_method"). A `_method` in a form body is
// not read: the body is not inspected. It allocates only for an override
// it reports.
func MethodOverride(method string, h map[string][]string, rawQuery string) (Override, bool) {
	for i, k := range OverrideHeaders {
		for _, v := range h[k] {
			if m, ok := otherMethod(method, v, true); ok {
				return Override{Field: "header field " + overrideNames[i], Method: m}, true
			}
		}
	}
	for q := rawQuery; q != ""; {
		var part string
		if i := strings.IndexAny(q, "&;"); i >= 0 {
			part, q = q[:i], q[i+1:]
		} else {
			part, q = q, ""
		}
		key, val, _ := strings.Cut(part, "=")
		if !isOverrideParam(key) {
			continue
		}
		v, err := url.QueryUnescape(val)
		if err != nil {
			// A value no server decodes as we would: it is not judged.
			return Override{Field: "query parameter " + OverrideParam}, true
		}
		if m, ok := otherMethod(method, v, false); ok {
			return Override{Field: "query parameter " + OverrideParam, Method: m}, true
		}
	}
	return Override{}, false
}

// otherMethod reports whether v (a comma-separated list when list is
// set) names a method other than method, and returns that method for a
// reason (see Override.Method).
func otherMethod(method, v string, list bool) (string, bool) {
	for v != "" {
		elem := v
		if i := strings.IndexByte(v, ','); list && i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			v = ""
		}
		elem = strings.Trim(elem, " \t")
		if elem == "" || strings.EqualFold(elem, method) {
			continue
		}
		if len(elem) > 20 || strings.IndexFunc(elem, func(r rune) bool {
			return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z')
		}) >= 0 {
			return "", true
		}
		return strings.ToUpper(elem), true
	}
	return "", false
}

// isOverrideParam reports whether the raw query parameter name key
// decodes to OverrideParam as PHP reads names (see MethodOverride),
// without allocating. A '%' not followed by two hex digits is read as
// itself, as PHP does.
func isOverrideParam(key string) bool {
	n := 0 // bytes of OverrideParam matched
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(key) && isHex(key[i+1]) && isHex(key[i+2]):
			c = unhex(key[i+1])<<4 | unhex(key[i+2])
			i += 2
		}
		if c == 0 {
			// PHP registers a name up to its first NUL (a C string),
			// so what follows is not part of it.
			return n == len(OverrideParam)
		}
		if n == 0 && c == ' ' {
			continue // PHP drops leading spaces of a name
		}
		if n == 0 && c == '.' {
			c = '_' // and reads '.' (and ' ') as '_'
		}
		if n >= len(OverrideParam) || c != OverrideParam[n] {
			return false
		}
		n++
	}
	return n == len(OverrideParam)
}
