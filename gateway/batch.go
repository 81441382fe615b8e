package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credgate/credgate/internal/batch"
	"github.com/credgate/credgate/internal/canonical"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/transform"
)

// Request-in-request endpoints (docs/security.md): a batch endpoint
// (internal/batch.Lookup: Microsoft Graph's and OData's $batch,
// Salesforce's composite resources, Google's /batch) runs every
// sub-request of its body as a request of its own, with the credential
// the batch carries. A rule whose paths admit the batch endpoint (a broad
// glob) would hand its caller every request the credential can make. So
// the gateway reads the body of a request an inject rule admits to such an
// endpoint (bounded: batch.MaxBody after decoding), judges each
// sub-request as a top-level request from the same caller to the same
// destination — the same canonical method and path checks
// (prepareRequest), the same Decide — and forwards the batch unchanged
// only when the rule that admitted it admits every one: the batch carries
// that rule's credential. The rule's allow_batch lets any through.

// Refusal codes of batches.
const (
	// codeBatchNotAllowed: a sub-request of a batch is not admitted by the
	// rule that admitted the batch (or cannot be judged: another host, a
	// reference to another sub-request's result, a nested batch,
	// Salesforce's record collections), and the rule does not set
	// allow_batch; 403.
	codeBatchNotAllowed = "batch_request_not_allowed"
	// codeBadBatch: the body of a request to a batch endpoint does not
	// parse as the endpoint's format, has more sub-requests than the
	// endpoint takes, or has a content coding the gateway cannot
	// decode; 400.
	codeBadBatch = "bad_batch"
)

// batchVerdict is what judgeBatch found.
type batchVerdict struct {
	// judged is the number of sub-requests judged (0: not a batch, or
	// one without a body).
	judged int
	// refusal, when set, is the answer: the batch is not forwarded.
	refusal *refusal
	// observe, when set, is observe mode's decision for a batch whose
	// refused sub-requests the policy would let through as would_deny:
	// the batch goes on without the credential (Forward, WouldDeny).
	observe *policy.Decision
	// expectRead: the body was read, so the client's Expect:
	// 100-continue is answered (by the server) and not forwarded.
	expectRead bool
	// held is the bytes of the batch budget (Gateway.batchBuf) the body
	// holds while the request lasts: the caller gives them back when it
	// ends, whatever the verdict.
	held int
}

// judgeBatch judges the sub-requests of x's request, admitted by a (an
// inject rule without allow_batch) with query q, when it is sent to a
// batch endpoint. The body is read whole (at most batch.MaxBody, decoded)
// and put back as it came: what the upstream receives is what was judged.
// One whose Content-Length is over batch.MaxBody is refused unread.
func (g *Gateway) judgeBatch(x *exchange, a admission, q policy.Query, cp canonical.Path, ib *idleBody) batchVerdict {
	r, d := x.r, a.d
	ep, ok := endpointOf(d, x.dest.host, cp.Decoded, r.Header.Get("Content-Type"))
	if !ok {
		return batchVerdict{}
	}
	var held int // of g.batchBuf, given back by the caller (batchVerdict.held)
	refused := func(status int, code, reason string) batchVerdict {
		f := newRefusal(status, code, reason, d.Rule)
		return batchVerdict{refusal: &f, held: held}
	}
	if f := recordsRefusal(ep, d); f != nil {
		return batchVerdict{refusal: f}
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return batchVerdict{} // nothing for the service to run
	}
	if r.ContentLength > batch.MaxBody {
		// Its length says it is larger than the most read: refused from
		// that alone, before a byte of it is read (an Expect:
		// 100-continue client sends none) or room is taken for it. A body
		// of unknown length (chunked) is read up to the bound below.
		f := batchTooLarge(ep, d)
		return batchVerdict{refusal: &f}
	}
	// The body is held for the request's life (forwarded from memory):
	// its room in the gateway-wide budget first, as much as it says it
	// has (the most read when it does not say).
	want := batch.MaxBody
	if r.ContentLength > 0 && r.ContentLength < batch.MaxBody {
		want = int(r.ContentLength)
	}
	if !g.batchBuf.take(want) {
		return g.batchFull(ep, d)
	}
	held = want
	raw, err := io.ReadAll(io.LimitReader(r.Body, batch.MaxBody+1))
	_ = r.Body.Close()
	if err != nil {
		if ib.cutOff() {
			return refused(http.StatusRequestTimeout, codeBodyTimeout, "the client stalled the body of the batch (no byte for limits.body_idle_timeout); the batch was not forwarded")
		}
		if f, failed := clientBodyRefusal(&x.in, ib, "the batch was not forwarded", d.Rule); failed {
			return batchVerdict{refusal: &f, held: held}
		}
		return refused(http.StatusBadRequest, codeBadRequest, "the body of the batch could not be read; the batch was not forwarded")
	}
	if len(raw) < held {
		// Shorter than it said, or than the most: what it holds.
		g.batchBuf.give(held - len(raw))
		held = len(raw)
	}
	if len(raw) <= batch.MaxBody {
		// Put back as it came: forwarded unchanged, with its length known.
		r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(raw)), int64(len(raw)), nil
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	}
	if len(r.Header.Values("Content-Encoding")) > 0 && len(raw) <= batch.MaxBody {
		// Decoded, it is held a second time while it is judged.
		if !g.batchBuf.take(batch.MaxBody) {
			bv := g.batchFull(ep, d)
			bv.held = held
			return bv
		}
		defer g.batchBuf.give(batch.MaxBody)
	}
	v, _ := g.judgeBatchBody(batchBody{a: a, q: q, ep: ep, dest: x.dest, scheme: x.scheme, rawPath: cp.Raw, header: r.Header, raw: raw}, false)
	v.held, v.expectRead = held, true
	return v
}

// batchBody is a batch's body and what judging it needs: the admission
// of its request (a), its query, its endpoint and where it goes.
type batchBody struct {
	a       admission
	q       policy.Query
	ep      batch.Endpoint
	dest    target
	scheme  string
	rawPath string // the batch request's canonical path as sent
	header  http.Header
	raw     []byte // as sent, before any content coding is decoded
}

// SubVerdict is the verdict on one target of one sub-request of a batch
// (Explanation.Batch): what the gateway decided for it as a request of
// its own.
type SubVerdict struct {
	// Index is the sub-request's position in the batch, from 0.
	Index int
	// Method and Target are the sub-request's method and request target
	// as the service resolves it (clipped to 256 bytes).
	Method, Target string
	// Rule is the rule whose decision admitted it ("" when none did).
	Rule string
	// Refused is why the batch's rule does not admit it ("" when it
	// does); WouldDeny, when observe mode would let it through on its
	// own without a credential.
	Refused   string
	WouldDeny bool
}

// judgeBatchBody judges b's sub-requests, after the checks of the body
// as sent (its size) and its decoding: the part of judging a batch that
// needs no connection, so that serve (judgeBatch) and explain
// (Judge.Explain) decide with the same code. It returns the verdict —
// the refusal of the first sub-request the batch's rule does not admit,
// or observe mode's decision — and, with all, the verdict on every
// target of every sub-request (serve stops at the first refused one).
func (g *Gateway) judgeBatchBody(b batchBody, all bool) (batchVerdict, []SubVerdict) {
	d, ep := b.a.d, b.ep
	if len(b.raw) > batch.MaxBody {
		f := batchTooLarge(ep, d)
		return batchVerdict{refusal: &f}, nil
	}
	body, f := decodedBatch(b.header, b.raw, d.Rule)
	if f != nil {
		return batchVerdict{refusal: f}, nil
	}
	fix := batchFix(d)
	subs, err := batch.Parse(ep, batch.Request{Host: b.dest.host, Port: b.dest.port, Scheme: b.scheme, RawPath: b.rawPath, ContentType: b.header.Get("Content-Type"), Body: body})
	if err != nil {
		return batchParseRefusal(ep, d, err, fix), nil
	}
	v := batchVerdict{judged: len(subs)}
	var verdicts []SubVerdict
	var would *policy.Decision
	for _, s := range subs {
		for _, target := range s.Targets {
			sd, why := g.judgeSub(b.a, b.q, s, target)
			// Clipped: a method or path of the body could be as long as it.
			path, method, why := clip(canonical.TargetPath(target), 256), clip(s.Method, 256), clip(why, 1024)
			if all {
				verdicts = append(verdicts, SubVerdict{Index: s.Index, Method: method, Target: clip(target, 256), Rule: sd.Rule, Refused: why, WouldDeny: sd.WouldDeny && why != ""})
			}
			if why == "" {
				continue
			}
			if sd.WouldDeny {
				// Observe mode would let this request through on its own,
				// without a credential: so goes the batch.
				if would == nil {
					would = &policy.Decision{Action: policy.Forward, WouldDeny: true, Rule: d.Rule, Destination: d.Destination,
						Code: codeBatchNotAllowed, AllowPrivate: d.AllowPrivate, WorkloadLimit: d.WorkloadLimit,
						Reason: fmt.Sprintf("sub-request %d (%s %s) of the batch %s; observe mode lets the batch through without a credential", s.Index, method, path, why)}
				}
				continue
			}
			if v.refusal == nil {
				f := newRefusal(http.StatusForbidden, codeBatchNotAllowed,
					fmt.Sprintf("sub-request %d (%s %s) of the batch to the %s endpoint %s; the service would run it with credential %q of rule %q, which admitted the batch, so the batch was not forwarded: %s",
						s.Index, method, path, ep.Service, why, d.Inject.Credential, d.Rule, fix), d.Rule)
				v.refusal = &f
			}
			if !all {
				return v, nil
			}
		}
	}
	if v.refusal == nil {
		v.observe = would
	}
	return v, verdicts
}

// batchTooLarge is the refusal of a batch to ep, admitted with decision
// d, whose body is larger than batch.MaxBody: by its declared length
// (judgeBatch) or by what was read (judgeBatchBody), the same answer.
func batchTooLarge(ep batch.Endpoint, d policy.Decision) refusal {
	return newRefusal(http.StatusRequestEntityTooLarge, codeBodyTooLarge,
		fmt.Sprintf("the body of the batch to the %s endpoint is larger than %d bytes, the most the gateway reads to judge its sub-requests; the batch was not forwarded: send smaller batches", ep.Service, batch.MaxBody), d.Rule)
}

// batchFix is what a batch refusal tells the caller to do.
func batchFix(d policy.Decision) string {
	return fmt.Sprintf("send each request on its own, or, to let rule %q pass any batch, set allow_batch: true in its inject block (which hands its callers every request credential %q can make)", d.Rule, d.Inject.Credential)
}

// recordsRefusal is the refusal of a request to one of Salesforce's
// record collections (batch.SalesforceRecords), nil for another endpoint.
func recordsRefusal(ep batch.Endpoint, d policy.Decision) *refusal {
	if ep.Format != batch.SalesforceRecords {
		return nil
	}
	f := newRefusal(http.StatusForbidden, codeBatchNotAllowed,
		fmt.Sprintf("the request goes to the %s endpoint, whose records name the objects it creates, updates or deletes with credential %q, not requests the policy can judge; the batch was not forwarded: %s", ep.Service, d.Inject.Credential, batchFix(d)), d.Rule)
	return &f
}

// judgesBatch reports whether a request with query q and decision d goes
// to a batch endpoint whose sub-requests judgeBatch judges: an inject
// rule without allow_batch, to an endpoint of the table or of the rule's
// batch setting.
func judgesBatch(q policy.Query, d policy.Decision) bool {
	if q.Connect || d.Action != policy.Inject || d.Inject.AllowBatch {
		return false
	}
	_, ok := endpointOf(d, q.Host, q.Path, q.Header.Get("Content-Type"))
	return ok
}

// chargeBatch charges the rate limits of a batch admitted by a, whose
// judged sub-requests the service runs as requests of their own: each
// is charged to the limits it would be charged to sent alone — those of
// the rule that admitted the batch, which admits every one (judgeSub),
// and of the workload — all at once or none, before the credential is
// fetched, so a refused batch sends and charges nothing. A batch without
// sub-requests (no body) counts as one request. admit charged nothing
// for it (admission.perSub).
func (g *Gateway) chargeBatch(ctx context.Context, a admission, judged int) (refusal, bool) {
	if !a.perSub {
		return refusal{}, true
	}
	return g.rateLimit(ctx, a.wl, a.d, max(1, judged))
}

// codeBatchCapacity: the gateway holds as many bytes of batch bodies as
// limits.batch_buffer_bytes allows, so a batch whose body it would have
// to read to judge is not read; 503 with Retry-After.
const codeBatchCapacity = "batch_capacity"

// batchBudget bounds the bytes of batch bodies held at once over all
// requests (limits.batch_buffer_bytes): each request to a batch endpoint
// buffers its body (up to batch.MaxBody) for its whole life, and its
// decoded form while it is judged, so without a bound N concurrent
// batches hold N MiB. It is a semaphore by bytes that never waits: a
// batch it has no room for is refused at once (batchFull), before its
// body is read. Safe for concurrent use; max 0 is no bound.
type batchBudget struct {
	max int // 0: no bound
	// gauge, if set, shows used (credgate_batch_buffer_bytes).
	gauge prometheus.Gauge
	mu    sync.Mutex
	// used is the bytes taken and not given back.
	used int
}

// take reserves n bytes, reporting whether they fit.
func (b *batchBudget) take(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.max > 0 && b.used+n > b.max {
		return false
	}
	b.used += n
	b.show()
	return true
}

// give returns n bytes taken before.
func (b *batchBudget) give(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.show()
}

// show sets the gauge; b.mu is held.
func (b *batchBudget) show() {
	if b.gauge != nil {
		b.gauge.Set(float64(b.used))
	}
}

// batchFull is the refusal of a batch the budget has no room for.
func (g *Gateway) batchFull(ep batch.Endpoint, d policy.Decision) batchVerdict {
	f := newRefusal(http.StatusServiceUnavailable, codeBatchCapacity,
		fmt.Sprintf("the gateway holds as many batch bodies as limits.batch_buffer_bytes (%d bytes) allows, reading each to judge its sub-requests; the batch to the %s endpoint was not read or forwarded; retry after 1s", g.batchBuf.max, ep.Service), d.Rule)
	f.RetryAfter = 1
	return batchVerdict{refusal: &f}
}

// clip shortens s, a method or path of a batch's body or a sentence
// naming them, to most bytes for a refusal's reason.
func clip(s string, most int) string {
	if len(s) <= most {
		return s
	}
	return s[:most] + "..."
}

// judgeSub judges one target of sub-request s as a top-level request of
// the batch's caller to its destination: the same canonical checks
// (prepareRequest), the same decision, the same destination checks. It
// returns "" when the rule that admitted the batch (a.d) admits it, else
// why not, with the decision it got.
func (g *Gateway) judgeSub(a admission, q policy.Query, s batch.Sub, target string) (policy.Decision, string) {
	d := a.d
	u, err := url.ParseRequestURI(target)
	if err != nil || !strings.HasPrefix(target, "/") {
		return policy.Decision{}, "has a url that is not a request target the service can be sent"
	}
	h := s.Header
	if h == nil {
		h = http.Header{}
	}
	sr := &http.Request{Method: s.Method, URL: u, RequestURI: target, Header: h, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: q.Host}
	scp, _, f := g.prepareRequest(sr)
	if f != nil {
		return policy.Decision{}, "is refused as a request of its own (" + f.Code + ": " + f.Reason + ")"
	}
	// batch.Parse refused a Host field naming another host; as on a
	// top-level request (hostFields), no condition sees one.
	delete(sr.Header, "Host")
	sq := q
	sq.Workload, sq.Method, sq.Path, sq.Header, sq.NoAllowReason = a.wl, sr.Method, scp.Decoded, sr.Header, false
	sd := a.pol.Decide(sq)
	switch {
	case sd.Action != policy.Inject && sd.Action != policy.Forward:
		return sd, "is not admitted: " + sd.Reason
	case sd.WouldDeny:
		return sd, "would be refused: " + sd.Reason
	case sd.Action != policy.Inject || sd.Rule != d.Rule:
		return policy.Decision{}, fmt.Sprintf("is admitted by rule %q, not by rule %q", sd.Rule, d.Rule)
	}
	if f := encodedSlashRefusal(scp, sd); f != nil {
		return policy.Decision{}, "is refused as a request of its own (" + f.Code + ": " + f.Reason + ")"
	}
	if !sd.Inject.AllowCopySource {
		if name, ok := canonical.SourceField(sr.Header); ok {
			return policy.Decision{}, "names a second object in " + name + ", which rule " + fmt.Sprintf("%q", d.Rule) + " does not allow (allow_copy_source)"
		}
	}
	if _, nested := endpointOf(sd, q.Host, scp.Decoded, sr.Header.Get("Content-Type")); nested {
		return policy.Decision{}, "is itself a batch, whose sub-requests the gateway does not read"
	}
	return sd, ""
}

// endpointOf is the batch endpoint a request to host with the decoded
// path names under decision d: the gateway's table (batch.Lookup), else
// the paths the inject rule's batch setting marks.
func endpointOf(d policy.Decision, host, path, contentType string) (batch.Endpoint, bool) {
	if ep, ok := batch.Lookup(host, path, contentType); ok {
		return ep, true
	}
	if d.Action == policy.Inject && d.Inject.Batch.Matches(path) {
		return batch.Endpoint{Format: batch.Format(d.Inject.Batch.Format), Service: fmt.Sprintf("rule %q's batch (%s)", d.Rule, d.Inject.Batch.Format), Max: 1000}, true
	}
	return batch.Endpoint{}, false
}

// decodedBatch returns the body of a batch whose header is h, decoded
// from its content codings (transform.DecodeResponse: gzip, deflate, br;
// bounded to batch.MaxBody), or the refusal of one it cannot read.
func decodedBatch(h http.Header, raw []byte, rule string) ([]byte, *refusal) {
	if len(h.Values("Content-Encoding")) == 0 {
		return raw, nil
	}
	refused := func(status int, code, reason string) ([]byte, *refusal) {
		f := newRefusal(status, code, reason+"; the batch was not forwarded", rule)
		return nil, &f
	}
	resp := &http.Response{Header: http.Header{"Content-Encoding": h.Values("Content-Encoding")}, Body: io.NopCloser(bytes.NewReader(raw))}
	if err := transform.DecodeResponse(resp); err != nil {
		return refused(http.StatusBadRequest, codeBadBatch, "the body of the batch has a content coding the gateway cannot decode to judge its sub-requests (it decodes gzip, deflate and br); send it uncompressed")
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, batch.MaxBody+1))
	if err != nil {
		return refused(http.StatusBadRequest, codeBadBatch, "the body of the batch does not decode as its Content-Encoding says; send it uncompressed")
	}
	if len(b) > batch.MaxBody {
		return refused(http.StatusRequestEntityTooLarge, codeBodyTooLarge, fmt.Sprintf("the body of the batch decodes to more than %d bytes, the most the gateway reads to judge its sub-requests: send smaller batches", batch.MaxBody))
	}
	return b, nil
}

// batchParseRefusal is the refusal of a batch whose body batch.Parse
// refused.
func batchParseRefusal(ep batch.Endpoint, d policy.Decision, err error, fix string) batchVerdict {
	which := "the batch"
	var be *batch.Error
	if errors.As(err, &be) && be.Index >= 0 {
		which = fmt.Sprintf("sub-request %d of the batch", be.Index)
	}
	status, code := http.StatusForbidden, codeBatchNotAllowed
	tail := fix
	if errors.Is(err, batch.ErrMalformed) || errors.Is(err, batch.ErrTooMany) {
		status, code = http.StatusBadRequest, codeBadBatch
		tail = fmt.Sprintf("send a body of the %s endpoint's format (at most %d sub-requests)", ep.Service, ep.Max)
	}
	f := newRefusal(status, code, fmt.Sprintf("%s to the %s endpoint: %s; the batch was not forwarded: %s", which, ep.Service, err.Error(), tail), d.Rule)
	return batchVerdict{refusal: &f}
}
