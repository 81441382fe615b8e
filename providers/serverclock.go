package providers

import (
	"net/http"
	"time"
)

// ServerExpiry returns the instant on the gateway's clock at which a
// credential expires that a service said expires at expiry, an instant
// on the service's own clock (STS's Expiration, GitHub's expires_at,
// Google's expireTime or an ID token's exp), in an answer dated date (its
// Date header, read by AnswerDate; zero when it had none) to a request
// sent at sent (the gateway's clock).
//
// The service, and the APIs that take its credentials, judge the
// credential on the service's clock, not the gateway's. Taken as it is,
// an expiry is wrong by the difference of the clocks: a gateway whose
// clock is behind keeps a credential past its end (the upstream refuses
// it while the cache still serves it), one whose clock is ahead by more
// than the lifetime takes every credential for expired on arrival and
// never gets a usable one. So the lifetime the answer states, expiry
// minus date, is counted from sent, less a second for the Date header's
// resolution: never later than the service's end, whatever either clock
// says. An answer without a date keeps expiry as it is (HTTP origins
// with a clock must send Date, RFC 9110 §6.6.1).
func ServerExpiry(expiry, date, sent time.Time) time.Time {
	if expiry.IsZero() || date.IsZero() {
		return expiry
	}
	return sent.Add(expiry.Sub(date) - time.Second)
}

// AnswerDate reads an answer's Date header; zero when there is none or it
// does not parse.
func AnswerDate(h http.Header) time.Time {
	d, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return d
}
