package gateway

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/transform"
)

// codeResponseNotScrubbable answers a response whose body the gateway
// could not scrub (an encoding it cannot decode, or any encoding under
// scrub: {encoded: refuse}): it is not passed on unscrubbed (fail closed).
const codeResponseNotScrubbable = "response_not_scrubbable"

// codeRangeRefused answers a Range request under a rule with
// `ranges: refuse`: its response is scrubbed, and a range of it would be
// a piece of a secret too short for the scrubber to recognise.
const codeRangeRefused = "range_refused"

// publicFields are the credential fields that are identifiers, not
// secrets: they are not scrubbed from responses (an API names its account
// SID or access key ID in URLs it returns; redacting them would break
// the client), and a private key or certificate never goes on the wire.
var publicFields = map[string]bool{
	providers.FieldUsername:    true,
	providers.FieldAccessKeyID: true,
	providers.FieldCertificate: true,
	providers.FieldCAChain:     true,
	providers.FieldPrivateKey:  true,
}

// scrubValues returns the fields of cred a response is scrubbed of.
func scrubValues(cred *providers.Credential) []providers.Secret {
	if cred == nil {
		return nil
	}
	out := make([]providers.Secret, 0, len(cred.Fields))
	for name, v := range cred.Fields {
		if !publicFields[name] && !v.IsZero() {
			out = append(out, v)
		}
	}
	return out
}

// credKey is one credential in a credCache, held weakly, so the cache
// does not keep a dropped credential's values in memory.
type credKey struct {
	cred weak.Pointer[providers.Credential]
}

// credCache caches a value derived from a credential's values, per
// credential: a Scrubber (scrubbers), the audit line's credential_fp. A
// credential the provider cache replaces (a refresh, a reissue) is a new
// pointer and gets a new value; the old entry goes when the old
// credential is collected. A policy reload that changes a credential's
// definition changes its cache key, hence its credential, hence its value.
// Credentials are never modified once cached (providers.Credential).
type credCache[V any] struct {
	mu sync.Mutex
	m  map[credKey]V
	// gen changes whenever the set of cached values does.
	gen uint64
}

// maxCredCache bounds a credCache: beyond it (more live credentials than
// the credential cache holds by default), it starts again empty.
const maxCredCache = 2 * providers.DefaultCacheMaxEntries

// keyOf returns cred's key in a credCache.
func keyOf(cred *providers.Credential) credKey {
	return credKey{cred: weak.Make(cred)}
}

// getKey returns the value of cred, made by derive on first use; k is
// keyOf(cred), made by the caller (a request looks up its credential in
// two caches; weak.Make costs a lock).
func (c *credCache[V]) getKey(k credKey, cred *providers.Credential, derive func(*providers.Credential) V) V {
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = derive(cred)
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[k]; ok {
		return prev
	}
	if c.m == nil || len(c.m) >= maxCredCache {
		c.m = map[credKey]V{}
	}
	c.m[k] = v
	c.gen++
	runtime.AddCleanup(cred, c.drop, k)
	return v
}

func (c *credCache[V]) drop(k credKey) {
	c.mu.Lock()
	if _, ok := c.m[k]; ok {
		delete(c.m, k)
		c.gen++
	}
	c.mu.Unlock()
}

// snapshot returns the cached values and their generation.
func (c *credCache[V]) snapshot() ([]V, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]V, 0, len(c.m))
	for _, v := range c.m {
		out = append(out, v)
	}
	return out, c.gen
}

// len returns the number of cached values (tests).
func (c *credCache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// scrubbers caches a transform.Scrubber per credential value: building
// one derives each value's encoded forms and a search table, which would
// cost more than scrubbing a small response. Every credential the gateway
// injects has one here, whatever its rule's scrub setting, and the
// published scrubTable covers them all: a response of a scrubbing rule
// is scrubbed of every credential the gateway injected and still holds,
// not of its own credential's only (a value the upstream keeps — a
// placeholder substituted into a gist, a header a request-bin keeps —
// comes back wherever the client reads it, through a rule injecting
// another credential or to another destination).
//
// The combined table of many credentials is costly to build (46 ms and
// 10 MB for 1,000: BenchmarkScrubTable), so no request builds it or
// waits for it: a request reads the last published table without a
// lock. A credential new to the gateway is published at once in the
// table's small pending layer (transform.Layer), before any request can
// find it in the cache, and a single background rebuild, which
// coalesces every change that arrives while it builds, folds the
// pending layer and the dropped credentials into the next combined table
// and publishes it atomically. Credentials the provider cache dropped
// stay in the table until that rebuild (scrubbing a value no longer
// held is harmless).
type scrubbers struct {
	c credCache[*transform.Scrubber]

	// table is the published table, read without a lock; live holds
	// its stack as a transform.Table, which a streaming body scrubbed by
	// it follows (it takes up each table published while it streams).
	table atomic.Pointer[scrubTable]
	live  transform.Tables

	// mu serialises the additions of credentials and the publications
	// of tables; no request waits on it for a rebuild (a rebuild holds
	// it only to publish what it built).
	mu sync.Mutex
	// seq numbers the credentials added, in order; pending are those
	// not in the combined table published last (or being built).
	seq     uint64
	pending []pendingScrubber
	// dirty: the set of credentials changed since the snapshot of the
	// last build; building: the rebuild goroutine runs.
	dirty, building bool
}

// pendingScrubber is a credential's Scrubber not yet in the combined
// table, and its number (scrubbers.seq).
type pendingScrubber struct {
	seq uint64
	s   *transform.Scrubber
	// over is transform.Layer(overBase, s): s as it runs after the
	// combined table overBase, kept until another table is published
	// (rewriting the forms through a large table is the cost of an
	// addition; each is rewritten once per table, not once per
	// addition).
	over, overBase *transform.Scrubber
}

// scrubTable is a published table of every held credential: a combined
// table, and the layer of the credentials added since its snapshot. It
// is immutable.
type scrubTable struct {
	base *transform.Scrubber
	// layer scrubs, after base, the pending credentials; nil when none.
	layer *transform.Scrubber
	// pending is how many credentials layer holds.
	pending int
	// live is base and layer as one transform.Table, for bodies that
	// follow scrubbers.live; nil when it could not be built (then a body
	// keeps the table taken when the upstream's answer arrived).
	live *transform.Table
}

// appendTo appends t's Scrubbers to ss, in the order they must run.
func (t *scrubTable) appendTo(ss []*transform.Scrubber) []*transform.Scrubber {
	ss = append(ss, t.base)
	if t.layer != nil {
		ss = append(ss, t.layer)
	}
	return ss
}

// len is how many Scrubbers appendTo appends.
func (t *scrubTable) len() int {
	if t.layer != nil {
		return 2
	}
	return 1
}

// current returns the published table: every credential registered
// before the call returned is in it.
func (s *scrubbers) current() *scrubTable {
	if t := s.table.Load(); t != nil {
		return t
	}
	return &scrubTable{base: transform.Combine()}
}

// register returns the Scrubber of cred's secret fields (k is
// keyOf(cred)), adding it to the published table if it is new. A
// credential is published before it is put in the cache, so whoever
// finds it in the cache finds it in the table.
func (s *scrubbers) register(k credKey, cred *providers.Credential) *transform.Scrubber {
	c := &s.c
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = newCredScrubber(cred)
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	prev, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return prev
	}
	s.seq++
	s.pending = append(s.pending, pendingScrubber{seq: s.seq, s: v})
	s.publishLocked(s.current().base)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCredCache {
		// Beyond the bound the cache starts again empty: the next
		// combined table holds only what is registered from now on (a
		// credential used again is registered again).
		c.m = map[credKey]*transform.Scrubber{}
	}
	c.m[k] = v
	c.gen++
	c.mu.Unlock()
	runtime.AddCleanup(cred, s.dropped, k)
	s.changedLocked()
	return v
}

// dropped runs when a registered credential was collected: the next
// combined table leaves it out.
func (s *scrubbers) dropped(k credKey) {
	s.c.drop(k)
	s.mu.Lock()
	s.changedLocked()
	s.mu.Unlock()
}

// publishLocked publishes base and the pending layer; s.mu is held.
func (s *scrubbers) publishLocked(base *transform.Scrubber) {
	t := &scrubTable{base: base, pending: len(s.pending)}
	if len(s.pending) > 0 {
		ss := make([]*transform.Scrubber, len(s.pending))
		for i := range s.pending {
			p := &s.pending[i]
			if p.overBase != base {
				p.over, p.overBase = transform.Layer(base, p.s), base
			}
			ss[i] = p.over
		}
		// The forms of each, and each as base rewrites it: what
		// transform.Layer(base, every pending Scrubber) holds.
		t.layer = transform.Combine(ss...)
		t.layer.Ready()
	}
	// Every Scrubber here keeps lengths (newCredScrubber), which is all
	// NewTable can fail on.
	if live, err := transform.NewTable(t.base, t.layer); err == nil {
		t.live = live
		// Before table: whoever finds t in table finds it (or a
		// later one) in live.
		s.live.Store(live)
	}
	s.table.Store(t)
}

// changedLocked marks the set changed and starts the rebuild unless it
// runs; s.mu is held.
func (s *scrubbers) changedLocked() {
	s.dirty = true
	if !s.building {
		s.building = true
		go s.rebuild()
	}
}

// rebuild builds combined tables until the set no longer changed while
// one was built, and publishes each: a burst of changes costs one or two
// builds, not one each. It ends when nothing is left to build.
func (s *scrubbers) rebuild() {
	for {
		s.mu.Lock()
		if !s.dirty {
			s.building = false
			s.mu.Unlock()
			return
		}
		s.dirty = false
		// Every credential numbered up to seq is in the cache now (it
		// was put there before mu was released), so in the snapshot
		// unless it was dropped.
		seq := s.seq
		s.mu.Unlock()
		vs, _ := s.c.snapshot()
		base := transform.Combine(vs...)
		base.Ready()
		s.mu.Lock()
		keep := s.pending[:0]
		for _, p := range s.pending {
			if p.seq > seq {
				keep = append(keep, p)
			}
		}
		clear(s.pending[len(keep):])
		s.pending = keep
		s.publishLocked(base)
		s.mu.Unlock()
	}
}

// get returns the Scrubber of cred's secret fields, registering cred.
func (s *scrubbers) get(cred *providers.Credential) *transform.Scrubber {
	return s.register(keyOf(cred), cred)
}

func newCredScrubber(cred *providers.Credential) *transform.Scrubber {
	return transform.NewScrubber(scrubValues(cred), transform.ScrubOptions{KeepLength: true})
}

// len returns the number of cached Scrubbers (tests).
func (s *scrubbers) len() int { return s.c.len() }

// responseHooks is what the gateway does to one upstream response
// (reqState.resp): the Scrubbers of the values injected into its request,
// the custody block that captures values from it, and what they did.
type responseHooks struct {
	rule      string
	scrubbers []*transform.Scrubber
	encoded   policy.Encoded
	counts    []*transform.ScrubCount
	// custody captures values from the response (custody.go).
	custody *custodyCapture
	// captured counts the values custody replaced by placeholders.
	captured int
	// ws counts what was scrubbed from an upgraded connection's frames
	// (wsscrub.go).
	ws *wsHits
	// announced is the body length the upstream announced (-1: none).
	announced int64
	// credScrubbed: the injected credential is scrubbed (a credential
	// the round trip reissued after a 401 is scrubbed too).
	credScrubbed bool
	// informational counts what was scrubbed from relayed 1xx responses.
	informational int64
	// whole: the response must be the whole representation (ranges:
	// whole or refuse); a 206 is refused.
	whole bool
	// rangeRemoved: Range or If-Range was taken off the request (the
	// audit line's "range":"removed").
	rangeRemoved bool
	// every is the table of every held credential whose Scrubbers are
	// scrubbers[everyAt:everyAt+every.len()] (nil: none, the rule does
	// not scrub): transformResponse puts the table published by then in
	// its place.
	every   *scrubTable
	everyAt int
	// scrub1 and count1 hold the first Scrubber and count (the usual
	// case), so that they cost no allocation of their own.
	scrub1 [1]*transform.Scrubber
	count1 [1]*transform.ScrubCount
}

// addScrubber adds s to the Scrubbers of the response.
func (h *responseHooks) addScrubber(s *transform.Scrubber) {
	if h.scrubbers == nil {
		h.scrubbers = h.scrub1[:0:1]
	}
	h.scrubbers = append(h.scrubbers, s)
}

// addEvery adds the Scrubbers of t, the table of every held credential.
func (h *responseHooks) addEvery(t *scrubTable) {
	h.every, h.everyAt = t, len(h.scrubbers)
	h.addScrubber(t.base)
	if t.layer != nil {
		h.addScrubber(t.layer)
	}
}

// refreshEvery puts t in place of the table added by addEvery, when it
// is another: a credential injected by another request while this one
// was on its way to the upstream is scrubbed from its response too.
func (h *responseHooks) refreshEvery(t *scrubTable) {
	old := h.every
	if old == nil || old == t {
		return
	}
	h.scrubbers, h.every = swapEvery(h.scrubbers, h.everyAt, old, t), t
}

// swapEvery returns a new slice of ss with the Scrubbers of t in place
// of those of old at ss[at:at+old.len()]; ss is not modified (it may be
// shared with a reader on another goroutine).
func swapEvery(ss []*transform.Scrubber, at int, old, t *scrubTable) []*transform.Scrubber {
	out := make([]*transform.Scrubber, 0, len(ss)-old.len()+t.len())
	out = append(out, ss[:at]...)
	out = t.appendTo(out)
	return append(out, ss[at+old.len():]...)
}

// scrubbed returns the occurrences redacted so far.
func (h *responseHooks) scrubbed() int64 {
	if h == nil {
		return 0
	}
	var n int64
	for _, c := range h.counts {
		n += c.Count()
	}
	if h.ws != nil {
		n += h.ws.n
	}
	return n + h.informational
}

// scrubInformational redacts the scrubbed values from the fields of a 1xx
// response before it is relayed (relay1xx), counting them. It reports
// false when the 1xx must not be relayed at all: custody replaces values
// of the response by placeholders, which it does for the final response
// only, so a 1xx might carry a value in the clear.
func (h *responseHooks) scrubInformational(fields http.Header) bool {
	if h == nil {
		return true
	}
	if h.custody != nil {
		return false
	}
	for _, s := range h.scrubbers {
		h.informational += int64(s.Header(fields))
	}
	return true
}

// prepareResponse decides, before the round trip, what will be done to
// the response of the request out: scrubbing of the injected credential's
// secret fields (unless the rule opts out) and of custodied values put
// into the request (custody), and capture under the rule's custody
// block. It sets out's Accept-Encoding to what the scrubber can read,
// and applies the rule's ranges setting to a response it transforms
// (prepareRanges); it returns the refusal of a Range request the rule
// refuses.
func (g *Gateway) prepareResponse(x *exchange, cred *providers.Credential, out *http.Request, st *reqState) *refusal {
	d := x.d
	h := st.resp
	if h == nil {
		h = st.newHooks()
	}
	h.rule, h.encoded = d.Rule, policy.EncodedDecode
	if d.Scrub.Encoded != "" {
		h.encoded = d.Scrub.Encoded
	}
	if d.Action == policy.Inject && cred != nil {
		// Known to every scrubbing rule from now on, this one's or not.
		g.scrubbers.register(st.credKey(cred), cred)
		if !d.Scrub.Off {
			h.addEvery(g.scrubbers.current())
			h.credScrubbed = true
		}
	}
	if d.Action == policy.Inject && d.Custody != nil {
		h.custody = g.newCustodyCapture(x)
	}
	if len(h.scrubbers) == 0 && h.custody == nil {
		return nil
	}
	st.resp = h
	if f := prepareRanges(&x.d, out.Header, h); f != nil {
		return f
	}
	if _, ok := out.Header["Upgrade"]; ok {
		wsPrepare(out, st)
	}
	st.ae[0] = "identity"
	if h.encoded == policy.EncodedDecode {
		st.ae[0] = "gzip, deflate, br"
	}
	out.Header["Accept-Encoding"] = st.ae[:1:1]
	// Nor compressed gRPC messages, which the scrubber cannot read
	// either (a compressed one is cut off: transform.ErrGRPCCompressed).
	transform.PrepareGRPCRequest(out.Header)
	return nil
}

// prepareRanges applies the rule's ranges setting to the request header
// of a response the gateway transforms. A response scrubbed in pieces is
// not scrubbed: each piece of a stored secret (a placeholder substituted
// into a body the upstream keeps, a header a request-bin keeps) can be
// shorter than the secret, and the pieces reassemble it. So, unless the
// rule says ranges: pass, the response must be whole: ranges: whole (and
// a decision without a rule's setting: custody values used by a forward
// rule) removes Range and If-Range — RFC 9110 §14.2 lets a server ignore
// Range, and every client must accept the whole representation in a
// 200 — and ranges: refuse refuses a request with Range. Either way a 206
// the upstream sends anyway is refused (transformResponse). header is
// canonical (net/http's servers canonicalise field names, HTTP/1.1 and
// HTTP/2 alike), so a field spelled "range" is found as "Range". Without
// those fields it costs no allocation.
func prepareRanges(d *policy.Decision, header http.Header, h *responseHooks) *refusal {
	mode := d.Ranges
	if d.Action != policy.Inject || mode == "" {
		mode = policy.RangesWhole
	}
	switch mode {
	case policy.RangesPass:
		return nil
	case policy.RangesRefuse:
		if _, ok := header["Range"]; ok {
			f := newRefusal(http.StatusForbidden, codeRangeRefused, fmt.Sprintf("rule %q scrubs its responses and refuses Range requests (ranges: refuse): a range of a response could carry a piece of a secret too short to be recognised; request the whole representation, or set ranges: whole (the gateway drops Range) or ranges: pass on the rule if its clients need ranges and its upstream never returns a stored secret", d.Rule), d.Rule)
			return &f
		}
	}
	h.whole = true
	if _, ok := header["Range"]; ok {
		delete(header, "Range")
		h.rangeRemoved = true
	}
	if _, ok := header["If-Range"]; ok {
		delete(header, "If-Range")
		h.rangeRemoved = true
	}
	return nil
}

// transformResponse applies st's response hooks to resp before its
// headers are copied to the client: custody first (the session values it
// captures become placeholders, and a Scrubber of those values joins the
// others), then each Scrubber. It reports false
// when it answered the client itself (a body that cannot be scrubbed, or
// custody that failed): nothing of resp may reach the client then.
func (g *Gateway) transformResponse(w http.ResponseWriter, resp *http.Response, st *reqState) bool {
	h := st.resp
	if h == nil {
		return true
	}
	fail := func(code, reason string) bool { return g.failResponse(w, resp.Request, st, code, reason) }
	if h.whole && resp.StatusCode == http.StatusPartialContent {
		// The request carried no Range (it was removed, or refused), or
		// a field the gateway does not know asked for a range: a piece
		// is not scrubbed as the whole would be.
		return fail(codeResponseNotScrubbable, fmt.Sprintf("the upstream answered with a part of the representation (206 Partial Content) to a request without Range, and rule %q scrubs whole responses only; the response was not passed on. Request the whole representation (drop the vendor's range field or parameter), or set ranges: pass on the rule if its clients need ranges and its upstream never returns a stored secret", h.rule))
	}
	if h.encoded == policy.EncodedRefuse && encodedBody(resp) {
		return fail(codeResponseNotScrubbable, fmt.Sprintf("the upstream sent an encoded body (Content-Encoding: %s) although it was asked for identity, and rule %q scrubs responses with encoded: refuse; the response was not passed on", quoteToken(strings.Join(resp.Header.Values("Content-Encoding"), ", ")), h.rule))
	}
	h.refreshEvery(g.scrubbers.current())
	if !g.keepInCustody(w, resp, st, false) {
		return false
	}
	if resp.Request != nil && resp.Request.Method == http.MethodHead && len(h.scrubbers) > 0 && resp.Header["Content-Encoding"] != nil {
		// The GET would reach the client decoded, with no length: so
		// does the description of it.
		delete(resp.Header, "Content-Encoding")
		delete(resp.Header, "Content-Length")
	}
	cl := resp.ContentLength
	h.announced = -1
	for i := 0; i < len(h.scrubbers); i++ {
		var c *transform.ScrubCount
		var err error
		if h.every != nil && i == h.everyAt && h.every.live != nil {
			// The table of every held credential, as one stack that
			// takes up each table published while the body streams: a
			// credential injected through another request after this
			// answer arrived is scrubbed from the rest of its body
			// (transform.Table has the cut-over).
			c, err = h.every.live.TransformResponse(resp, &g.scrubbers.live)
			i += h.every.len() - 1
		} else {
			c, err = h.scrubbers[i].TransformResponse(resp)
		}
		if err != nil {
			return fail(codeResponseNotScrubbable, fmt.Sprintf("the upstream sent a body in an encoding the gateway cannot scrub (Content-Encoding: %s); it was not passed on. Ask the upstream for gzip, deflate, br or identity, or set scrub: {encoded: identity} on rule %q", quoteToken(strings.Join(resp.Header.Values("Content-Encoding"), ", ")), h.rule))
		}
		if h.counts == nil {
			h.counts = h.count1[:0:1]
		}
		h.counts = append(h.counts, c)
	}
	h.announced = cl
	return true
}

// failResponse answers the client 502 code for a response of st that
// must not reach it, and reports false (transformResponse's answer).
func (g *Gateway) failResponse(w http.ResponseWriter, r *http.Request, st *reqState, code, reason string) bool {
	f := newRefusal(http.StatusBadGateway, code, reason, st.resp.rule)
	if st.upBody.stalled() {
		// Custody or a decoder read the body before its headers went
		// to the client, and the upstream stalled it: not the body's
		// fault.
		f = g.upstreamIdleRefusal(st.resp.rule)
	}
	st.refusal = &f
	g.metrics.refusals.WithLabelValues(f.Code).Inc()
	f.write(w, r)
	return false
}

// keepInCustody runs st's custody block, if any, on resp: the values it
// names become placeholders (of the Set-Cookie fields only when
// headersOnly: a 101's body is the switched connection), and a Scrubber
// of the values taken joins st's, so that they are scrubbed from every
// other place of the response like an injected credential (they are
// secrets the gateway holds now), the placeholders already in. It
// reports false when it answered the client itself (502
// custody_failed): nothing of resp may reach the client then.
func (g *Gateway) keepInCustody(w http.ResponseWriter, resp *http.Response, st *reqState, headersOnly bool) bool {
	h := st.resp
	if h == nil || h.custody == nil {
		return true
	}
	var n int
	var err error
	if headersOnly {
		n, err = h.custody.captureCookies(resp.Header)
	} else {
		n, err = h.custody.capture(resp)
	}
	if err != nil {
		g.log.Warn("custody: response not passed on", "rule", h.rule, "error", g.logText(st, err))
		return g.failResponse(w, resp.Request, st, codeCustodyFailed, fmt.Sprintf("rule %q keeps values of this response in custody, and the response could not be processed (see the gateway's log line \"custody: response not passed on\"); it was not passed on", h.rule))
	}
	h.captured = n
	if n > 0 {
		g.metrics.response.captured.WithLabelValues(h.rule).Add(float64(n))
	}
	if s := h.custody.scrubber(); s != nil {
		h.addScrubber(s)
	}
	return true
}

// announcedLength is the body length the upstream announced for resp:
// the forwarder's choice between one write with the headers and
// streaming (copyBody) follows it, also when scrubbing made the length
// unknown, so a scrubbed small answer still leaves in one write (and
// net/http's server still gives it an exact Content-Length and its
// Connection handling) instead of being flushed early.
func announcedLength(st *reqState, resp *http.Response) int64 {
	if st != nil && st.resp != nil && resp.ContentLength < 0 {
		return st.resp.announced
	}
	return resp.ContentLength
}

// encodedBody reports whether resp has a body in a content coding.
func encodedBody(resp *http.Response) bool {
	if resp.Body == nil || resp.Body == http.NoBody {
		return false
	}
	for _, v := range resp.Header.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return true
			}
		}
	}
	return false
}

// auditResponse writes what the response hooks did into the audit event
// and the metrics, once the body was copied.
func (g *Gateway) auditResponse(ev *event, st *reqState) {
	h := st.resp
	if h == nil {
		return
	}
	ev.Scrubbed = h.scrubbed()
	ev.Custodied = h.captured
	if h.rangeRemoved {
		ev.Range = "removed"
	}
	if ev.Scrubbed > 0 {
		g.metrics.response.scrubbed.WithLabelValues(h.rule).Add(float64(ev.Scrubbed))
	}
}

// responseMetrics count what the response hooks did.
type responseMetrics struct {
	scrubbed *prometheus.CounterVec
	captured *prometheus.CounterVec
}

func newResponseMetrics(reg prometheus.Registerer) *responseMetrics {
	m := &responseMetrics{
		scrubbed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credgate_response_scrubbed_total",
			Help: "Occurrences of injected secret values (and of custodied values) the gateway redacted from response headers, bodies and trailers, by rule.",
		}, []string{"rule"}),
		captured: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credgate_custody_captured_total",
			Help: "Response values (JSON fields, cookies) a rule's custody block kept on the gateway and replaced by placeholders, by rule.",
		}, []string{"rule"}),
	}
	reg.MustRegister(m.scrubbed, m.captured)
	return m
}

// logText is err's text for a log line about the exchange of st (its
// first transform.MaxPiecesText bytes), with every secret the exchange
// carried redacted — in every form the scrubber knows, and every piece of
// such a form of at least the scrubber's minimum length (a secret cut at
// a space, or at the end of a quoted line): the injected credential's
// secret fields (whatever the rule's scrub setting, which concerns the
// client, not the log), a reissued credential's, those of more, the
// custodied values put into the request, and, whole, every credential
// the gateway holds (the published table: also for an exchange whose
// rule scrubs no response, and for errors of no exchange, st nil, such
// as a background refresh's, whose provider may quote its previous
// credential or another it was handed). The text of an error met on the
// way to the upstream can quote what the upstream sent: Go's HTTP/1.1
// parser quotes a status or header line it cannot read (`malformed HTTP
// response "Bearer sk_..."`, `malformed HTTP status code "..."` up to the
// first space), so an upstream echoing the request there put the
// credential in the log (invariant 4).
//
// Pieces are looked for in the forms of the exchange's own secrets (what
// its request carried, which is what a parser quotes cut short); the
// table of every held credential is applied to whole forms only: its
// matcher is linear in the text, while looking for pieces is linear in
// the text times the forms (about 35,000 for 1,000 held credentials, a
// second of CPU per logged error that a hostile upstream could repeat).
func (g *Gateway) logText(st *reqState, err error, more ...*providers.Credential) string {
	b := []byte(err.Error())
	var own, every []*transform.Scrubber
	if st != nil {
		more = append(more, st.cred, st.reissuedCred)
		if h := st.resp; h != nil {
			own = slices.Clip(h.scrubbers)
			if h.every != nil {
				end := h.everyAt + h.every.len()
				every = h.scrubbers[h.everyAt:end]
				own = append(slices.Clip(h.scrubbers[:h.everyAt]), h.scrubbers[end:]...)
			}
		}
	}
	if every == nil {
		every = g.scrubbers.current().appendTo(nil)
	}
	for _, c := range more {
		if c != nil {
			own = append(own, g.scrubbers.get(c))
		}
	}
	for _, s := range own {
		b, _ = s.Pieces(b)
	}
	for _, s := range every {
		b, _ = s.Bytes(b)
	}
	return string(b)
}
