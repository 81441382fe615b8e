// Package tickets keeps the TLS session ticket keys of the gateway's
// client-facing listeners: random keys generated in memory, rotated on a
// schedule, the previous key kept for one rotation so that tickets issued
// just before a rotation still resume.
//
// The keys are never written anywhere nor derived from anything on disk:
// a restarted process, and every other replica, has keys of its own, so a
// client resumes only with the process that issued its ticket and makes a
// full handshake anywhere else. A ticket is usable for at most two
// rotation intervals.
package tickets

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"sync"
	"time"
)

// Keys sets the session ticket keys of TLS configurations and rotates
// them. It is safe for concurrent use.
type Keys struct {
	every time.Duration

	mu   sync.Mutex
	cfgs []*tls.Config
	// cur is the key new tickets are encrypted with, prev the one before
	// it (zero until the first rotation).
	cur, prev [32]byte
	hasPrev   bool
}

// New returns Keys with a fresh random key, rotated every interval by Run.
func New(every time.Duration) (*Keys, error) {
	if every <= 0 {
		return nil, fmt.Errorf("tickets: rotation interval %s: want a positive duration such as 1h", every)
	}
	k := &Keys{every: every}
	if _, err := rand.Read(k.cur[:]); err != nil {
		return nil, fmt.Errorf("tickets: generate a session ticket key: %w", err)
	}
	return k, nil
}

// Add makes c encrypt and decrypt session tickets with these keys, now and
// after every rotation (crypto/tls's own rotation of c's keys is turned
// off).
func (k *Keys) Add(c *tls.Config) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cfgs = append(k.cfgs, c)
	c.SetSessionTicketKeys(k.keysLocked())
}

// Rotate makes a new key the one tickets are encrypted with and keeps the
// current one for decryption only; the key before that is forgotten, and
// with it every ticket it encrypted.
func (k *Keys) Rotate() error {
	var next [32]byte
	if _, err := rand.Read(next[:]); err != nil {
		return fmt.Errorf("tickets: generate a session ticket key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.prev, k.hasPrev = k.cur, true
	k.cur = next
	keys := k.keysLocked()
	for _, c := range k.cfgs {
		c.SetSessionTicketKeys(keys)
	}
	return nil
}

// Reset replaces every key with a new one: no ticket issued before
// resumes (a rotated interception CA is then shown to every client at its
// next connection).
func (k *Keys) Reset() error {
	var next [32]byte
	if _, err := rand.Read(next[:]); err != nil {
		return fmt.Errorf("tickets: generate a session ticket key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cur, k.prev, k.hasPrev = next, [32]byte{}, false
	for _, c := range k.cfgs {
		c.SetSessionTicketKeys(k.keysLocked())
	}
	return nil
}

// keysLocked is the key list crypto/tls takes: the encrypting key first.
func (k *Keys) keysLocked() [][32]byte {
	if k.hasPrev {
		return [][32]byte{k.cur, k.prev}
	}
	return [][32]byte{k.cur}
}

// Run rotates the keys every interval until ctx is done. A failed
// rotation (the system's random source failing) is passed to onErr and
// the keys in force stay.
func (k *Keys) Run(ctx context.Context, onErr func(error)) {
	t := time.NewTicker(k.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := k.Rotate(); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}
