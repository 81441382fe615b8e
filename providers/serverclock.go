package providers

import (
	"log/slog"
	"net/http"
	"time"
)

// MaxDateLag is how far an answer's Date header may be behind the
// gateway's clock for ServerExpiry to count the credential's lifetime
// from it. A Date further behind would stretch the credential's life on
// the gateway's clock by as much (the gateway would serve it that long
// past the end the service stated), so it is not trusted: the expiry is
// taken as stated, and the log says so. A Date ahead of the gateway's
// clock only shortens the life, and is always applied.
const MaxDateLag = 5 * time.Minute

// ServerExpiry returns the instant on the gateway's clock at which a
// credential expires that a service said expires at expiry, an instant
// on the service's own clock (STS's Expiration, GitHub's expires_at,
// Google's expireTime or an ID token's exp, a Vault PKI certificate's
// NotAfter), in an answer dated date (its Date header, read by
// AnswerDate; zero when it had none) to a request sent at sent (the
// gateway's clock). what names the credential's source in the log line
// (a provider and its endpoint; log nil: no line).
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
// with a clock must send Date, RFC 9110 §6.6.1), and so does one whose
// Date is more than MaxDateLag behind sent, logged as a clock to check:
// the correction is bounded, a far-past Date does not stretch a
// credential's life.
func ServerExpiry(log *slog.Logger, what string, expiry, date, sent time.Time) time.Time {
	if expiry.IsZero() || date.IsZero() {
		return expiry
	}
	if lag := sent.Sub(date); lag > MaxDateLag {
		if log != nil {
			log.Warn("credential source's clock is behind the gateway's by more than it is trusted for: its expiry is taken as stated; check both clocks (NTP)",
				slog.String("source", what), slog.Duration("behind", lag.Round(time.Second)), slog.Duration("trusted_up_to", MaxDateLag),
				slog.Time("expiry", expiry.UTC()), slog.Time("date", date.UTC()))
		}
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
