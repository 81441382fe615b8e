package killswitch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultNamespace      = "credgate"
	DefaultOpTimeout      = 500 * time.Millisecond
	DefaultResyncInterval = 5 * time.Second
)

// genField is the hash field counting changes. Its presence tells a hash
// that holds the fleet's state (perhaps with nothing disabled) from one
// that does not exist (a new deployment, or a Redis that lost its data).
const genField = "_gen"

// ErrUnavailable is returned by Enable when the change cannot be written
// to Redis: enabling on one replica alone would be undone by the next
// read of the fleet's state.
var ErrUnavailable = errors.New("killswitch: Redis is unavailable")

// Scope says where a change took effect.
type Scope string

const (
	// ScopeFleet: written to Redis; every replica applies it.
	ScopeFleet Scope = "fleet"
	// ScopeReplica: this replica only (no Redis configured, or Redis
	// unavailable: see Result.Pending).
	ScopeReplica Scope = "replica"
)

// Result is the outcome of Disable or Enable.
type Result struct {
	// Entry is the switch: the new one, the one already in force when
	// Changed is false, or the one removed by Enable.
	Entry Entry
	// Changed is false when the item was already disabled (Disable) or
	// was not disabled (Enable).
	Changed bool
	Scope   Scope
	// Pending is set when Redis was unavailable: the disable is in force
	// on this replica and is written to Redis when it answers again.
	Pending bool
}

// Status describes where the state comes from.
type Status struct {
	// Backend is "redis" or "memory".
	Backend string
	// Up is whether the last Redis operation succeeded (true for memory).
	Up bool
	// LastSync is when the state was last read from Redis in full; zero
	// before the first successful read and for memory.
	LastSync time.Time
	// Pending counts disables waiting to be written to Redis.
	Pending int
}

// Observer receives a Switch's events, for metrics. Implementations are
// safe for concurrent use and fast.
type Observer interface {
	// Applied is called with every new snapshot put in force (and once by
	// New). It is called with the Switch's lock held: it must not call
	// the Switch's methods.
	Applied(s *Snapshot)
	// SyncError is called for every failed operation, by operation:
	// read, write, state_file.
	SyncError(op string)
	// Synced is called after every full read of the state from Redis.
	Synced(at time.Time)
}

// Options configure a Switch.
type Options struct {
	// Client, when set, shares the state through Redis; nil keeps it in
	// this process. The Switch does not close it.
	Client redis.UniversalClient
	// Namespace prefixes the hash and the channel (the deployment's
	// cache.redis.namespace).
	Namespace string
	// OpTimeout bounds each Redis operation.
	OpTimeout time.Duration
	// ResyncInterval is how often the whole state is re-read from Redis,
	// beside the reads that messages and (re)subscriptions trigger.
	ResyncInterval time.Duration
	// StateFile, when set, is a JSON file that holds the state in force:
	// written after every change, read by New. Without Redis it makes
	// switches survive a restart; with Redis it is what a replica that
	// starts while Redis is down enforces.
	StateFile string
	// Logger receives every change and availability change.
	Logger *slog.Logger
	// Observer, if set, receives events for metrics.
	Observer Observer
	// Now is the clock (tests).
	Now func() time.Time
}

var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// Switch is the set of disabled items in force on this replica, kept in
// step with the fleet through Redis when configured. It is safe for
// concurrent use; Snapshot never blocks.
type Switch struct {
	opts    Options
	log     *slog.Logger
	rdb     redis.UniversalClient
	hash    string
	channel string
	origin  string

	cur atomic.Pointer[Snapshot]
	up  atomic.Bool

	// mu serialises every change of the state and every Redis read or
	// write of it, so that reads are applied in the order Redis answered
	// them.
	mu sync.Mutex
	// known is the state last read from Redis (or the state file); it is
	// the whole state without Redis.
	known map[string]Entry
	// pending are disables made while Redis was unavailable.
	pending map[string]Entry
	// lastSync (unix nanoseconds) and npending are Status's lock-free
	// copies.
	lastSync atomic.Int64
	npending atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// message is what a replica publishes after a change. Receivers re-read
// the hash; they apply the message itself only when that read fails.
type message struct {
	Origin string `json:"o"`
	Op     string `json:"op"` // disable, enable
	Entry  Entry  `json:"e"`
}

// New returns a Switch holding the state file's entries (if any) and,
// with Redis, the fleet's state read from Redis. An unreachable Redis is
// not an error: the Switch keeps what it has and catches up when Redis
// answers. A state file that cannot be parsed is an error.
func New(ctx context.Context, opts Options) (*Switch, error) {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if !namespaceRE.MatchString(opts.Namespace) {
		return nil, fmt.Errorf("killswitch: namespace %q: use 1 to 64 letters, digits or _.:-", opts.Namespace)
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = DefaultOpTimeout
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = DefaultResyncInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Switch{
		opts:    opts,
		log:     opts.Logger,
		rdb:     opts.Client,
		hash:    opts.Namespace + ":switches",
		channel: opts.Namespace + ":switches:events",
		origin:  randomHex(8),
		known:   map[string]Entry{},
		pending: map[string]Entry{},
	}
	s.cur.Store(newSnapshot(nil))
	s.up.Store(true)
	if opts.StateFile != "" {
		entries, err := readStateFile(opts.StateFile)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			s.known[e.ID()] = e
		}
	}
	s.mu.Lock()
	s.applyLocked("state file")
	s.mu.Unlock()
	if opts.Observer != nil && s.cur.Load().Len() == 0 {
		opts.Observer.Applied(s.cur.Load())
	}
	if s.rdb == nil {
		return s, nil
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	err := s.resyncLocked(ctx)
	s.mu.Unlock()
	if err != nil && opts.StateFile != "" {
		s.log.Info("kill switch: enforcing the state file's switches until Redis answers", slog.Int("switches", s.cur.Load().Len()))
	}
	s.wg.Add(1)
	go s.run()
	return s, nil
}

// Snapshot returns the set in force. It never blocks.
func (s *Switch) Snapshot() *Snapshot { return s.cur.Load() }

// Status returns where the state comes from and how fresh it is. It
// never blocks.
func (s *Switch) Status() Status {
	if s.rdb == nil {
		return Status{Backend: "memory", Up: true}
	}
	st := Status{Backend: "redis", Up: s.up.Load(), Pending: int(s.npending.Load())}
	if ns := s.lastSync.Load(); ns != 0 {
		st.LastSync = time.Unix(0, ns)
	}
	return st
}

// Close stops the subscriber. It does not close the Redis client.
func (s *Switch) Close() error {
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
	}
	return nil
}

// Disable puts e in force: on every replica when Redis is configured and
// answers, on this one otherwise (and on every replica once Redis answers
// again). e.Since defaults to now. Disabling what is disabled already
// changes nothing and returns the entry in force.
func (s *Switch) Disable(ctx context.Context, e Entry) (Result, error) {
	if e.Since.IsZero() {
		e.Since = s.opts.Now().UTC()
	}
	if err := e.Validate(); err != nil {
		return Result{}, err
	}
	id := e.ID()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rdb == nil {
		if old, ok := s.known[id]; ok {
			return Result{Entry: old, Scope: ScopeReplica}, nil
		}
		s.known[id] = e
		s.applyLocked("admin API")
		return Result{Entry: e, Changed: true, Scope: ScopeReplica}, nil
	}
	if old, ok := s.pending[id]; ok {
		return Result{Entry: old, Scope: ScopeReplica, Pending: true}, nil
	}
	stored, changed, err := s.writeDisable(ctx, e)
	if err != nil {
		if old, ok := s.known[id]; ok {
			// Disabled fleet-wide as far as this replica knows.
			return Result{Entry: old, Scope: ScopeFleet}, nil
		}
		s.pending[id] = e
		s.log.Warn("kill switch: Redis unavailable; the switch is in force on this replica and will be written to Redis when it answers",
			slog.String("switch", id), slog.Any("error", err))
		s.applyLocked("admin API")
		return Result{Entry: e, Changed: true, Scope: ScopeReplica, Pending: true}, nil
	}
	if err := s.resyncLocked(ctx); err != nil {
		s.known[id] = stored
		s.applyLocked("admin API")
	}
	return Result{Entry: stored, Changed: changed, Scope: ScopeFleet}, nil
}

// Enable lifts the switch of kind and name. With Redis it fails with
// ErrUnavailable when Redis does not answer, unless the switch was only
// held on this replica (a pending disable).
func (s *Switch) Enable(ctx context.Context, kind Kind, name string) (Result, error) {
	probe := Entry{Kind: kind, Name: name}
	if err := probe.Validate(); err != nil {
		return Result{}, err
	}
	id := probe.ID()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rdb == nil {
		old, ok := s.known[id]
		if !ok {
			return Result{Entry: probe, Scope: ScopeReplica}, nil
		}
		delete(s.known, id)
		s.applyLocked("admin API")
		return Result{Entry: old, Changed: true, Scope: ScopeReplica}, nil
	}
	pend, wasPending := s.pending[id]
	if wasPending {
		delete(s.pending, id)
		s.applyLocked("admin API")
	}
	old, changed, err := s.writeEnable(ctx, kind, name)
	if err != nil {
		if wasPending {
			return Result{Entry: pend, Changed: true, Scope: ScopeReplica}, nil
		}
		return Result{}, fmt.Errorf("%w; %s stays disabled, retry when Redis answers: %v", ErrUnavailable, probe, err)
	}
	if err := s.resyncLocked(ctx); err != nil {
		delete(s.known, id)
		s.applyLocked("admin API")
	}
	switch {
	case changed:
		return Result{Entry: old, Changed: true, Scope: ScopeFleet}, nil
	case wasPending:
		return Result{Entry: pend, Changed: true, Scope: ScopeReplica}, nil
	}
	return Result{Entry: probe, Scope: ScopeFleet}, nil
}

// Lua: disable ARGV[1] (the field) with the entry ARGV[2] unless it is
// disabled already, count the change and publish ARGV[4] on ARGV[3], all
// at once. Returns {1, entry} when written, {0, existing} otherwise.
var disableScript = redis.NewScript(`
if redis.call("HSETNX", KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return {0, redis.call("HGET", KEYS[1], ARGV[1])}
end
redis.call("HINCRBY", KEYS[1], "` + genField + `", 1)
redis.call("PUBLISH", ARGV[3], ARGV[4])
return {1, ARGV[2]}`)

// Lua: enable ARGV[1], count the change and publish ARGV[3] on ARGV[2].
// Returns {1, removed entry} or {0} when it was not disabled.
var enableScript = redis.NewScript(`
local old = redis.call("HGET", KEYS[1], ARGV[1])
if not old then return {0} end
redis.call("HDEL", KEYS[1], ARGV[1])
redis.call("HINCRBY", KEYS[1], "` + genField + `", 1)
redis.call("PUBLISH", ARGV[2], ARGV[3])
return {1, old}`)

// writeDisable writes e to Redis. It returns the entry in Redis (e, or
// the one already there) and whether it was written.
func (s *Switch) writeDisable(ctx context.Context, e Entry) (Entry, bool, error) {
	ev, _ := json.Marshal(e)
	msg, _ := json.Marshal(message{Origin: s.origin, Op: "disable", Entry: e})
	wctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	res, err := disableScript.Run(wctx, s.rdb, []string{s.hash}, e.ID(), ev, s.channel, msg).Slice()
	if err != nil {
		s.fail("write", err)
		return Entry{}, false, fmt.Errorf("killswitch: write %s: %w", e.ID(), err)
	}
	s.markUp()
	if len(res) == 2 {
		if v, ok := res[1].(string); ok {
			if stored, err := parseEntry(e.ID(), v); err == nil {
				return stored, res[0] == int64(1), nil
			}
		}
	}
	return e, len(res) > 0 && res[0] == int64(1), nil
}

// writeEnable removes kind/name from Redis and returns what was there.
func (s *Switch) writeEnable(ctx context.Context, kind Kind, name string) (Entry, bool, error) {
	probe := Entry{Kind: kind, Name: name}
	msg, _ := json.Marshal(message{Origin: s.origin, Op: "enable", Entry: probe})
	wctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	res, err := enableScript.Run(wctx, s.rdb, []string{s.hash}, probe.ID(), s.channel, msg).Slice()
	if err != nil {
		s.fail("write", err)
		return Entry{}, false, fmt.Errorf("killswitch: write %s: %w", probe.ID(), err)
	}
	s.markUp()
	if len(res) == 0 || res[0] != int64(1) {
		return probe, false, nil
	}
	if len(res) == 2 {
		if v, ok := res[1].(string); ok {
			if old, err := parseEntry(probe.ID(), v); err == nil {
				return old, true, nil
			}
		}
	}
	return probe, true, nil
}

// parseEntry parses a hash field and its value. A value that does not
// parse still disables what its field names (fail safe): only the
// metadata is lost.
func parseEntry(field, value string) (Entry, error) {
	kind, name, ok := strings.Cut(field, ":")
	probe := Entry{Kind: Kind(kind), Name: name}
	if !ok || probe.Validate() != nil {
		return Entry{}, fmt.Errorf("killswitch: %q is not KIND:NAME", field)
	}
	var e Entry
	if err := json.Unmarshal([]byte(value), &e); err != nil || e.ID() != field || e.Validate() != nil {
		return probe, nil
	}
	return e, nil
}

// resyncLocked reads the whole state from Redis and puts it in force.
// Disables this replica holds that Redis lacks are written first: the
// pending ones, and, when the hash does not exist at all (Redis lost its
// data), everything this replica had in force.
func (s *Switch) resyncLocked(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
	all, err := s.rdb.HGetAll(rctx, s.hash).Result()
	cancel()
	if err != nil {
		s.fail("read", err)
		return fmt.Errorf("killswitch: read %s: %w", s.hash, err)
	}
	s.markUp()
	remote := make(map[string]Entry, len(all))
	_, exists := all[genField]
	for f, v := range all {
		if f == genField {
			continue
		}
		e, err := parseEntry(f, v)
		if err != nil {
			s.log.Warn("kill switch: ignoring a hash field that names no switch", slog.String("field", f))
			continue
		}
		remote[f] = e
	}
	var restore []Entry
	if !exists {
		for id, e := range s.known {
			if _, ok := remote[id]; !ok {
				restore = append(restore, e)
			}
		}
	}
	var flush []Entry
	for id, e := range s.pending {
		if _, ok := remote[id]; !ok {
			flush = append(flush, e)
		}
	}
	var werr error
	write := func(es []Entry, pendingOnFail bool) int {
		n := 0
		for _, e := range es {
			if werr == nil {
				stored, _, err := s.writeDisable(ctx, e)
				if err == nil {
					remote[e.ID()] = stored
					delete(s.pending, e.ID())
					n++
					continue
				}
				werr = err
			}
			if pendingOnFail {
				s.pending[e.ID()] = e
			}
		}
		return n
	}
	if n := write(restore, true); n > 0 {
		s.log.Warn("kill switch: Redis held no switch state (restarted without persistence, or the key was deleted); wrote back the switches this replica had in force",
			slog.Int("switches", n))
	}
	if n := write(flush, true); n > 0 {
		s.log.Info("kill switch: wrote the switches disabled while Redis was unavailable", slog.Int("switches", n))
	}
	s.known = remote
	now := s.opts.Now()
	s.lastSync.Store(now.UnixNano())
	if s.opts.Observer != nil {
		s.opts.Observer.Synced(now)
	}
	s.applyLocked("redis")
	return werr
}

// applyLocked puts known ∪ pending in force, logs what changed, writes
// the state file and tells the observer.
func (s *Switch) applyLocked(source string) {
	all := make(map[string]Entry, len(s.known)+len(s.pending))
	for id, e := range s.known {
		all[id] = e
	}
	for id, e := range s.pending {
		all[id] = e
	}
	s.npending.Store(int64(len(s.pending)))
	next := newSnapshot(all)
	prev := s.cur.Load()
	if sameEntries(prev, next) {
		return
	}
	s.cur.Store(next)
	for _, e := range next.entries {
		if _, ok := prev.Get(e.Kind, e.Name); !ok {
			s.log.Warn("kill switch: disabled", slog.String("kind", string(e.Kind)), slog.String("name", e.Name),
				slog.String("by", e.By), slog.String("reason", e.Reason), slog.Time("since", e.Since), slog.String("source", source))
		}
	}
	for _, e := range prev.entries {
		if _, ok := next.Get(e.Kind, e.Name); !ok {
			s.log.Warn("kill switch: enabled again", slog.String("kind", string(e.Kind)), slog.String("name", e.Name), slog.String("source", source))
		}
	}
	if s.opts.StateFile != "" {
		if err := writeStateFile(s.opts.StateFile, next.entries); err != nil {
			s.log.Warn("kill switch: writing the state file failed; the switches are in force but may not survive a restart", slog.Any("error", err))
			if s.opts.Observer != nil {
				s.opts.Observer.SyncError("state_file")
			}
		}
	}
	if s.opts.Observer != nil {
		s.opts.Observer.Applied(next)
	}
}

// run follows the channel until Close: every message and every
// (re)subscription triggers a read of the whole state, as does a timer.
func (s *Switch) run() {
	defer s.wg.Done()
	ps := s.rdb.Subscribe(s.ctx, s.channel)
	defer ps.Close()
	ch := ps.ChannelWithSubscriptions()
	tick := time.NewTicker(s.opts.ResyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					s.sync(nil)
				}
			case *redis.Message:
				var msg message
				if json.Unmarshal([]byte(m.Payload), &msg) != nil || msg.Origin == s.origin {
					continue
				}
				s.sync(&msg)
			}
		case <-tick.C:
			s.sync(nil)
		}
	}
}

// sync re-reads the state; when that fails after a message, the message
// itself is applied so that a change another replica made is not lost.
func (s *Switch) sync(msg *message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.resyncLocked(s.ctx); err == nil || msg == nil || msg.Entry.Validate() != nil {
		return
	}
	switch msg.Op {
	case "disable":
		s.known[msg.Entry.ID()] = msg.Entry
	case "enable":
		delete(s.known, msg.Entry.ID())
	default:
		return
	}
	s.applyLocked("redis message")
}

func (s *Switch) markUp() {
	if !s.up.Swap(true) {
		s.log.Info("kill switch: Redis available; switch state shared again")
	}
}

func (s *Switch) fail(op string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if s.opts.Observer != nil {
		s.opts.Observer.SyncError(op)
	}
	if s.up.Swap(false) {
		s.log.Warn("kill switch: Redis unavailable; the last known switches stay in force", slog.String("op", op), slog.Any("error", err))
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
