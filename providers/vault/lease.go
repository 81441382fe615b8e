package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credgate/credgate/providers"
)

// Errors a lease's context ends with (context.Cause of its credentials'
// Revoked), besides those of its parent token (errTokenRevoked, ...).
var (
	errLeaseExpired = errors.New("the lease expired")
	errLeaseRevoked = errors.New("the lease was revoked on cleanup")
)

// lease is one dynamic secret a provider handed out. Fields other than
// the immutable ones are guarded by leases.mu.
//
// A lease is the child of the token that read it (parent): Vault revokes
// it when that token is revoked or expires, whatever the lease's own TTL.
// Its credentials therefore expire no later than the parent token, and a
// lease whose parent is no longer the client's current token is replaced
// by a fresh read instead of being handed out again.
//
// Vault does not tell its clients that a lease was revoked (an operator's
// `lease revoke`, a revoked parent token): a lease is confirmed by
// renewing it, and its credentials expire at the end of each renewal
// interval (two thirds of the lease duration after the last confirmation)
// so that the cache's refresh renews it. A refused renewal withdraws the
// credentials at once. So a secret Vault revoked is handed out for at
// most one renewal interval, and not at all once the gateway learnt of it.
type lease struct {
	id     string
	path   string // the path it was read from; also its scope
	fields map[string]providers.Secret
	orig   time.Duration // lease_duration when issued
	parent *tokenLine    // the token that read it
	// ctx is done when the lease is known to be invalid; it is the
	// Revoked of every credential handed out for it.
	ctx    context.Context
	cancel context.CancelCauseFunc

	expires   time.Time // the lease's end, from its issue or last renewal
	renewable bool
	checkBy   time.Time // end of the renewal interval: confirmed + 2/3 of the duration
	renewAt   time.Time // from here on, handing it out renews it first
}

// confirmed records that Vault vouched for l at base with a duration of
// d. ls.mu is held (or l is not shared yet).
func (l *lease) confirmed(base time.Time, d time.Duration) {
	l.expires = base.Add(d)
	interval := d * 2 / 3
	l.checkBy = base.Add(interval)
	// The cache refreshes a credential at most a third of its lifetime
	// before its expiry (checkBy), so every refresh falls after renewAt.
	l.renewAt = l.checkBy.Add(-interval / 3)
}

// parentExpiry returns when l's parent token dies, or l's own end when
// the token does not expire.
func (l *lease) parentExpiry() time.Time {
	if p := l.parent.expiry(); !p.IsZero() {
		return p
	}
	return l.expires
}

// credential returns the lease's credential: it expires at the end of the
// renewal interval, the lease's end or its parent token's death,
// whichever comes first. ls.mu is held.
func (l *lease) credential() *providers.Credential {
	exp := earliest(earliest(l.expires, l.checkBy), l.parentExpiry())
	return &providers.Credential{Fields: l.fields, Expiry: exp, Revoked: l.ctx}
}

// earliest returns the earlier of a and b.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// end stops tracking l's validity: its credentials are withdrawn with
// cause.
func (l *lease) end(cause error) { l.cancel(cause) }

// leases tracks the dynamic secrets of one provider: it hands the same
// secret back to Fetch while Vault still vouches for it, renews it when
// the cache refreshes it, replaces it before its parent token dies, and
// revokes what is left on close when asked to. It starts no goroutine:
// the cache's refresh ahead of expiry drives the renewals, so a lease
// nobody uses is not renewed and expires.
type leases struct {
	c     *Client
	clock clock
	renew bool // renew leases (false: track them only for revocation)

	mu      sync.Mutex
	current map[string]*lease // by path
	retired []*lease          // replaced but possibly unexpired
}

func newLeases(c *Client, clk clock, renew bool) *leases {
	return &leases{c: c, clock: clk, renew: renew, current: map[string]*lease{}}
}

// reuse returns the credential of the lease held for path while Vault
// still vouches for it, renewing it first once its renewal interval is
// nearly over. It returns nil when a fresh secret must be read: there is
// none, it was revoked, its parent token was replaced, or it could not be
// renewed. The lease is then retired (kept for revocation until it
// expires).
func (ls *leases) reuse(ctx context.Context, path string) *providers.Credential {
	ls.mu.Lock()
	l := ls.current[path]
	if l == nil {
		ls.mu.Unlock()
		return nil
	}
	now := ls.clock.Now()
	switch {
	case l.ctx.Err() != nil || !now.Before(l.expires) || !now.Before(l.parentExpiry()):
		ls.retireLocked(path, l)
		ls.mu.Unlock()
		return nil
	case l.parent != ls.c.currentLine():
		// The gateway logged in again: the old token is no longer
		// renewed and takes the lease with it when it dies.
		ls.retireLocked(path, l)
		ls.mu.Unlock()
		ls.c.env.Log.Debug("vault: the token that read this secret was replaced; reading it again", slog.String("path", path))
		return nil
	case now.Before(l.renewAt):
		cred := l.credential()
		ls.mu.Unlock()
		return cred
	case !l.renewable || !ls.renew:
		ls.retireLocked(path, l)
		ls.mu.Unlock()
		return nil
	}
	ls.mu.Unlock()

	err := ls.renewOne(ctx, l)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.current[path] != l {
		return nil
	}
	now = ls.clock.Now()
	switch {
	case err == nil && l.expires.Sub(now) > l.orig/3:
		return l.credential()
	case err != nil && errors.Is(err, providers.ErrUnavailable) && l.ctx.Err() == nil && now.Before(l.expires):
		// Vault cannot be asked now (and cannot be revoking much
		// either): keep handing the lease out until its end, and ask
		// again soon.
		l.checkBy = earliest(l.expires, now.Add(max(min(l.expires.Sub(now)/3, 30*time.Second), time.Second)))
		l.renewAt = now
		return l.credential()
	}
	// Refused (already withdrawn by renewOne), or the max TTL is near.
	ls.retireLocked(path, l)
	return nil
}

// retireLocked moves the lease for path out of current. ls.mu is held.
func (ls *leases) retireLocked(path string, l *lease) {
	if ls.current[path] == l {
		delete(ls.current, path)
		ls.retired = append(ls.retired, l)
	}
}

// add tracks the lease of a secret read from path with token tok, the
// request sent at sent, and returns its credential.
func (ls *leases) add(path string, sec *api.Secret, fields map[string]providers.Secret, tok *token, sent time.Time) *providers.Credential {
	d := providers.Seconds(sec.LeaseDuration)
	l := &lease{id: sec.LeaseID, path: path, fields: fields, orig: d, parent: tok.line, renewable: sec.Renewable}
	l.ctx, l.cancel = context.WithCancelCause(tok.line.ctx)
	l.confirmed(sent, d)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.pruneLocked(ls.clock.Now())
	if old := ls.current[path]; old != nil {
		ls.retired = append(ls.retired, old)
	}
	ls.current[path] = l
	return l.credential()
}

// track remembers a lease that is not renewed, for revocation on close
// (certificates from a PKI role with generate_lease), read with token tok,
// the request sent at sent. It returns when its parent token dies (zero:
// never, as far as known) and the context that is done when the lease is
// known to be revoked, for the credential built from it. (The lease's own
// end is the certificate's NotAfter: no earlier bound.)
func (ls *leases) track(path string, sec *api.Secret, tok *token, sent time.Time) (time.Time, context.Context) {
	d := providers.Seconds(sec.LeaseDuration)
	l := &lease{id: sec.LeaseID, path: path, orig: d, parent: tok.line, expires: sent.Add(d)}
	l.ctx, l.cancel = context.WithCancelCause(tok.line.ctx)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.pruneLocked(ls.clock.Now())
	ls.retired = append(ls.retired, l)
	return l.parent.expiry(), l.ctx
}

// pruneLocked forgets expired leases. ls.mu is held.
func (ls *leases) pruneLocked(now time.Time) {
	for p, l := range ls.current {
		if !now.Before(l.expires) {
			l.end(errLeaseExpired)
			delete(ls.current, p)
		}
	}
	kept := ls.retired[:0]
	for _, l := range ls.retired {
		if now.Before(l.expires) {
			kept = append(kept, l)
		} else {
			l.end(errLeaseExpired)
		}
	}
	clear(ls.retired[len(kept):])
	ls.retired = kept
}

// renewOne renews l in Vault. On success l's expiry and renewal interval
// are updated. A lease Vault refuses to renew (revoked, expired, not
// renewable) is withdrawn at once: the cache drops its credentials.
func (ls *leases) renewOne(ctx context.Context, l *lease) error {
	sent := ls.clock.Now()
	sec, err := ls.c.do(ctx, "renew the lease of "+l.path, func(ctx context.Context, a *api.Client) (*api.Secret, error) {
		return a.Sys().RenewWithContext(ctx, l.id, int(l.orig.Seconds()))
	})
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err == nil && sec == nil {
		err = fmt.Errorf("vault: renew the lease of %s: empty answer", l.path)
	}
	if err != nil {
		if errors.Is(err, providers.ErrUnavailable) {
			ls.c.report(eventLeaseRenewal, resultError)
			return err
		}
		l.renewable = false
		l.end(fmt.Errorf("lease renewal refused: %w", err))
		ls.c.report(eventLeaseRenewal, resultRefused)
		ls.c.env.Log.Info("vault: lease renewal refused; the secret is dropped and read again", slog.String("path", l.path), slog.Any("error", err))
		return err
	}
	d := providers.Seconds(sec.LeaseDuration)
	l.confirmed(sent, d)
	l.renewable = sec.Renewable && d >= l.orig/3
	ls.c.report(eventLeaseRenewal, resultOK)
	ls.c.env.Log.Debug("vault: lease renewed", slog.String("path", l.path), slog.Duration("ttl", d))
	return nil
}

// close revokes, if revoke is set, every lease that has not expired. It
// returns the revocation errors joined.
func (ls *leases) close(ctx context.Context, revoke bool) error {
	if !revoke {
		return nil
	}
	ls.mu.Lock()
	ls.pruneLocked(ls.clock.Now())
	all := append([]*lease(nil), ls.retired...)
	for _, l := range ls.current {
		all = append(all, l)
	}
	clear(ls.current)
	ls.retired = nil
	ls.mu.Unlock()
	var errs []error
	revoked := 0
	for _, l := range all {
		l.end(errLeaseRevoked)
		_, err := ls.c.do(ctx, "revoke the lease of "+l.path, func(ctx context.Context, a *api.Client) (*api.Secret, error) {
			return nil, a.Sys().RevokeWithContext(ctx, l.id)
		})
		if err != nil {
			ls.c.report(eventLeaseRevoke, resultOf(ctx, err))
			errs = append(errs, err)
			continue
		}
		revoked++
		ls.c.report(eventLeaseRevoke, resultOK)
	}
	if len(all) > 0 {
		ls.c.env.Log.Info("vault: revoked leases on cleanup", slog.Int("revoked", revoked), slog.Int("failed", len(all)-revoked))
	}
	return errors.Join(errs...)
}
