// Package transform rewrites intercepted requests and responses after the
// policy decision (DESIGN.md invariant 13): placeholders in a request are
// replaced by the secrets the decision binds to its destination, the
// placeholders of other destinations are tripwires that stop the request,
// and injected secrets an upstream echoes are scrubbed from the response
// before the client sees them.
//
// It is a stage beside injectors: the gateway builds a Substituter from the
// decision's bindings and calls TransformRequest (the RequestTransform
// interface) on the outbound request after injection, and builds a
// Scrubber from the injected values and calls TransformResponse (the
// ResponseTransform interface) on the upstream response. It never sees
// tunnelled bytes, and it imports no stage but secret.
//
// Everything streams with bounded memory: a body is read a chunk at a time
// and at most the longest needle minus one byte is held back between
// reads, so a placeholder or secret split across reads is still found. No
// error, report or printed form carries a secret value; placeholders and
// bindings are named by their Name.
package transform
