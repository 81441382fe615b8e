package policy

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Encoded says what the gateway does about compressed responses of a rule
// whose responses it scrubs (`scrub: {encoded: ...}`).
type Encoded string

// Encoded settings.
const (
	// EncodedDecode (the default) advertises gzip, deflate and br upstream
	// and scrubs such bodies through decoding; the client gets them
	// decoded. Any other encoding is refused (502).
	EncodedDecode Encoded = "decode"
	// EncodedIdentity asks upstream for an unencoded body
	// (Accept-Encoding: identity); a body encoded anyway is still decoded
	// when it can be, or refused.
	EncodedIdentity Encoded = "identity"
	// EncodedRefuse asks for identity and refuses (502) any encoded body
	// instead of decoding it on the gateway.
	EncodedRefuse Encoded = "refuse"
)

// Scrub is a rule's `scrub:` setting: whether the injected secret values
// echoed in a response are replaced before the client sees them
// (DESIGN.md invariant 13), and how encoded bodies are handled.
type Scrub struct {
	// Off is `enabled: false`: responses of the rule reach the client as
	// the upstream sent them, echoes of the secret included.
	Off bool
	// Encoded is what to do about compressed bodies (default decode).
	Encoded Encoded
}

// DefaultCustodyTTL is how long a custodied value lives when the response
// says nothing (a JSON field, a session cookie without Max-Age/Expires)
// and the rule's custody block sets no ttl.
const DefaultCustodyTTL = time.Hour

// MaxCustodyTTL bounds a custody block's ttl.
const MaxCustodyTTL = 30 * 24 * time.Hour

// Custody is a rule's `custody:` block: values of the rule's responses the
// gateway keeps and hands to the client only as placeholders (a session
// token from a login API), to be put back into later requests to the same
// destination from the same workload.
type Custody struct {
	// JSON are JSON paths of string fields of a JSON response body, each
	// a list of object keys (`$.session.token` is [session token]); an
	// array on the way applies the rest of the path to each element.
	JSON [][]string
	// Cookies are names of cookies the response sets (Set-Cookie).
	Cookies []string
	// TTL is how long a value lives when the response does not say
	// (cookie Max-Age/Expires wins when it is shorter).
	TTL time.Duration
}

// CustodyCookie reports whether the custody block names the cookie.
func (c *Custody) CustodyCookie(name string) bool {
	for _, n := range c.Cookies {
		if n == name {
			return true
		}
	}
	return false
}

// parseScrub reads `scrub: {enabled: false, encoded: identity}`.
func (ps *parser) parseScrub(r *rule, f field, what string) {
	what += " scrub"
	if r.act != ruleInject {
		ps.errorf(f.key, "%s: scrub applies only to inject rules (a rule without a credential injects nothing to scrub); remove it", what)
		return
	}
	body := deref(f.val)
	if body.Kind != yaml.MappingNode {
		ps.errorf(body, "%s must be a mapping like {enabled: true, encoded: decode}", what)
		return
	}
	fs := ps.fields(f.val, what, "enabled", "encoded")
	s := Scrub{Encoded: EncodedDecode}
	if ef, ok := fs["enabled"]; ok {
		s.Off = !ps.boolean(ef.val, what+" enabled")
	}
	if ef, ok := fs["encoded"]; ok {
		if v, ok := ps.str(ef.val, what+" encoded"); ok {
			switch Encoded(v) {
			case EncodedDecode, EncodedIdentity, EncodedRefuse:
				s.Encoded = Encoded(v)
			default:
				ps.errorf(deref(ef.val), "%s: encoded %q is not one of decode, identity, refuse", what, v)
			}
		}
	}
	r.scrub = s
}

// parseCustody reads `custody: {json: [$.token], cookies: [session], ttl: 1h}`.
func (ps *parser) parseCustody(r *rule, f field, what string) {
	what += " custody"
	if r.act != ruleInject {
		ps.errorf(f.key, "%s: custody applies only to inject rules (the gateway logs in with a credential the client never holds, and keeps the session too); remove it or make the rule inject", what)
		return
	}
	body := deref(f.val)
	if body.Kind != yaml.MappingNode {
		ps.errorf(body, "%s must be a mapping like {json: [$.access_token], cookies: [session], ttl: 1h}", what)
		return
	}
	fs := ps.fields(f.val, what, "json", "cookies", "ttl")
	c := &Custody{TTL: DefaultCustodyTTL}
	if jf, ok := fs["json"]; ok {
		vals, nodes := ps.list(jf.val, what+" json", false)
		for i, v := range vals {
			path, msg := parseJSONPath(v)
			if msg != "" {
				ps.errorf(nodes[i], "%s json: %q %s", what, v, msg)
				continue
			}
			c.JSON = append(c.JSON, path)
		}
	}
	if cf, ok := fs["cookies"]; ok {
		vals, nodes := ps.list(cf.val, what+" cookies", false)
		for i, v := range vals {
			if !isToken(v) {
				ps.errorf(nodes[i], "%s cookies: %q is not a cookie name (a token: letters, digits and !#$%%&'*+-.^_`|~)", what, v)
				continue
			}
			c.Cookies = append(c.Cookies, v)
		}
	}
	if tf, ok := fs["ttl"]; ok {
		if v, ok := ps.str(tf.val, what+" ttl"); ok {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > MaxCustodyTTL {
				ps.errorf(deref(tf.val), "%s: ttl %q must be a duration from 1s to 720h, like 15m or 12h", what, v)
			} else {
				c.TTL = d
			}
		}
	}
	_, hasJSON := fs["json"]
	_, hasCookies := fs["cookies"]
	if !hasJSON && !hasCookies {
		ps.errorf(f.key, "%s names nothing to keep; add json: [<path>] and/or cookies: [<name>]", what)
		return
	}
	if len(c.JSON) > 0 || len(c.Cookies) > 0 {
		r.custody = c
	}
}

// parseJSONPath splits `$.a.b`, `a.b` or `$.a` into its keys, or says
// what is wrong with it.
func parseJSONPath(s string) ([]string, string) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "$"), ".")
	if s == "" {
		return nil, "names no field; write the keys from the top, like $.session.token"
	}
	keys := strings.Split(s, ".")
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "[]*?'\" ") {
			return nil, "is not a dotted list of object keys (no [index], wildcard or quotes); arrays on the way are searched element by element"
		}
	}
	return keys, ""
}

// String says the block in the words of `credgate explain`.
func (c *Custody) String() string {
	var parts []string
	for _, p := range c.JSON {
		parts = append(parts, "json $."+strings.Join(p, "."))
	}
	for _, n := range c.Cookies {
		parts = append(parts, "cookie "+n)
	}
	return fmt.Sprintf("%s (ttl %s)", strings.Join(parts, ", "), c.TTL)
}
