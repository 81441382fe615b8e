// Package rediscache is the shared second cache level (a
// providers.SharedCache) that lets several gateway replicas share
// credentials through Redis: one provider call per credential for the
// whole fleet instead of one per replica.
//
// Entries are sealed with AES-256-GCM under a key that is not in Redis
// (Key; the first of the configured keys seals, all of them open, so keys
// rotate), bound to their Redis key name, their expiry and a fleet-wide
// version (so an entry moved to another key, kept past its expiry or
// replaced by an older one is refused: seal.go), namespaced per
// deployment, and expire in Redis when the credential does (minus a skew). A fetch is
// single-flighted across the fleet with a short lock (SET NX PX with a
// random token, released by a compare-and-delete script so only its owner
// releases it); the others wait for a pub/sub notification, polling as a
// fallback, and fetch themselves when the owner dies. When Redis is
// unavailable, every call falls through to the provider: no request fails
// because of Redis; a health check notices recovery.
package rediscache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/fleet"
	"github.com/credgate/credgate/providers"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultNamespace      = "credgate"
	DefaultDefaultTTL     = providers.DefaultCacheTTL
	DefaultExpirySkew     = 5 * time.Second
	DefaultLockTTL        = 3 * time.Second
	DefaultOpTimeout      = 500 * time.Millisecond
	DefaultPollInterval   = 100 * time.Millisecond
	DefaultHealthInterval = time.Second
	// maxTracked bounds the entries remembered for Forget and remote
	// invalidation; beyond it the oldest knowledge is dropped (a replica
	// then only misses a remote invalidation, which expiry still ends).
	maxTracked = 10000
)

// Observer receives the shared cache's events; the gateway turns them into
// metrics. Implementations are safe for concurrent use and fast.
type Observer interface {
	// RedisUp is called when Redis becomes reachable or unreachable.
	RedisUp(up bool)
	// RedisError is called for every failed Redis operation, by operation
	// (get, set, lock, unlock, publish, delete, scan, ping, subscribe).
	RedisError(op string)
	// SharedLookup is called once per Fetch with its result: hit, miss
	// (this replica called the provider), waited (another replica did)
	// or bypass (Redis unavailable; the provider was called directly).
	SharedLookup(result string)
	// Rejected is called for every entry read from Redis that was not
	// used, by reason: RejectUndecryptable, RejectExpired,
	// RejectRollback, RejectNewer. The read then counts as a miss.
	Rejected(reason string)
}

// Options configure a Store.
type Options struct {
	// Client is the Redis client (standalone, Sentinel or Cluster). The
	// Store does not close it.
	Client redis.UniversalClient
	// Namespace prefixes every key and channel (letters, digits, and
	// "_.:-"), so deployments can share a Redis.
	Namespace string
	// Keys seal entries; Keys[0] seals, every key opens.
	Keys []Key
	// DefaultTTL is how long a credential without expiry is kept.
	DefaultTTL time.Duration
	// ExpirySkew is subtracted from a credential's expiry to get its
	// entry's expiry in Redis.
	ExpirySkew time.Duration
	// LockTTL is the fetch lock's lifetime; its owner extends it while the
	// provider call runs, so it only runs out when the owner died.
	LockTTL time.Duration
	// OpTimeout bounds each Redis operation.
	OpTimeout time.Duration
	// PollInterval is how often a waiting replica looks at Redis when no
	// notification came.
	PollInterval time.Duration
	// HealthInterval is how often Redis is pinged.
	HealthInterval time.Duration
	// Logger receives availability changes; never a secret.
	Logger *slog.Logger
	// Observer, if set, receives events for metrics.
	Observer Observer
	// Now is the clock (tests).
	Now func() time.Time
}

// ValidNamespace reports whether ns may be used as a Namespace.
func ValidNamespace(ns string) bool { return fleet.ValidNamespace(ns) }

// Store is a providers.SharedCache on Redis. Close stops its goroutines.
type Store struct {
	opts   Options
	rdb    redis.UniversalClient
	seal   *sealer
	origin string // this process's id in published messages
	events string // the pub/sub channel

	redis   fleet.Health
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	watchMu sync.Mutex
	watch   func(providers.Invalidation)

	mu      sync.Mutex
	waiters map[string][]chan struct{} // entry hash → waiters for a fill
	tracked map[string]tracked         // entry hash → what this replica got
	// minVersion is, per entry hash, the lowest entry version this
	// replica still accepts: above every version it accepted, and above a
	// version whose credential an upstream rejected (Forget). Bounded
	// like tracked; an entry dropped from it is still refused once past
	// the expiry sealed into it.
	minVersion map[string]uint64
}

// tracked is the last credential this replica returned for a key: the
// value it came from identifies it in Redis and in messages.
type tracked struct {
	key     providers.CacheKey
	cred    *providers.Credential
	value   string // the sealed entry
	version uint64 // its version
}

// message is what replicas publish on the events channel. It names keys
// by hash and entries by the hash of their sealed value: nothing secret.
type message struct {
	Origin string `json:"o"`
	Type   string `json:"t"` // fill, forget, credential
	Hash   string `json:"h,omitempty"`
	Entry  string `json:"v,omitempty"`
	Cred   string `json:"c,omitempty"`
	Ver    string `json:"r,omitempty"`
}

// New returns a Store and starts its pub/sub listener and health check.
// It does not fail when Redis is unreachable: the Store starts in the
// "down" state and recovers when Redis answers.
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, errors.New("rediscache: no Redis client")
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if !ValidNamespace(opts.Namespace) {
		return nil, fmt.Errorf("rediscache: namespace %q: use 1 to 64 letters, digits or _.:-", opts.Namespace)
	}
	seal, err := newSealer(opts.Keys)
	if err != nil {
		return nil, err
	}
	def := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&opts.DefaultTTL, DefaultDefaultTTL)
	def(&opts.LockTTL, DefaultLockTTL)
	def(&opts.OpTimeout, DefaultOpTimeout)
	def(&opts.PollInterval, DefaultPollInterval)
	def(&opts.HealthInterval, DefaultHealthInterval)
	if opts.ExpirySkew == 0 {
		opts.ExpirySkew = DefaultExpirySkew
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		opts: opts, rdb: opts.Client, seal: seal,
		origin:  fleet.NewOrigin(8),
		events:  opts.Namespace + ":events",
		waiters: map[string][]chan struct{}{},
		tracked: map[string]tracked{},

		minVersion: map[string]uint64{},
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.redis = fleet.Health{Log: s.opts.Logger,
		Down:      "redis unavailable; serving from the in-process cache and direct provider calls",
		Recovered: "redis available again; shared credential cache resumed",
		OnChange:  s.observeUp}
	if s.opts.Observer != nil {
		s.redis.OnError = s.opts.Observer.RedisError
	}
	pingErr := s.ping(ctx)
	up := pingErr == nil
	// Listen before the first fetch: a message published after New
	// returns (another replica's forget of a credential this one is about
	// to cache) is not missed. Bounded: a Redis that does not answer now
	// is the listener's to wait for (go-redis subscribes again when it
	// reconnects).
	sctx, cancel := context.WithTimeout(ctx, s.opts.HealthInterval)
	ps := s.rdb.Subscribe(sctx, s.events)
	if up {
		_, _ = ps.ReceiveTimeout(sctx, s.opts.HealthInterval) // the confirmation
	}
	cancel()
	if !up {
		s.opts.Logger.Warn("redis unavailable at start; serving from the in-process cache and direct provider calls until it answers", slog.Any("error", pingErr))
		s.observeUp(false)
	} else {
		s.redis.Set(true)
		s.observeUp(true)
	}
	s.wg.Add(2)
	go s.subscribe(ps)
	go s.health()
	return s, nil
}

// Up reports whether Redis answered the last operation.
func (s *Store) Up() bool { return s.redis.Up() }

// Close stops the listener and the health check. It does not close the
// client.
func (s *Store) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// Watch implements providers.SharedCache.
func (s *Store) Watch(f func(providers.Invalidation)) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	s.watch = f
}

// keyHash names a cache key in Redis: the credential part and the
// scope part separately, so that every scope of a credential can be found.
func keyHash(k providers.CacheKey) string {
	return credHash(k.Credential, k.Version) + ":" + shortHash(k.Scope, k.Provider)
}

func credHash(credential, version string) string { return shortHash(credential, version) }

func shortHash(a, b string) string {
	h := sha256.New()
	h.Write([]byte(a))
	h.Write([]byte{0})
	h.Write([]byte(b))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (s *Store) entryKey(hash string) string { return s.opts.Namespace + ":cred:" + hash }
func (s *Store) lockKey(hash string) string  { return s.opts.Namespace + ":lock:" + hash }

// genKey is the counter that versions entries, fleet-wide. A Redis writer
// that resets it only makes new entries look old: they are refused and
// fetched again (fail safe), never an old one accepted.
func (s *Store) genKey() string { return s.opts.Namespace + ":gen" }

// valueID identifies a sealed entry in messages.
func valueID(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:12])
}

// Lua: delete KEYS[1] only if it holds ARGV[1] (lock release by its
// owner, or dropping the very entry an upstream rejected).
var compareAndDelete = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// Lua: extend KEYS[1] to ARGV[2] ms only if it holds ARGV[1].
var compareAndExpire = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)

// Fetch implements providers.SharedCache.
func (s *Store) Fetch(ctx context.Context, key providers.CacheKey, refreshAhead time.Duration, fetch func(context.Context) (*providers.Credential, error)) (*providers.Credential, error) {
	if !s.redis.Up() {
		s.lookup("bypass")
		return fetch(ctx)
	}
	hash := keyHash(key)
	ek := s.entryKey(hash)
	cred, _, res, err := s.get(ctx, key, ek, refreshAhead)
	if err != nil {
		s.lookup("bypass")
		return fetch(ctx)
	}
	if cred != nil {
		s.lookup("hit")
		return cred, nil
	}
	if res != "" {
		s.opts.Logger.Debug("shared cache entry not usable; fetching", slog.String("credential", key.Credential), slog.String("reason", res))
	}

	// Wait at most half of what the caller allows (the Cache bounds it by
	// its fetch timeout), so that a replica whose lock owner vanished
	// still has time to fetch itself.
	waitUntil := time.Now().Add(s.opts.LockTTL * 2)
	if dl, ok := ctx.Deadline(); ok {
		waitUntil = time.Now().Add(time.Until(dl) / 2)
	}
	for attempt := 0; attempt < 1000; attempt++ {
		token := fleet.NewOrigin(16)
		lctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
		ok, err := s.rdb.SetNX(lctx, s.lockKey(hash), token, s.opts.LockTTL).Result()
		cancel()
		if err != nil {
			s.fail("lock", err)
			s.lookup("bypass")
			return fetch(ctx)
		}
		if ok {
			return s.fetchLocked(ctx, key, hash, ek, token, refreshAhead, fetch)
		}
		// Someone else fetches: wait for its fill, then read.
		cred, err := s.waitFill(ctx, key, hash, ek, refreshAhead, waitUntil)
		switch {
		case err != nil:
			s.lookup("bypass")
			return fetch(ctx)
		case cred != nil:
			s.lookup("waited")
			return cred, nil
		case !time.Now().Before(waitUntil):
			// The owner is slow or gone and its lock still held.
			s.opts.Logger.Debug("gave up waiting for another replica's fetch; fetching here", slog.String("credential", key.Credential))
			s.lookup("miss")
			return fetch(ctx)
		}
		// The lock was released without a fill (its owner failed or
		// died): try to take it.
	}
	s.lookup("miss")
	return fetch(ctx)
}

// get reads and opens key's entry. It returns (nil, reason, nil) for a
// miss (reason "" when absent, "stale" or "undecryptable"), and an error
// only when Redis failed.
//
// A credential within refreshAhead of its expiry is not returned as cred
// but as stale, for the fetch that replaces it (providers.Previous).
func (s *Store) get(ctx context.Context, key providers.CacheKey, ek string, refreshAhead time.Duration) (cred, stale *providers.Credential, res string, err error) {
	gctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	v, err := s.rdb.Get(gctx, ek).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil, "", nil
	}
	if err != nil {
		s.fail("get", err)
		return nil, nil, "", err
	}
	e, err := s.seal.open(ek, []byte(v))
	if err != nil {
		// A key retired too early, or a foreign entry: fetch anew and
		// overwrite it.
		if errors.Is(err, errNewer) {
			// A rolling upgrade in progress, or a rollback: a miss, and
			// the entry is overwritten in this version's format.
			s.opts.Logger.Warn("shared cache entry was sealed by a newer credgate; fetching anew and overwriting it in this version's format. Upgrade this replica",
				slog.String("credential", key.Credential), slog.String("key", ek), slog.Any("error", err))
			s.reject(RejectNewer)
			return nil, nil, RejectNewer, nil
		}
		s.opts.Logger.Warn("shared cache entry cannot be opened; fetching anew", slog.String("credential", key.Credential), slog.String("key", ek), slog.Any("error", err))
		s.reject(RejectUndecryptable)
		return nil, nil, RejectUndecryptable, nil
	}
	now := s.opts.Now()
	hash := keyHash(key)
	if !now.Before(e.notAfter) {
		s.opts.Logger.Warn("shared cache entry is past the expiry sealed into it (copied back, or its Redis expiry removed); fetching anew",
			slog.String("credential", key.Credential), slog.Uint64("version", e.version))
		s.reject(RejectExpired)
		return nil, nil, RejectExpired, nil
	}
	if !s.acceptVersion(hash, e.version) {
		s.opts.Logger.Warn("shared cache entry is older than one this replica already saw (an older sealed value copied back); fetching anew",
			slog.String("credential", key.Credential), slog.Uint64("version", e.version))
		s.reject(RejectRollback)
		return nil, nil, RejectRollback, nil
	}
	fetchedAt := e.fetchedAt
	cred = e.cred
	expires := cred.Expiry
	if expires.IsZero() {
		expires = fetchedAt.Add(s.opts.DefaultTTL)
	}
	ahead := min(max(refreshAhead, 0), expires.Sub(fetchedAt)/3)
	if !now.Before(expires.Add(-ahead)) {
		return nil, cred, "stale", nil
	}
	s.track(hash, tracked{key: key, cred: cred, value: v, version: e.version})
	return cred, nil, "", nil
}

// fetchLocked runs the provider call as the lock's owner, stores the
// result, notifies the waiters and releases the lock.
func (s *Store) fetchLocked(ctx context.Context, key providers.CacheKey, hash, ek, token string, refreshAhead time.Duration, fetch func(context.Context) (*providers.Credential, error)) (*providers.Credential, error) {
	lk := s.lockKey(hash)
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.OpTimeout)
		defer cancel()
		if err := compareAndDelete.Run(rctx, s.rdb, []string{lk}, token).Err(); err != nil {
			s.fail("unlock", err)
		}
		// Wake waiters whether or not there is an entry: without one
		// they take the lock in turn.
		s.publish(rctx, message{Type: "fill", Hash: hash})
	}()
	// Another owner may have filled the entry between our miss and our
	// lock.
	cred, stale, _, err := s.get(ctx, key, ek, refreshAhead)
	if err == nil && cred != nil {
		s.lookup("waited")
		return cred, nil
	}
	// The shared entry, if still readable, is the latest any replica
	// stored: the credential this fetch replaces (providers.Previous).
	ctx = providers.WithPrevious(ctx, stale)
	s.lookup("miss")

	// Keep the lock while the provider call runs.
	kctx, stopKeep := context.WithCancel(ctx)
	keepDone := make(chan struct{})
	go func() {
		defer close(keepDone)
		t := time.NewTicker(s.opts.LockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-kctx.Done():
				return
			case <-t.C:
				ectx, cancel := context.WithTimeout(kctx, s.opts.OpTimeout)
				err := compareAndExpire.Run(ectx, s.rdb, []string{lk}, token, s.opts.LockTTL.Milliseconds()).Err()
				cancel()
				if err != nil && kctx.Err() == nil {
					s.fail("lock", err)
				}
			}
		}
	}()
	fetchedAt := s.opts.Now()
	cred, err = fetch(ctx)
	stopKeep()
	<-keepDone
	if err != nil || cred == nil {
		return cred, err
	}
	s.store(ctx, key, hash, ek, cred, fetchedAt)
	return cred, nil
}

// store seals cred into ek with an expiry of the credential's own (minus
// the skew) or DefaultTTL.
func (s *Store) store(ctx context.Context, key providers.CacheKey, hash, ek string, cred *providers.Credential, fetchedAt time.Time) {
	ttl := s.opts.DefaultTTL
	if !cred.Expiry.IsZero() {
		ttl = cred.Expiry.Sub(s.opts.Now()) - s.opts.ExpirySkew
	}
	if ttl < time.Millisecond {
		return // too close to expiry to share
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.OpTimeout)
	defer cancel()
	version, err := s.rdb.Incr(sctx, s.genKey()).Uint64()
	if err != nil {
		s.fail("set", err)
		return
	}
	v, err := s.seal.seal(ek, cred, fetchedAt, version, s.opts.Now().Add(ttl))
	if err != nil {
		s.opts.Logger.Warn("shared cache: sealing an entry failed", slog.String("credential", key.Credential), slog.Any("error", err))
		return
	}
	if err := s.rdb.Set(sctx, ek, v, ttl).Err(); err != nil {
		s.fail("set", err)
		return
	}
	s.acceptVersion(hash, version)
	s.track(hash, tracked{key: key, cred: cred, value: string(v), version: version})
}

// waitFill waits until a fill of hash is announced, a poll finds the
// entry, the lock is gone, or until. It returns the credential when the
// entry is there, (nil, nil) when the caller should try the lock again
// (or give up, past until), and an error when Redis failed.
func (s *Store) waitFill(ctx context.Context, key providers.CacheKey, hash, ek string, refreshAhead time.Duration, until time.Time) (*providers.Credential, error) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.waiters[hash] = append(s.waiters[hash], ch)
	s.mu.Unlock()
	defer s.unwait(hash, ch)

	tick := time.NewTicker(s.opts.PollInterval)
	defer tick.Stop()
	deadline := time.NewTimer(time.Until(until))
	defer deadline.Stop()
	for {
		// Registered before looking, so a fill between the look and the
		// wait is not missed.
		cred, _, _, err := s.get(ctx, key, ek, refreshAhead)
		if err != nil || cred != nil {
			return cred, err
		}
		ectx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
		n, err := s.rdb.Exists(ectx, s.lockKey(hash)).Result()
		cancel()
		if err != nil {
			s.fail("get", err)
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-deadline.C:
			return nil, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("rediscache: waiting for another replica's fetch: %w", context.Cause(ctx))
		}
	}
}

func (s *Store) unwait(hash string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[hash]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiters, hash)
	} else {
		s.waiters[hash] = ws
	}
}

// acceptVersion reports whether an entry of version may be used for hash
// and, if so, raises the lowest accepted version to it.
func (s *Store) acceptVersion(hash string, version uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if version < s.minVersion[hash] {
		return false
	}
	s.raiseLocked(hash, version)
	return true
}

// raiseLocked raises the lowest version accepted for hash to version.
func (s *Store) raiseLocked(hash string, version uint64) {
	cur, ok := s.minVersion[hash]
	if ok && cur >= version {
		return
	}
	if !ok && len(s.minVersion) >= maxTracked {
		for h := range s.minVersion { // drop an arbitrary one
			delete(s.minVersion, h)
			break
		}
	}
	s.minVersion[hash] = version
}

func (s *Store) track(hash string, t tracked) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tracked[hash]; !ok && len(s.tracked) >= maxTracked {
		for h := range s.tracked { // drop an arbitrary one
			delete(s.tracked, h)
			break
		}
	}
	s.tracked[hash] = t
}

// Forget implements providers.SharedCache: the entry is deleted only if
// it still holds the rejected credential, then the other replicas are
// told which entry to drop.
func (s *Store) Forget(ctx context.Context, key providers.CacheKey, cred *providers.Credential) {
	hash := keyHash(key)
	s.mu.Lock()
	t, ok := s.tracked[hash]
	if ok && t.cred == cred {
		delete(s.tracked, hash)
		// The rejected entry must not come back.
		s.raiseLocked(hash, t.version+1)
	}
	s.mu.Unlock()
	if !ok || t.cred != cred || !s.redis.Up() {
		return
	}
	if err := compareAndDelete.Run(ctx, s.rdb, []string{s.entryKey(hash)}, t.value).Err(); err != nil {
		s.fail("delete", err)
		return
	}
	s.publish(ctx, message{Type: "forget", Hash: hash, Entry: valueID(t.value)})
}

// InvalidateCredential implements providers.SharedCache.
func (s *Store) InvalidateCredential(ctx context.Context, credential, version string) {
	ch := credHash(credential, version)
	s.mu.Lock()
	for h, t := range s.tracked {
		if t.key.Credential == credential && t.key.Version == version {
			delete(s.tracked, h)
		}
	}
	s.mu.Unlock()
	if !s.redis.Up() {
		return
	}
	if err := s.deleteMatching(ctx, s.opts.Namespace+":cred:"+ch+":*"); err != nil {
		s.fail("delete", err)
	}
	s.publish(ctx, message{Type: "credential", Cred: credential, Ver: version})
}

// deleteMatching deletes the keys matching pattern on every master.
func (s *Store) deleteMatching(ctx context.Context, pattern string) error {
	del := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for range 10000 { // bounded: 10000 × 100 keys
			keys, next, err := c.Scan(ctx, cursor, pattern, 100).Result()
			if err != nil {
				return fmt.Errorf("rediscache: scan %s: %w", pattern, err)
			}
			for _, k := range keys {
				if err := c.Del(ctx, k).Err(); err != nil {
					return fmt.Errorf("rediscache: delete: %w", err)
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
		return nil
	}
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return del(ctx, c) })
	}
	return del(ctx, s.rdb)
}

func (s *Store) publish(ctx context.Context, m message) {
	m.Origin = s.origin
	b, _ := json.Marshal(m)
	if err := s.rdb.Publish(ctx, s.events, b).Err(); err != nil {
		s.fail("publish", err)
	}
}

// subscribe listens on the events channel until Close (New subscribed
// ps when Redis answered). go-redis reconnects the subscription after
// Redis comes back.
func (s *Store) subscribe(ps *redis.PubSub) {
	defer s.wg.Done()
	defer ps.Close()
	ch := ps.Channel(redis.WithChannelHealthCheckInterval(s.opts.HealthInterval * 3))
	for {
		select {
		case <-s.ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			s.handle(msg.Payload)
		}
	}
}

func (s *Store) handle(payload string) {
	var m message
	if json.Unmarshal([]byte(payload), &m) != nil {
		return
	}
	switch m.Type {
	case "fill":
		s.mu.Lock()
		for _, w := range s.waiters[m.Hash] {
			select {
			case w <- struct{}{}:
			default:
			}
		}
		s.mu.Unlock()
	case "forget":
		if m.Origin == s.origin {
			return
		}
		s.mu.Lock()
		t, ok := s.tracked[m.Hash]
		if ok && valueID(t.value) == m.Entry {
			delete(s.tracked, m.Hash)
			s.raiseLocked(m.Hash, t.version+1)
		} else {
			ok = false
		}
		s.mu.Unlock()
		if ok {
			s.opts.Logger.Debug("another replica invalidated a credential; dropped here", slog.String("credential", t.key.Credential))
			s.notify(providers.Invalidation{Key: t.key})
		}
	case "credential":
		if m.Origin == s.origin || m.Cred == "" {
			return
		}
		s.mu.Lock()
		for h, t := range s.tracked {
			if t.key.Credential == m.Cred && t.key.Version == m.Ver {
				delete(s.tracked, h)
			}
		}
		s.mu.Unlock()
		s.opts.Logger.Debug("another replica invalidated a credential definition; dropped here", slog.String("credential", m.Cred))
		s.notify(providers.Invalidation{Credential: m.Cred, Version: m.Ver})
	}
}

func (s *Store) notify(inv providers.Invalidation) {
	s.watchMu.Lock()
	f := s.watch
	s.watchMu.Unlock()
	if f != nil {
		f(inv)
	}
}

// health pings Redis every HealthInterval and flips the state.
func (s *Store) health() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if err := s.ping(s.ctx); err != nil {
			if s.ctx.Err() == nil {
				s.fail("ping", err)
			}
			continue
		}
		s.redis.Succeed()
	}
}

func (s *Store) ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	if err := s.rdb.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("rediscache: ping: %w", err)
	}
	return nil
}

// fail records a failed operation and, on the first failure, marks
// Redis down: until the health check succeeds, Fetch skips Redis.
func (s *Store) fail(op string, err error) { s.redis.Fail(op, err) }

func (s *Store) observeUp(up bool) {
	if s.opts.Observer != nil {
		s.opts.Observer.RedisUp(up)
	}
}

func (s *Store) reject(reason string) {
	if s.opts.Observer != nil {
		s.opts.Observer.Rejected(reason)
	}
}

func (s *Store) lookup(result string) {
	if s.opts.Observer != nil {
		s.opts.Observer.SharedLookup(result)
	}
}

var _ providers.SharedCache = (*Store)(nil)
