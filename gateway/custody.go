package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/transform"
)

// Custody (a rule's `custody:` block, docs/agents.md): values a login or
// token API returns — JSON fields, cookies — are kept in the gateway's
// credential cache (sealed in Redis when cache.redis is set) and the
// client gets an opaque placeholder in their place. A later request from
// the same workload to the same destination that carries the placeholder
// in a header (a Cookie, an Authorization) has the real value put back.

const (
	// codeCustodyFailed answers a response a custody block could not
	// process (a body too large, not JSON, a caller without identity).
	codeCustodyFailed = "custody_failed"
	// codeCustodyUnknown refuses a request carrying a custody placeholder
	// that does not resolve for its workload and destination (another
	// workload's, expired, or made up).
	codeCustodyUnknown = "custody_unknown"
)

// CustodyPrefix starts every custody placeholder; 32 lower-case hex
// digits (a random 128-bit id) follow. Its characters are ones no URL,
// form, JSON or cookie encoding rewrites.
const CustodyPrefix = "CREDGATE_CUSTODY_"

// custodyIDLen is the length of a placeholder's id.
const custodyIDLen = 32

// maxCustodyBody is the largest JSON body custody reads whole to replace
// its fields; a larger one is refused (502), not passed on.
const maxCustodyBody = 1 << 20

// custodyProvider names custody values in cache keys and provider
// metrics.
const custodyProvider = "custody"

// custodyTripwire is the tripwire of policies with custody rules: the
// placeholder prefix, found anywhere custodyRequest does not put a value
// back (a path, query, body, WebSocket frame, Basic credentials, another
// header), or in a request the policy denies, refuses the request 403
// placeholder_misuse like any misplaced placeholder (invariant 13).
var custodyTripwire = transform.Tripwire{Name: policy.CustodyTripwireName, Placeholder: CustodyPrefix}

// errCustodyUnknown is the "fetch" of a custody value: a placeholder is
// resolved only from what a capture stored.
var errCustodyUnknown = errors.New("custody: no value for this placeholder (another workload's, expired, or never issued)")

// custodyKey is the cache key of one custodied value: per destination,
// workload and placeholder id, so a placeholder never resolves for
// another workload or destination, and versioned by the decision's
// CustodyVersion (policy.Policy.CustodyVersion), so a reload that changes
// what the destination or workload is, or the custody rules to the
// destination, does not hand the value to what the names mean now. The
// id is custodyIDLen hex digits at the scope's end, so workload names
// holding '/' cannot make two scopes one.
func custodyKey(version, destination, workload, id string) providers.CacheKey {
	return providers.CacheKey{
		Credential: "custody:" + destination,
		Version:    version,
		Scope:      workload + "/" + id,
		Provider:   custodyProvider,
	}
}

// custodyBinding binds the custody value of custodyKey to the cache:
// fetch stores it (capture) or fails (a lookup), and it counts against
// the workload's share of the cache (providers.Binding.Holder), so a
// flood of logins evicts the workload's own kept values and credentials,
// not other workloads'.
func custodyBinding(version, destination, workload, id string, fetch func(context.Context) (*providers.Credential, error)) providers.Binding {
	return providers.Binding{Key: custodyKey(version, destination, workload, id), Fetch: fetch, Holder: workload}
}

// custodyCapture captures the values a rule's custody block names from
// one response.
type custodyCapture struct {
	g           *Gateway
	ctx         context.Context
	c           *policy.Custody
	workload    string
	destination string
	// version is the decision's CustodyVersion (custodyKey).
	version string
	now     func() time.Time
	// values are the values this response's capture took (placeholders
	// stored, and cookies being deleted): they are secrets the gateway
	// holds from then on, scrubbed from everything else the client gets
	// of the response (scrubber).
	values []providers.Secret
}

func (g *Gateway) newCustodyCapture(x *exchange) *custodyCapture {
	return &custodyCapture{g: g, ctx: x.r.Context(), c: x.d.Custody, workload: x.wl.Name, destination: x.d.Destination, version: x.d.CustodyVersion, now: time.Now}
}

// capture replaces the custodied cookies and JSON fields of resp by
// placeholders, storing the values, and returns how many it replaced. An
// error means resp must not reach the client. The values taken are in
// cc.values, for the scrubber of the rest of the response.
func (cc *custodyCapture) capture(resp *http.Response) (int, error) {
	n, err := cc.captureCookies(resp.Header)
	if err != nil {
		return n, err
	}
	if len(cc.c.JSON) > 0 && resp.Body != nil && resp.Body != http.NoBody {
		// A body labelled JSON must parse. One labelled otherwise (or
		// not at all) that starts like JSON is searched too, since
		// content-negotiating servers send the same JSON as text/html
		// when the client asks for it; one that does not parse as JSON
		// passes unchanged.
		labelled := jsonLabelled(resp)
		if !labelled {
			looks, err := looksLikeJSON(resp)
			if err != nil {
				return n, fmt.Errorf("custody: %w", err)
			}
			if !looks {
				return n, nil
			}
		}
		m, err := cc.json(resp, labelled)
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// captureCookies replaces the values of the custodied cookies in the
// Set-Cookie fields of h by placeholders (a 101's, which has no body to
// search, or the first step of capture), and returns how many it
// replaced.
func (cc *custodyCapture) captureCookies(h http.Header) (int, error) {
	if cc.workload == "" {
		return 0, errors.New("custody needs an identified workload (an anonymous caller's placeholder could be used by any other); name the workload in the rule's from")
	}
	if len(cc.c.Cookies) == 0 {
		return 0, nil
	}
	n := 0
	for i, v := range h["Set-Cookie"] {
		nv, ok, err := cc.cookie(v)
		if err != nil {
			return n, err
		}
		h["Set-Cookie"][i] = nv
		if ok {
			n++
		}
	}
	return n, nil
}

// scrubber returns the Scrubber of the values the capture took, nil when
// it took none. It scrubs them from every other place of the response —
// other headers and cookies, the body in every form the scrubber knows,
// trailers — once the placeholders are in (so that they are not touched):
// an upstream that repeats the session it issues (a debug echo, a
// redirect URL, a second cookie) would otherwise hand the client the
// value custody keeps from it.
func (cc *custodyCapture) scrubber() *transform.Scrubber {
	if cc == nil || len(cc.values) == 0 {
		return nil
	}
	return transform.NewScrubber(cc.values, transform.ScrubOptions{KeepLength: true})
}

// jsonLabelled reports whether resp's Content-Type says JSON.
func jsonLabelled(resp *http.Response) bool {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// looksLikeJSON decodes resp's body (when encoded) and reports whether
// its first byte that is not white space opens a JSON object or array;
// the body still reads whole after.
func looksLikeJSON(resp *http.Response) (bool, error) {
	if err := transform.DecodeResponse(resp); err != nil {
		return false, err
	}
	br := bufio.NewReaderSize(resp.Body, 512)
	resp.Body = struct {
		io.Reader
		io.Closer
	}{br, resp.Body}
	head, _ := br.Peek(512)
	t := bytes.TrimLeft(head, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '['), nil
}

// cookie returns the Set-Cookie field v with the value of a custodied
// cookie replaced by a placeholder (reporting true) or, for one being
// deleted, blanked, keeping its attributes as they came; other fields as
// they came. A field that does not parse and names a custodied cookie is
// an error.
func (cc *custodyCapture) cookie(v string) (string, bool, error) {
	// Only the value changes: name=value up to the first ';'.
	head, rest, hasAttrs := strings.Cut(v, ";")
	name, _, _ := strings.Cut(head, "=")
	with := func(value string) string {
		out := name + "=" + value
		if hasAttrs {
			out += ";" + rest
		}
		return out
	}
	c, err := http.ParseSetCookie(v)
	if err != nil {
		if cc.c.CustodyCookie(strings.TrimSpace(name)) {
			// Its value cannot be told from the rest: it must not pass.
			return "", false, fmt.Errorf("custody: a Set-Cookie for the custodied cookie %q does not parse (%v); it is not passed on", strings.TrimSpace(name), err)
		}
		return v, false, nil
	}
	if !cc.c.CustodyCookie(c.Name) || c.Value == "" {
		return v, false, nil
	}
	now := cc.now()
	exp := now.Add(cc.c.TTL)
	switch {
	case c.MaxAge < 0, c.MaxAge == 0 && !c.Expires.IsZero() && !c.Expires.After(now):
		// A cookie being deleted keeps nothing; its value goes anyway
		// (and is scrubbed from the rest of the response).
		cc.values = append(cc.values, providers.NewSecret(c.Value))
		return with(""), false, nil
	case c.MaxAge > 0:
		exp = minTime(exp, now.Add(time.Duration(c.MaxAge)*time.Second))
	case !c.Expires.IsZero():
		exp = minTime(exp, c.Expires)
	}
	ph, err := cc.store(c.Value, exp)
	if err != nil {
		return "", false, err
	}
	return with(ph), true, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// json replaces the string values at the block's JSON paths in resp's
// body, read whole (up to maxCustodyBody, decoded first when encoded).
// The rest of the body is left byte for byte.
func (cc *custodyCapture) json(resp *http.Response, labelled bool) (int, error) {
	if err := transform.DecodeResponse(resp); err != nil {
		return 0, fmt.Errorf("custody: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCustodyBody+1))
	_ = resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("custody: read the response body: %w", err)
	}
	if len(body) > maxCustodyBody {
		return 0, fmt.Errorf("custody: the JSON response body is larger than %d bytes; custody reads login and token answers whole, so this endpoint should not be under a custody rule", maxCustodyBody)
	}
	spans, err := jsonSpans(body, cc.c.JSON)
	switch {
	case err != nil && labelled:
		return 0, fmt.Errorf("custody: the response says it is JSON but does not parse (%w); it is not passed on", err)
	case err != nil:
		// Not JSON after all (an HTML page that starts with '['?): it
		// holds no JSON field, and passes as it came.
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		return 0, nil
	}
	var out bytes.Buffer
	last := 0
	exp := cc.now().Add(cc.c.TTL)
	for _, sp := range spans {
		var v string
		if err := json.Unmarshal(body[sp.start:sp.end], &v); err != nil || v == "" {
			continue
		}
		ph, err := cc.store(v, exp)
		if err != nil {
			return 0, err
		}
		out.Write(body[last:sp.start])
		out.WriteString(strconv.Quote(ph))
		last = sp.end
	}
	out.Write(body[last:])
	b := out.Bytes()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header["Content-Length"] = []string{strconv.Itoa(len(b))}
	return len(spans), nil
}

// span is the bytes of one JSON string value, quotes included.
type span struct{ start, end int }

// jsonSpans returns, in order, the spans of the string values at paths
// (arrays on the way are searched element by element).
func jsonSpans(body []byte, paths [][]string) ([]span, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var spans []span
	// stack holds, per open container, the key path to it and whether it
	// is an object (keys alternate with values).
	type frame struct {
		path   []string
		object bool
		key    string
		want   bool // the next token is a key
	}
	var stack []frame
	match := func(path []string) bool {
		for _, p := range paths {
			if len(p) == len(path) && strings.Join(p, "\x00") == strings.Join(path, "\x00") {
				return true
			}
		}
		return false
	}
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) != 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return spans, nil
		}
		if err != nil {
			return nil, err
		}
		var cur *frame
		if len(stack) > 0 {
			cur = &stack[len(stack)-1]
		}
		if cur != nil && cur.object && cur.want {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			cur.key, _ = tok.(string)
			cur.want = false
			continue
		}
		// A value: in an object under cur.key, in an array, or the top.
		var path []string
		if cur != nil {
			path = cur.path
			if cur.object {
				path = append(append([]string(nil), cur.path...), cur.key)
				cur.want = true
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, frame{path: path, object: true, want: true})
			case '[':
				stack = append(stack, frame{path: path})
			case ']':
				stack = stack[:len(stack)-1]
			}
		case string:
			if match(path) {
				// The token began after the separators that precede it.
				start := int(before)
				for start < len(body) && body[start] != '"' {
					start++
				}
				spans = append(spans, span{start: start, end: int(dec.InputOffset())})
			}
		}
	}
}

// store keeps value under a new placeholder until exp and returns the
// placeholder.
func (cc *custodyCapture) store(value string, exp time.Time) (string, error) {
	var id [custodyIDLen / 2]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("custody: random placeholder id: %w", err)
	}
	hid := hex.EncodeToString(id[:])
	v := providers.NewSecret(value)
	cc.values = append(cc.values, v)
	cred := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: v}, Expiry: exp}
	b := custodyBinding(cc.version, cc.destination, cc.workload, hid, func(context.Context) (*providers.Credential, error) { return cred, nil })
	if _, _, err := cc.g.cache.GetBound(cc.ctx, b); err != nil {
		return "", fmt.Errorf("custody: store the value: %w", err)
	}
	return CustodyPrefix + hid, nil
}

// custodyRequest puts the custodied values back into the outbound
// request's header values where their placeholders are, for the
// workload and destination x decided, and adds a Scrubber of each value
// to the response hooks (an upstream echoing the session is scrubbed).
// A placeholder that does not resolve refuses the request (403): it is
// another workload's, expired, or made up, and is never sent upstream.
// Only the header fields x.d.CustodyHeader allows are looked at (Cookie,
// Authorization and the custody blocks' headers:); a placeholder
// anywhere else is left in place, where the tripwire search of
// substitute refuses the request (custodyTripwire).
func (g *Gateway) custodyRequest(x *exchange, out *http.Request, st *reqState) *refusal {
	if x.d.Destination == "" {
		return nil
	}
	var creds []*providers.Credential
	for name, vs := range out.Header {
		if !x.d.CustodyHeader(name) {
			continue
		}
		for i, v := range vs {
			if !strings.Contains(v, CustodyPrefix) {
				continue
			}
			nv, used, f := g.custodySubstitute(x, name, v)
			if f != nil {
				return f
			}
			vs[i] = nv
			creds = append(creds, used...)
		}
	}
	if len(creds) == 0 {
		return nil
	}
	if st.resp == nil {
		st.resp = st.newHooks()
	}
	for _, c := range creds {
		st.resp.addScrubber(g.scrubbers.get(c))
	}
	return nil
}

// custodySubstitute replaces every custody placeholder in one header
// value.
func (g *Gateway) custodySubstitute(x *exchange, header, v string) (string, []*providers.Credential, *refusal) {
	refuse := func(why string) (string, []*providers.Credential, *refusal) {
		f := newRefusal(http.StatusForbidden, codeCustodyUnknown, fmt.Sprintf("header %s carries a custody placeholder that %s; log in again through the gateway to get a new one", header, why), x.d.Rule)
		return "", nil, &f
	}
	var b strings.Builder
	var used []*providers.Credential
	rest := v
	for {
		i := strings.Index(rest, CustodyPrefix)
		if i < 0 {
			break
		}
		b.WriteString(rest[:i])
		rest = rest[i+len(CustodyPrefix):]
		if len(rest) < custodyIDLen || !isLowerHex(rest[:custodyIDLen]) {
			return refuse("is malformed")
		}
		id := rest[:custodyIDLen]
		rest = rest[custodyIDLen:]
		if x.wl.Name == "" {
			return refuse("cannot resolve for an anonymous caller")
		}
		bind := custodyBinding(x.d.CustodyVersion, x.d.Destination, x.wl.Name, id, func(context.Context) (*providers.Credential, error) { return nil, errCustodyUnknown })
		cred, _, err := g.cache.GetBound(x.r.Context(), bind)
		if err != nil {
			// Not remembered as a failure: made-up placeholders must not
			// fill the credential cache.
			g.cache.Invalidate(bind.Key)
			return refuse(fmt.Sprintf("does not resolve for workload %q at destination %q (another workload's, expired, never issued, or issued before a policy reload that changed the destination, the workload or a custody rule to the destination)", x.wl.Name, x.d.Destination))
		}
		tok, _ := cred.Field(providers.FieldToken)
		val := tok.Reveal()
		if strings.ContainsAny(val, "\r\n\x00") {
			return refuse("stands for a value that cannot be put in a header")
		}
		b.WriteString(val)
		used = append(used, cred)
	}
	b.WriteString(rest)
	return b.String(), used, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
