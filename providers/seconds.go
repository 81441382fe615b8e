package providers

import (
	"math"
	"time"
)

// MaxSeconds is the largest lifetime Seconds returns, in seconds: the cap
// golang.org/x/oauth2 puts on expires_in (about 68 years).
const MaxSeconds = math.MaxInt32

// Seconds returns n seconds (an expires_in, a lease_duration, a ttl from
// a credential endpoint) as a Duration, at most MaxSeconds. Multiplied
// out unchecked, a number above about 9.2e9 overflows time.Duration and
// wraps, often negative: a token the endpoint issued for long would be
// taken as expired before it arrived. A negative n returns 0. Seconds
// only converts: a lifetime a source states is read with LifetimeSeconds,
// which refuses 0 and negative counts (never "no lifetime given").
func Seconds[N ~int | ~int64](n N) time.Duration {
	switch {
	case n <= 0:
		return 0
	case int64(n) > MaxSeconds:
		return MaxSeconds * time.Second
	}
	return time.Duration(n) * time.Second
}
