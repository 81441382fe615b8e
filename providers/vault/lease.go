package vault

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credgate/credgate/providers"
)

// lease is one dynamic secret a provider handed out. Fields other than
// the immutable ones (id, path, fields, orig) are guarded by leases.mu.
type lease struct {
	id     string
	path   string // the path it was read from; also its scope
	fields map[string]providers.Secret
	orig   time.Duration // lease_duration when issued

	dur       time.Duration // lease_duration from the last issue or renewal
	expires   time.Time
	renewable bool
	// used says whether Fetch returned the lease since its last renewal;
	// a lease nobody asked for during a whole renewal period is left to
	// expire.
	used bool
	next time.Time // when the renewer next renews it
}

// credential returns the lease's credential with its current expiry.
// l's guard (leases.mu) is held.
func (l *lease) credential() *providers.Credential {
	return &providers.Credential{Fields: l.fields, Expiry: l.expires}
}

// leases tracks the dynamic secrets of one provider: it renews each at
// about two thirds of its duration while it is in use, hands the same
// secret back to Fetch while it is valid, and revokes them on Close when
// asked to. A background goroutine, started with the first lease, does
// the renewing until Close.
type leases struct {
	c     *Client
	clock clock
	renew bool // renew leases (false: track them only for revocation)

	mu      sync.Mutex
	current map[string]*lease // by path
	retired []*lease          // replaced but possibly unexpired
	started bool
	closed  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
}

func newLeases(c *Client, clk clock, renew bool) *leases {
	ls := &leases{c: c, clock: clk, renew: renew, current: map[string]*lease{}, wake: make(chan struct{}, 1)}
	ls.ctx, ls.cancel = context.WithCancel(context.Background())
	return ls
}

// reuse returns the credential of the lease held for path if it is valid
// for more than a third of its original duration, renewing it first when
// it is not. It returns nil when a fresh secret must be read; the old
// lease is then retired (kept for revocation until it expires).
func (ls *leases) reuse(ctx context.Context, path string) *providers.Credential {
	ls.mu.Lock()
	l := ls.current[path]
	if l == nil {
		ls.mu.Unlock()
		return nil
	}
	now := ls.clock.Now()
	if l.expires.Sub(now) > l.orig/3 {
		l.used = true
		cred := l.credential()
		ls.mu.Unlock()
		return cred
	}
	renewable := l.renewable && ls.renew && now.Before(l.expires)
	ls.mu.Unlock()
	if renewable && ls.renewOne(ctx, l) == nil {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		if ls.current[path] == l && l.expires.Sub(ls.clock.Now()) > l.orig/3 {
			l.used = true
			return l.credential()
		}
		return nil
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.current[path] == l {
		delete(ls.current, path)
		ls.retired = append(ls.retired, l)
	}
	return nil
}

// add tracks the lease of a secret read from path and returns its
// credential.
func (ls *leases) add(path string, sec *api.Secret, fields map[string]providers.Secret) *providers.Credential {
	now := ls.clock.Now()
	d := time.Duration(sec.LeaseDuration) * time.Second
	l := &lease{
		id: sec.LeaseID, path: path, fields: fields, orig: d,
		dur: d, expires: now.Add(d), renewable: sec.Renewable, used: true,
		next: now.Add(d * 2 / 3),
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.pruneLocked(now)
	if old := ls.current[path]; old != nil {
		ls.retired = append(ls.retired, old)
	}
	ls.current[path] = l
	if ls.renew && !ls.started && !ls.closed {
		ls.started = true
		ls.wg.Add(1)
		go ls.loop()
	}
	select {
	case ls.wake <- struct{}{}:
	default:
	}
	return l.credential()
}

// track remembers a lease for revocation only (certificates: PKI leases
// are not renewable).
func (ls *leases) track(path string, sec *api.Secret) {
	now := ls.clock.Now()
	d := time.Duration(sec.LeaseDuration) * time.Second
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.pruneLocked(now)
	ls.retired = append(ls.retired, &lease{id: sec.LeaseID, path: path, orig: d, dur: d, expires: now.Add(d)})
}

// pruneLocked forgets expired leases. ls.mu is held.
func (ls *leases) pruneLocked(now time.Time) {
	for p, l := range ls.current {
		if !now.Before(l.expires) {
			delete(ls.current, p)
		}
	}
	kept := ls.retired[:0]
	for _, l := range ls.retired {
		if now.Before(l.expires) {
			kept = append(kept, l)
		}
	}
	clear(ls.retired[len(kept):])
	ls.retired = kept
}

// loop renews leases when they are due, until Close.
func (ls *leases) loop() {
	defer ls.wg.Done()
	for {
		ls.mu.Lock()
		var at time.Time
		for _, l := range ls.current {
			if l.renewable && (at.IsZero() || l.next.Before(at)) {
				at = l.next
			}
		}
		ls.mu.Unlock()
		var fire <-chan time.Time
		stop := func() {}
		if !at.IsZero() {
			fire, stop = ls.clock.TimerAt(at)
		}
		select {
		case <-ls.ctx.Done():
			stop()
			return
		case <-ls.wake:
			stop()
			continue
		case <-fire:
		}
		ls.renewDue()
	}
}

// renewDue renews the leases whose renewal time has come and that were
// used since their last renewal; unused ones stop being renewed.
func (ls *leases) renewDue() {
	now := ls.clock.Now()
	ls.mu.Lock()
	ls.pruneLocked(now)
	var due []*lease
	for _, l := range ls.current {
		if !l.renewable || now.Before(l.next) {
			continue
		}
		if !l.used {
			l.renewable = false // idle: let it expire; Fetch reads a new one
			continue
		}
		due = append(due, l)
	}
	ls.mu.Unlock()
	for _, l := range due {
		ctx, cancel := context.WithTimeout(ls.ctx, ls.c.srv.Timeout)
		err := ls.renewOne(ctx, l)
		cancel()
		if err != nil && errors.Is(err, providers.ErrUnavailable) {
			ls.mu.Lock()
			left := l.expires.Sub(ls.clock.Now())
			l.next = ls.clock.Now().Add(max(min(left/3, 30*time.Second), time.Second))
			ls.mu.Unlock()
		}
	}
}

// renewOne renews l in Vault. On success l's duration, expiry and next
// renewal are updated and its use is reset; a lease Vault refuses to
// renew, or one that has reached its max TTL, stops being renewed.
func (ls *leases) renewOne(ctx context.Context, l *lease) error {
	sec, err := ls.c.do(ctx, "renew the lease of "+l.path, func(ctx context.Context, a *api.Client) (*api.Secret, error) {
		return a.Sys().RenewWithContext(ctx, l.id, int(l.orig.Seconds()))
	})
	now := ls.clock.Now()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err != nil {
		if !errors.Is(err, providers.ErrUnavailable) {
			l.renewable = false
		}
		return err
	}
	if sec == nil {
		l.renewable = false
		return fmt.Errorf("vault: renew the lease of %s: empty answer", l.path)
	}
	d := time.Duration(sec.LeaseDuration) * time.Second
	l.dur = d
	l.expires = now.Add(d)
	l.next = now.Add(d * 2 / 3)
	l.renewable = sec.Renewable && d >= l.orig/3
	l.used = false
	return nil
}

// close stops renewing and, if revoke is set, revokes every lease that
// has not expired. It returns the revocation errors joined.
func (ls *leases) close(ctx context.Context, revoke bool) error {
	ls.mu.Lock()
	ls.closed = true
	ls.mu.Unlock()
	ls.cancel()
	ls.wg.Wait()
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
	for _, l := range all {
		_, err := ls.c.do(ctx, "revoke the lease of "+l.path, func(ctx context.Context, a *api.Client) (*api.Secret, error) {
			return nil, a.Sys().RevokeWithContext(ctx, l.id)
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
