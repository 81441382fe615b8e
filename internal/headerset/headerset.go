// Package headerset names the sets of header fields that the gateway and
// the injectors treat specially, so that the list of hop-by-hop fields
// and the list of fields scoped to the client's hop to the gateway are
// written once: the gateway removes them, and an injector may not set
// them.
package headerset

// Hop are the hop-by-hop fields of RFC 9110 §7.6.1 (and the obsolete
// ones proxies still see), in canonical form: never forwarded in either
// direction.
var Hop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// ProxyScoped are request fields, in canonical form, scoped to the
// client's hop to the gateway or asserting a client identity (invariants
// 3 and 7): the proxy's own authentication, every forwarding or
// client-certificate claim, and the claims of a front proxy about the
// request's original target, which servers behind one route by
// (X-Original-URL, X-Rewrite-URL: IIS, Symfony, Laminas) and so could be
// sent a path other than the one the policy matched (invariant 11). An
// upstream never receives them.
var ProxyScoped = []string{
	"Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Path", "X-Forwarded-Uri", "X-Forwarded-Server",
	"X-Original-Url", "X-Original-Uri", "X-Original-Host", "X-Rewrite-Url",
	"X-Client-Cert", "X-Forwarded-Client-Cert", "X-Ssl-Client-Cert",
}

// framing are fields that frame the message or name its target.
var framing = []string{"Host", "Content-Length"}

var reserved = func() map[string]bool {
	m := map[string]bool{}
	for _, l := range [][]string{Hop, ProxyScoped, framing} {
		for _, h := range l {
			m[h] = true
		}
	}
	return m
}()

// Reserved reports whether an injector may not set the field named by
// canonical (a canonical MIME header key): it frames the message, belongs
// to a hop, or is one the gateway removes.
func Reserved(canonical string) bool { return reserved[canonical] }

// Remover deletes the fields of a set from a header in one pass over the
// header's keys, instead of one map deletion (a hash of the name) per
// field of the set: a request carries a handful of fields and the sets
// hold up to twenty. It matches keys exactly, as delete does: callers
// pass canonical names and headers with canonical keys.
type Remover struct {
	first [256]bool // first bytes of the names, to skip most keys unhashed
	empty bool      // the empty name is in the set
	names map[string]struct{}
}

// NewRemover returns a Remover of the names of every list.
func NewRemover(lists ...[]string) *Remover {
	r := &Remover{names: map[string]struct{}{}}
	for _, l := range lists {
		for _, n := range l {
			if n == "" {
				r.empty = true
				continue
			}
			r.first[n[0]] = true
			r.names[n] = struct{}{}
		}
	}
	return r
}

// Has reports whether name is in the set.
func (r *Remover) Has(name string) bool {
	if name == "" {
		return r.empty
	}
	if !r.first[name[0]] {
		return false
	}
	_, ok := r.names[name]
	return ok
}

// Remove deletes every key of h that is in the set. It allocates
// nothing.
func (r *Remover) Remove(h map[string][]string) {
	for k := range h {
		if r.Has(k) {
			delete(h, k)
		}
	}
}
