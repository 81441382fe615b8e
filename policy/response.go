package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/headerset"
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

// Ranges is a rule's `ranges:` setting: what the gateway does with HTTP
// Range requests (RFC 9110 §14) of a rule whose responses it scrubs or
// keeps custody of. A range of a stored value is a piece of it: a client
// that reads a secret the upstream stored (a placeholder substituted into
// a body it keeps, a request-bin that keeps request headers) in pieces
// each shorter than the secret gets every piece past the scrubber, which
// only recognises the value whole.
type Ranges string

// Ranges settings.
const (
	// RangesWhole removes Range and If-Range from the request, so the
	// upstream answers with the whole representation (every HTTP client
	// must accept a 200 to a Range request), which is scrubbed whole. A
	// 206 the upstream sends anyway (to a vendor range header such as
	// x-ms-range, or an S3 partNumber) is refused (502
	// response_not_scrubbable). The default, except as RangesPass says.
	RangesWhole Ranges = "whole"
	// RangesPass forwards Range requests as they are, and the upstream's
	// 206 pieces are scrubbed each on its own: a secret split across
	// pieces reaches the client. The default of a rule whose injector
	// puts no secret on the request, only a signature
	// (injectors.SignatureOnly: sigv4, azure-sharedkey), whose credential
	// has no placeholder and which has no custody block: ranged
	// downloads (the AWS SDK's download manager writes each part at its
	// offset) keep working.
	RangesPass Ranges = "pass"
	// RangesRefuse refuses a request with a Range field (403
	// range_refused), and a 206 the upstream sends anyway (502
	// response_not_scrubbable).
	RangesRefuse Ranges = "refuse"
)

// defaultRanges is the ranges setting of a rule that does not set one:
// RangesPass when no reusable secret of it can reach an upstream to be
// stored and read back (the injector only signs, no placeholder puts a
// value where the client chooses, no custody), RangesWhole otherwise.
func defaultRanges(r *rule) Ranges {
	if r.plan != nil && r.plan.Placeholder == nil && r.custody == nil {
		if _, ok := r.plan.Injector.(injectors.SignatureOnly); ok {
			return RangesPass
		}
	}
	return RangesWhole
}

// parseRanges reads `ranges: whole|pass|refuse`, once the rule's inject
// block, scrub setting and custody block were read.
func (ps *parser) parseRanges(r *rule, f field, what string) {
	what += " ranges"
	if r.act != ruleInject {
		ps.errorf(f.key, "%s: ranges applies only to inject rules (another rule's response is scrubbed only of custody values its request used, and is always whole then); remove it", what)
		return
	}
	v, ok := ps.str(f.val, what)
	if !ok {
		return
	}
	switch Ranges(v) {
	case RangesWhole, RangesPass, RangesRefuse:
	default:
		ps.errorf(deref(f.val), "%s: %q is not one of whole, pass, refuse (whole: the gateway removes Range so responses are scrubbed whole; pass: Range requests go through and each 206 piece is scrubbed on its own; refuse: Range requests are refused)", what, v)
		return
	}
	if r.scrub.Off && r.custody == nil {
		ps.errorf(f.key, "%s has no effect: the rule's responses are not scrubbed (scrub: {enabled: false}) nor kept in custody; remove ranges", what)
		return
	}
	r.ranges = Ranges(v)
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
	// Headers are the header fields, canonical, besides
	// DefaultCustodyHeaders, in whose values a placeholder of this
	// rule's destinations is put back (`headers: [X-Session]`): the
	// custody equivalent of substitute_in. See Decision.CustodyHeader.
	Headers []string
}

// DefaultCustodyHeaders are the header fields a custody placeholder is
// always put back in, at the destination that issued its value: where
// sessions go (a cookie in Cookie, a token in Authorization).
var DefaultCustodyHeaders = []string{"Authorization", "Cookie"}

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

// parseCustody reads `custody: {json: [$.token], cookies: [session], ttl: 1h, headers: [X-Session]}`.
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
	fs := ps.fields(f.val, what, "json", "cookies", "ttl", "headers")
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
	if hf, ok := fs["headers"]; ok {
		vals, nodes := ps.list(hf.val, what+" headers", false)
		for i, v := range vals {
			name := http.CanonicalHeaderKey(v)
			switch {
			case !httpguts.ValidHeaderFieldName(v):
				ps.errorf(nodes[i], "%s headers: %q is not a header name", what, v)
			case headerset.Reserved(name) || strings.HasPrefix(name, "X-Credgate-") || name == "Proxy-Authorization":
				ps.errorf(nodes[i], "%s headers: %s is reserved for the proxy (framing, hop-by-hop or gateway-scoped); a session never goes there", what, name)
			default:
				c.Headers = append(c.Headers, name)
			}
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
	back := append(append([]string(nil), DefaultCustodyHeaders...), c.Headers...)
	return fmt.Sprintf("%s (ttl %s; put back in %s)", strings.Join(parts, ", "), c.TTL, strings.Join(back, ", "))
}

// CustodyHeader reports whether a custody placeholder is put back in the
// header field name (any case) of a request decided d: one of
// DefaultCustodyHeaders, or a field the custody block of a rule to d's
// destination names under headers (CustodyHeaders). Anywhere else the
// placeholder is misplaced.
func (d Decision) CustodyHeader(name string) bool {
	name = http.CanonicalHeaderKey(name)
	return slices.Contains(DefaultCustodyHeaders, name) || slices.Contains(d.CustodyHeaders, name)
}

// HasCustody reports whether a rule of the policy keeps custody of
// values: custody placeholders are then searched for in every request,
// like the placeholders of credentials.
func (p *Policy) HasCustody() bool {
	p.custodyOnce.Do(p.indexCustody)
	return p.hasCustody
}

// indexCustody builds the custody lookups from the rules, once.
func (p *Policy) indexCustody() {
	p.custodyHeaders = map[string][]string{}
	custodyRules := map[string][]*rule{}
	for _, r := range p.rules {
		if r.custody == nil {
			continue
		}
		p.hasCustody = true
		for _, d := range r.to {
			p.custodyHeaders[d.name] = append(p.custodyHeaders[d.name], r.custody.Headers...)
			custodyRules[d.name] = append(custodyRules[d.name], r)
		}
	}
	p.custodyVersions = make(map[string]string, len(p.dests))
	for name, d := range p.dests {
		h := sha256.New()
		io.WriteString(h, "credgate custody v1\x00")
		io.WriteString(h, d.version)
		for _, r := range custodyRules[name] {
			io.WriteString(h, "\x00")
			io.WriteString(h, r.version)
			if r.plan != nil {
				io.WriteString(h, "\x00")
				io.WriteString(h, r.plan.CredentialVersion)
			}
		}
		p.custodyVersions[name] = hex.EncodeToString(h.Sum(nil))[:16]
	}
}

// CustodyVersion digests what defines where the custody values a
// workload keeps at a destination may go: the destination's settings
// (hosts, ports, allow_private ...), the settings of every rule to it
// that keeps custody (its custody block, from, methods ... and the
// version of the credential it logs in with), and the workload's
// settings (who the workload is). Custody values are cached under it
// (their key's Version), so a reload that changes any of it starts with
// no session values — the destination's name may now mean other hosts,
// the workload's other callers — and one that changes none of it (a
// rule elsewhere, another workload, a rule to the destination without
// custody) keeps them. Each part is a digest of its settings as the
// credential version is (settingsHash), so settings that differ anywhere
// give another version.
func (p *Policy) CustodyVersion(destination, workload string) string {
	p.custodyOnce.Do(p.indexCustody)
	return p.custodyVersions[destination] + p.wlVersions[workload]
}
