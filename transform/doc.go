// Package transform rewrites intercepted requests and responses after the
// policy decision (DESIGN.md invariant 13): placeholders in a request are
// replaced by the secrets the decision binds to its destination, the
// placeholders of other destinations are tripwires that stop the request,
// and injected secrets an upstream echoes are scrubbed from the response
// before the client sees them.
//
// It is a stage beside injectors: the gateway builds a Substituter from the
// decision's bindings and calls TransformRequest (the RequestTransform
// interface) on the outbound request before the injector acts (so that a
// signing injector signs the request as sent), and builds a
// Scrubber from the injected values and calls TransformResponse (the
// ResponseTransform interface) on the upstream response. It never sees
// tunnelled bytes, and it imports no stage but secret.
//
// The response side is wired (gateway/scrub.go: one Scrubber per
// credential value, KeepLength, TransformResponse right after the round
// trip, ScrubCount in the audit line), and the request side
// (gateway/placeholder.go): before
// injectors.Apply, call Substituter.TransformRequest on the outbound
// request (a MisuseError is 403 placeholder_misuse, ErrPlaceholderMissing
// a refusal of require_placeholder; the same errors can come back from
// the round trip when a long body streams) and Scrubber.PrepareRequest;
// right after the round trip, call Scrubber.TransformResponse once
// (ErrUnsupportedEncoding is a 502) and audit ScrubCount.Count after the
// body and trailers were copied. Both are immutable: build them once per
// rule and credential (each holds a 16 KiB search table per encoding) and
// share them between requests. The gateway's table of every credential
// it holds is a Table (a combined Scrubber and the layer of credentials
// added since), published in a Tables: a body scrubbed by it takes up a
// table published while it streams, at the cut-over Table documents.
//
// Everything streams with bounded memory: a body is read a chunk at a time
// and at most the longest needle minus one byte is held back between
// reads, so a placeholder or secret split across reads is still found. No
// error, report or printed form carries a secret value; placeholders and
// bindings are named by their Name.
package transform
