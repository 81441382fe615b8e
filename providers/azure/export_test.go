package azure

import (
	"time"

	"github.com/credgate/credgate/providers"
)

// SetRetryBase shortens p's backoff between retries, so that tests of
// the retry classes do not wait seconds.
func SetRetryBase(p providers.Provider, d time.Duration) { p.(*Provider).retryBase = d }
