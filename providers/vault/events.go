package vault

import (
	"context"
	"errors"

	"github.com/credgate/credgate/providers"
)

// Events the clients of this package report to providers.EventObserver
// (the gateway counts them in credgate_provider_events_total), each with
// one of the results below. They are logged too: logins and refusals at
// info, renewals at debug; never a token or secret.
const (
	eventLogin        = "login"         // the first login of a credential's client
	eventRelogin      = "relogin"       // a login replacing a token that could not be renewed, expired or was revoked
	eventTokenRenewal = "token_renewal" // auth/token/renew-self
	eventLeaseRenewal = "lease_renewal" // sys/leases/renew; refused: the secret was dropped
	eventLeaseRevoke  = "lease_revoke"  // revoke_on_cleanup: a lease revoked on cleanup
	eventTokenRevoke  = "token_revoke"  // revoke_on_cleanup: the gateway's token revoked on cleanup

	resultOK      = "ok"      // done
	resultRefused = "refused" // Vault answered no (4xx)
	resultError   = "error"   // Vault unreachable, sealed, 5xx, or the call timed out
)

// report tells the observer about one event.
func (c *Client) report(event, result string) {
	c.env.Events.ProviderEvent(c.name, event, result)
}

// resultOf classifies a failed call for report.
func resultOf(ctx context.Context, err error) string {
	if errors.Is(err, providers.ErrUnavailable) {
		return resultError
	}
	switch classify(ctx, err) {
	case kindPermanent, kindForbidden:
		return resultRefused
	}
	return resultError
}
