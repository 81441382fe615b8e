package gateway

import (
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/transform"
)

// benchForResponse is what prepareResponse does for a scrubbing rule's
// credential (the code before the pending table).
func benchForResponse(s *scrubbers, cred *providers.Credential) []*transform.Scrubber {
	s.c.getKey(keyOf(cred), cred, newCredScrubber)
	return []*transform.Scrubber{s.every()}
}
