package providers

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"

	"github.com/credgate/credgate/identity"
)

// Scope derives a cache scope (Scoped.CacheScope) from every input that
// shapes a credential. Each input is written into SHA-256 under its name
// with unambiguous length prefixes, so two callers whose inputs differ in
// any byte get different scopes: nothing is truncated, sanitised, joined
// with a separator a value could contain, or shortened to a prefix of the
// digest. Providers feed it the full rendered values they send, never the
// form cut to fit a field (an STS session name is 64 characters; two
// workloads differing after the 64th must not share a credential).
//
// The scope names no value: it is "KIND:" and a hex digest, so a scope
// holding a caller's token digest or attribute is safe to log. A Scope is
// built per call and is not safe for concurrent use.
type Scope struct {
	kind string
	h    hash.Hash
	n    [binary.MaxVarintLen64]byte
}

// NewScope starts a scope for a provider; kind (e.g. "vault-pki") is
// its readable prefix and is hashed too.
func NewScope(kind string) *Scope {
	s := &Scope{kind: kind, h: sha256.New()}
	s.put(kind)
	return s
}

// put writes one length-prefixed string.
func (s *Scope) put(v string) {
	n := binary.PutUvarint(s.n[:], uint64(len(v)))
	s.h.Write(s.n[:n])
	s.h.Write([]byte(v))
}

// Add adds the input called name with value.
func (s *Scope) Add(name, value string) *Scope {
	s.put("v")
	s.put(name)
	s.put(value)
	return s
}

// AddToken adds a caller's token as name+"_sha256", its SHA-256 in hex,
// never the token; and, when err (why the token could not be read) is
// set, err's text as name+"!", so that callers whose tokens fail
// differently are kept apart too. Providers whose credential depends on
// the presented token (a token exchange, federation, web identity) key
// the cache by it, so that each workload gets its own credential and a
// rotated token a new one.
func (s *Scope) AddToken(name, token string, err error) *Scope {
	d := sha256.Sum256([]byte(token))
	s.Add(name+"_sha256", hex.EncodeToString(d[:]))
	if err != nil {
		s.Add(name+"!", err.Error())
	}
	return s
}

// AddList adds a list of values under name; the list's length is part of
// the encoding, so [a b] and ["a b"] (or ["a", ""] and ["a"]) differ.
func (s *Scope) AddList(name string, values []string) *Scope {
	s.put("l")
	s.put(name)
	n := binary.PutUvarint(s.n[:], uint64(len(values)))
	s.h.Write(s.n[:n])
	for _, v := range values {
		s.put(v)
	}
	return s
}

// AddTemplate adds t rendered for w under name, checking substituted
// values with check (nil: none), as the provider renders it for Fetch.
// When t cannot be rendered for w, it adds instead the raw value of every
// attribute t names (or why it is missing), so that callers whose
// rendering fails differently are kept apart as well.
func (s *Scope) AddTemplate(name string, t identity.Template, w identity.Workload, check func(string) error) *Scope {
	v, err := t.Render(w, check)
	if err == nil {
		return s.Add(name, v)
	}
	s.put("e")
	s.put(name)
	for _, a := range t.Attributes() {
		s.put(a)
		if v, aerr := w.Attribute(a); aerr != nil {
			s.put("missing")
			s.put(aerr.Error())
		} else {
			s.put("value")
			s.put(v)
		}
	}
	return s
}

// String returns the scope: the kind, ":" and the full SHA-256 in hex.
func (s *Scope) String() string {
	return s.kind + ":" + hex.EncodeToString(s.h.Sum(nil))
}
