package gateway

import (
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/transform"
)

// benchForResponse is what prepareResponse does for a scrubbing rule's
// credential: register it, take the published table's Scrubbers.
func benchForResponse(s *scrubbers, cred *providers.Credential) []*transform.Scrubber {
	s.register(keyOf(cred), cred)
	return s.current().appendTo(nil)
}

// tablePrepare is what prepareResponse does for a scrubbing rule: it
// registers the request's credential and chooses the response's
// Scrubbers.
func tablePrepare(s *scrubbers, cred *providers.Credential) *responseHooks {
	h := &responseHooks{}
	s.register(keyOf(cred), cred)
	h.addEvery(s.current())
	return h
}

// tableTransform is what transformResponse does first with the
// Scrubbers chosen by tablePrepare, once the upstream answered.
func tableTransform(s *scrubbers, h *responseHooks) []*transform.Scrubber {
	h.refreshEvery(s.current())
	return h.scrubbers
}
