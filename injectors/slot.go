package injectors

import "net/http"

// ValueSlot is room for the one header value a built-in injector sets
// (bearer, basic, header), in an allocation the caller makes for the
// request anyway: an injector injecting into a request whose context
// holds a *ValueSlot under ValueSlotKey sets its first value there, and
// any other (a reissue's) in a slice of its own, so that no value ever
// overwrites another. Its zero value is ready. It belongs to that one
// request, never to be used for another, and holds the value (a
// secret) as long as the request's header does.
type ValueSlot struct {
	v    [1]string
	used bool
}

// ValueSlotKey is the context key of a request's *ValueSlot.
type ValueSlotKey struct{}

// setHeader sets the field name (canonical) of r to v alone, as
// r.Header.Set does, in r's ValueSlot when it has an unused one.
func setHeader(r *http.Request, name, v string) {
	if s, ok := r.Context().Value(ValueSlotKey{}).(*ValueSlot); ok && !s.used {
		s.used = true
		s.v[0] = v
		r.Header[name] = s.v[:1:1]
		return
	}
	r.Header[name] = []string{v}
}
