package killswitch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/redistest"
)

// TestRedisTamperingLiftsNothing is the class "a Redis writer changes the
// kill switch state behind credgate's back": whatever it does directly
// with a Redis client, no replica lifts a disable, and the replicas say
// the state does not verify.
func TestRedisTamperingLiftsNothing(t *testing.T) {
	const hash = "test:switches"
	otherKeys := []Key{{ID: "k1", Secret: bytes.Repeat([]byte{2}, 32)}}
	tests := []struct {
		name string
		// tamper changes Redis; older is the signed state of generation
		// 1 (rule:charges only), taken before workload:batch was disabled.
		tamper func(t *testing.T, ctx context.Context, rc *redis.Client, older map[string]string)
		// reason is what the replicas report; "" when they write the
		// state back instead (the hash is gone).
		reason string
		// unrepaired: the replicas do not write their verified state
		// over it, so a replica started afterwards enforces nothing.
		unrepaired bool
	}{
		{"delete one switch", func(t *testing.T, ctx context.Context, rc *redis.Client, _ map[string]string) {
			must(t, rc.HDel(ctx, hash, "workload:batch").Err())
		}, ReasonBadMAC, false},
		{"edit an entry", func(t *testing.T, ctx context.Context, rc *redis.Client, _ map[string]string) {
			must(t, rc.HSet(ctx, hash, "workload:batch", `{"kind":"workload","name":"batch","by":"mallory"}`).Err())
		}, ReasonBadMAC, false},
		{"rename an entry", func(t *testing.T, ctx context.Context, rc *redis.Client, _ map[string]string) {
			v := rc.HGet(ctx, hash, "workload:batch").Val()
			must(t, rc.HDel(ctx, hash, "workload:batch").Err())
			must(t, rc.HSet(ctx, hash, "workload:batch2", v).Err())
		}, ReasonBadMAC, false},
		{"raise the generation", func(t *testing.T, ctx context.Context, rc *redis.Client, _ map[string]string) {
			must(t, rc.HSet(ctx, hash, genField, 1000).Err())
		}, ReasonBadMAC, false},
		{"raise the generation to its largest value", func(t *testing.T, ctx context.Context, rc *redis.Client, _ map[string]string) {
			must(t, rc.HSet(ctx, hash, genField, uint64(math.MaxUint64)).Err())
		}, ReasonMalformed, false},
		{"remove the MAC and a switch", func(t *testing.T, ctx context.Context, rc *redis.Client, _ map[string]string) {
			must(t, rc.HDel(ctx, hash, macField, "rule:charges").Err())
		}, ReasonUnsigned, false},
		{"garbage MAC", func(t *testing.T, ctx context.Context, rc *redis.Client, _ map[string]string) {
			must(t, rc.HSet(ctx, hash, macField, "k1:zz").Err())
		}, ReasonMalformed, false},
		{"replace the hash with an unsigned empty state", func(t *testing.T, ctx context.Context, rc *redis.Client, _ map[string]string) {
			must(t, rc.Del(ctx, hash).Err())
			must(t, rc.HSet(ctx, hash, genField, 99).Err())
		}, ReasonUnsigned, false},
		{"replace the hash with a state signed by another key", func(t *testing.T, _ context.Context, rc *redis.Client, _ map[string]string) {
			writeSigned(t, rc, hash, otherKeys, 99)
		}, ReasonBadMAC, false},
		{"replace the hash with a state signed under an unknown key id", func(t *testing.T, _ context.Context, rc *redis.Client, _ map[string]string) {
			writeSigned(t, rc, hash, []Key{{ID: "k9", Secret: otherKeys[0].Secret}}, 99)
		}, ReasonUnknownKey, true},
		{"splice a signed state from another namespace", func(t *testing.T, _ context.Context, rc *redis.Client, _ map[string]string) {
			writeSigned(t, rc, "other:switches", testKeys, 99)
			copyHash(t, rc, "other:switches", hash)
		}, ReasonBadMAC, false},
		{"replay an older signed state", func(t *testing.T, ctx context.Context, rc *redis.Client, older map[string]string) {
			must(t, rc.Del(ctx, hash).Err())
			must(t, rc.HSet(ctx, hash, older).Err())
		}, ReasonRollback, false},
		{"add an unsigned entry", func(t *testing.T, ctx context.Context, rc *redis.Client, _ map[string]string) {
			must(t, rc.HSet(ctx, hash, "rule:forged", `{"kind":"rule","name":"forged"}`).Err())
		}, ReasonBadMAC, false},
		{"delete the whole hash", func(t *testing.T, ctx context.Context, rc *redis.Client, _ map[string]string) {
			must(t, rc.Del(ctx, hash).Err())
		}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := context.Background()
			rc := srv.Client()
			obsA, obsB := &events{}, &events{}
			a := newRedisSwitch(t, srv, Options{ResyncInterval: 20 * time.Millisecond, Observer: obsA})
			b := newRedisSwitch(t, srv, Options{ResyncInterval: 20 * time.Millisecond, Observer: obsB})
			if _, err := a.Disable(ctx, entry(Rule, "charges")); err != nil {
				t.Fatal(err)
			}
			older, err := rc.HGetAll(ctx, hash).Result()
			must(t, err)
			if _, err := a.Disable(ctx, entry(Workload, "batch")); err != nil {
				t.Fatal(err)
			}
			for _, s := range []*Switch{a, b} {
				waitFor(t, 2*time.Second, "both switches in force", func() error {
					if s.Snapshot().Len() != 2 {
						return errors.New("not yet")
					}
					return nil
				})
			}

			tt.tamper(t, ctx, rc, older)

			if tt.reason != "" {
				// The first replica to read it reports it, and (but for
				// unrepaired) writes the verified state over it.
				waitFor(t, 2*time.Second, "a replica to report the state unverified", func() error {
					if obsA.verifyCount(tt.reason)+obsB.verifyCount(tt.reason) == 0 {
						return errors.New("Status.Unverified = " + a.Status().Unverified + " / " + b.Status().Unverified)
					}
					return nil
				})
			}
			for name, s := range map[string]*Switch{"A": a, "B": b} {
				obs := map[string]*events{"A": obsA, "B": obsB}[name]
				if tt.unrepaired {
					waitFor(t, 2*time.Second, "replica "+name+" to report the state unverified", func() error {
						if st := s.Status(); !strings.Contains(st.Unverified, "("+tt.reason+")") || obs.verifyCount(tt.reason) == 0 {
							return errors.New("Status.Unverified = " + st.Unverified)
						}
						return nil
					})
				}
				if tt.reason == "" {
					waitFor(t, 2*time.Second, "the state to be written back", func() error {
						if rc.HGet(ctx, hash, macField).Val() == "" {
							return errors.New("no state in Redis")
						}
						return nil
					})
				}
				// Let a few more reads happen: the state must stay.
				obs.mu.Lock()
				n := obs.synced
				obs.mu.Unlock()
				waitFor(t, 2*time.Second, "more reads", func() error {
					obs.mu.Lock()
					defer obs.mu.Unlock()
					if obs.synced < n+3 {
						return errors.New("not yet")
					}
					return nil
				})
				for _, id := range []string{"rule:charges", "workload:batch"} {
					if err := has(s, id)(); err != nil {
						t.Errorf("replica %s: %v after the tampering", name, err)
					}
				}
				if _, ok := s.Snapshot().Get(Rule, "forged"); ok {
					t.Errorf("replica %s put an unsigned entry in force", name)
				}
			}

			// A replica that starts now (a restart, a scale-up, a
			// rollout; no admin.state_file) knows nothing but what Redis
			// holds: it must enforce the fleet's switches all the same.
			// The replicas that hold the verified state write it back
			// (repair) at their next periodic read.
			c := newRedisSwitch(t, srv, Options{ResyncInterval: 20 * time.Millisecond})
			if tt.unrepaired {
				// A state signed under a key id no replica holds is
				// what a key rotation in progress looks like to the
				// replicas that lack the new key: not written over
				// (docs/scaling.md#the-state-is-authenticated).
				if c.Snapshot().Len() != 0 {
					t.Errorf("replica C put an unverified state in force: %v", c.Snapshot().Entries())
				}
				// It holds no verified state: the gateway reports it
				// not ready (kill_switch_unverified).
				if c.Status().Held {
					t.Error("replica C reports a verified state held while it holds none")
				}
			} else {
				for _, id := range []string{"rule:charges", "workload:batch"} {
					waitFor(t, 2*time.Second, "replica C (started after the tampering) to enforce "+id, has(c, id))
				}
				if tt.reason != "" && obsA.wroteCount(WroteRepaired)+obsB.wroteCount(WroteRepaired) == 0 {
					t.Errorf("no replica counted a repair (Observer.WroteBack %q)", WroteRepaired)
				}
				for name, s := range map[string]*Switch{"A": a, "B": b, "C": c} {
					waitFor(t, 2*time.Second, "replica "+name+" to verify the state in Redis again", func() error {
						if st := s.Status(); st.Unverified != "" {
							return errors.New("Status.Unverified = " + st.Unverified)
						}
						return nil
					})
				}
			}

			// A change through the admin API writes a new signed state
			// built on the verified one: the tampering is healed, and
			// every replica verifies it again.
			if _, err := b.Disable(ctx, entry(Credential, "stripe")); err != nil {
				t.Fatal(err)
			}
			for name, s := range map[string]*Switch{"A": a, "B": b, "C": c} {
				waitFor(t, 2*time.Second, "replica "+name+" to verify the new state", func() error {
					if st := s.Status(); st.Unverified != "" || s.Snapshot().Len() != 3 || !st.Held {
						return fmt.Errorf("Status.Unverified = %q, Held = %v", st.Unverified, st.Held)
					}
					return nil
				})
			}
		})
	}
}

// TestRedisForgedMessage: a message published by a Redis writer is not
// applied when the state cannot be read either.
func TestRedisForgedMessage(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	obs := &events{}
	a := newRedisSwitch(t, srv, Options{Observer: obs})
	if _, err := a.Disable(ctx, entry(Rule, "charges")); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	gen := a.gen
	a.mu.Unlock()
	// Make the read fail (the hash is a string now), then publish an
	// enable with the next generation and a MAC under another key.
	rc := srv.Client()
	must(t, rc.Del(ctx, "test:switches").Err())
	must(t, rc.Set(ctx, "test:switches", "x", 0).Err())
	other, err := newMACKeys([]Key{{ID: "k1", Secret: bytes.Repeat([]byte{3}, 32)}})
	must(t, err)
	msg := message{Origin: "mallory", Op: "enable", Entry: Entry{Kind: Rule, Name: "charges"}, Gen: gen + 1}
	msg.MAC = other.sign(messageParts("test:switches:events", msg))
	b, _ := json.Marshal(msg)
	// Published again on every poll until refused: a message published
	// before the replica's subscription is in place reaches no one (it
	// happened under load in CI).
	waitFor(t, 10*time.Second, "the forged message to be refused", func() error {
		if obs.verifyCount(ReasonBadMAC) != 0 {
			return nil
		}
		if err := rc.Publish(ctx, "test:switches:events", b).Err(); err != nil {
			return err
		}
		return errors.New("not yet")
	})
	if err := has(a, "rule:charges")(); err != nil {
		t.Errorf("a forged message lifted a switch: %v", err)
	}
}

func copyHash(t *testing.T, rc *redis.Client, from, to string) {
	t.Helper()
	ctx := context.Background()
	all, err := rc.HGetAll(ctx, from).Result()
	must(t, err)
	must(t, rc.Del(ctx, to).Err())
	must(t, rc.HSet(ctx, to, all).Err())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestMACKeyRotation: the first key signs, every key verifies, and a key
// id may hold ':' (cache.redis.encryption_keys ids are free text).
func TestMACKeyRotation(t *testing.T) {
	old := Key{ID: "2026:01", Secret: bytes.Repeat([]byte{4}, 32)}
	next := Key{ID: "2026:02", Secret: bytes.Repeat([]byte{5}, 32)}
	before, err := newMACKeys([]Key{old})
	must(t, err)
	after, err := newMACKeys([]Key{next, old})
	must(t, err)
	parts := stateParts("ns:switches", 3, map[string]string{"rule:a": "{}"})
	if err := after.verify(before.sign(parts), parts); err != nil {
		t.Errorf("a state signed with the old key does not verify after the rotation: %v", err)
	}
	if err := before.verify(after.sign(parts), parts); err == nil || !strings.Contains(err.Error(), "("+ReasonUnknownKey+")") {
		t.Errorf("a state signed with a key not configured: %v, want %s", err, ReasonUnknownKey)
	}
	if _, err := newMACKeys([]Key{{ID: "short", Secret: []byte("too short")}}); err == nil {
		t.Error("a short key was accepted")
	}
}
