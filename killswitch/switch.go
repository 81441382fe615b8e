package killswitch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credgate/credgate/internal/backoff"
	"github.com/credgate/credgate/internal/fleet"
	"github.com/redis/go-redis/v9"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultNamespace      = "credgate"
	DefaultOpTimeout      = 500 * time.Millisecond
	DefaultResyncInterval = 5 * time.Second
	// DefaultMaxEntries bounds the switches in force (Options.MaxEntries).
	DefaultMaxEntries = 4096
)

// ErrFull is returned by Disable and Quarantine when the switches in
// force reach their bound (Options.MaxEntries; for Quarantine, three
// quarters of it): the state is stored in Redis and the state file,
// re-read by every replica every resync interval and rewritten whole on
// every change, so it is not left to grow without bound.
var ErrFull = errors.New("killswitch: too many switches in force")

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
	// Generation counts the changes of the state in force.
	Generation uint64
	// Unverified, when not empty, says why the state last read from
	// Redis was not put in force (it does not verify against the keys,
	// or is older than the state in force): the last verified state
	// stays in force.
	Unverified string
	// Held reports whether this replica holds a verified state: one it
	// read from Redis or wrote there, one its state file kept, or Redis
	// answered that it holds none (true for memory). A replica that
	// started without a state file while Redis was unavailable, or holds
	// a state it cannot verify (a key rotation in progress, tampering),
	// has none and cannot tell what the fleet disabled: the gateway
	// reports it not ready and refuses requests until it holds one.
	Held bool
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
	// VerifyFailed is called for every state or message read from Redis
	// that was not put in force because it does not verify, with the
	// reason (ReasonUnsigned, ReasonBadMAC, ...).
	VerifyFailed(reason string)
	// WroteBack is called when switches this replica held and Redis
	// lacked were written to Redis, by why Redis lacked them:
	// WrotePending (disabled while Redis was unavailable), WroteRestored
	// (Redis held no state at all) or WroteRepaired (Redis held a state
	// that does not verify), with how many.
	WroteBack(why string, n int)
}

// Why switches were written back (Observer.WroteBack).
const (
	WrotePending  = "pending"
	WroteRestored = "restored"
	// WroteRepaired: the state in Redis did not verify (edited, unsigned,
	// or an older signed state copied back) and this replica wrote its
	// last verified state over it, so that a replica that starts
	// afterwards does not begin with the tampered state.
	WroteRepaired = "repaired"
)

// Options configure a Switch.
type Options struct {
	// Client, when set, shares the state through Redis; nil keeps it in
	// this process. The Switch does not close it.
	Client redis.UniversalClient
	// Keys authenticate the state in Redis (required with Client): the
	// MAC key is derived from each (HKDF-SHA256); the first signs, all
	// verify. They never go to Redis.
	Keys []Key
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
	// MaxEntries bounds the switches in force, all kinds together
	// (DefaultMaxEntries when zero): a disable beyond it fails with
	// ErrFull, and a quarantine (Quarantine, a tripwire's) beyond three
	// quarters of it, so that callers who trip tripwires from many
	// addresses cannot take the room an operator needs in an incident.
	// A state read from Redis or the state file is put in force whatever
	// its size.
	MaxEntries int
}

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
	mac     *macKeys

	cur   atomic.Pointer[Snapshot]
	redis fleet.Health

	// mu serialises every change of the state and every Redis read or
	// write of it, so that reads are applied in the order Redis answered
	// them.
	mu sync.Mutex
	// known is the state last read from Redis (or the state file); it is
	// the whole state without Redis.
	known map[string]Entry
	// pending are disables made while Redis was unavailable.
	pending map[string]Entry
	// gen is the generation of known: a state read from Redis with a
	// lower one is a rollback and is not put in force.
	gen uint64
	// unverified is why the state last read from Redis was not put in
	// force; nil while it verifies.
	unverified atomic.Pointer[string]
	// held is Status.Held.
	held atomic.Bool
	// newer is set while the state in force came from a newer credgate
	// and holds a switch this version cannot enforce (ReasonNewer): Held
	// is then false, so the gateway refuses every request.
	newer atomic.Bool
	// foreign are the fields of the state in force that a newer credgate
	// wrote and this version cannot read (ReasonNewer), with their
	// values: every state this replica writes carries them.
	foreign map[string]string
	// newerMsg is the ReasonNewer detail of the state in force, empty
	// when it has none (Status.Unverified says it).
	newerMsg atomic.Pointer[string]
	// file is what the state file was last written with.
	file struct {
		snap    *Snapshot
		gen     uint64
		pending []string
		foreign map[string]string
	}
	// lastSync (unix nanoseconds) and npending are Status's lock-free
	// copies.
	lastSync atomic.Int64
	npending atomic.Int64
	ngen     atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// message is what a replica publishes after a change. Receivers re-read
// the hash; they apply the message itself only when that read fails.
type message struct {
	Origin string `json:"o"`
	Op     string `json:"op"` // disable, enable, state
	Entry  Entry  `json:"e"`
	// Gen is the generation the change made, MAC authenticates the
	// message (messageParts).
	Gen uint64 `json:"g"`
	MAC string `json:"m"`
}

// New returns a Switch holding the state file's entries (if any) and,
// with Redis, the fleet's state read from Redis. An unreachable Redis is
// not an error: the Switch keeps what it has and catches up when Redis
// answers. A state file that cannot be parsed is an error.
func New(ctx context.Context, opts Options) (*Switch, error) {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if !fleet.ValidNamespace(opts.Namespace) {
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
		origin:  fleet.NewOrigin(8),
		known:   map[string]Entry{},
		pending: map[string]Entry{},
	}
	s.cur.Store(newSnapshot(nil))
	s.redis = fleet.Health{Log: s.log,
		Down:      "kill switch: Redis unavailable; the last known switches stay in force",
		Recovered: "kill switch: Redis available; switch state shared again"}
	if opts.Observer != nil {
		s.redis.OnError = opts.Observer.SyncError
	}
	s.redis.Set(true)
	if opts.Client != nil {
		if len(opts.Keys) == 0 {
			return nil, errors.New("killswitch: the state in Redis needs a key to authenticate it (the gateway passes cache.redis.encryption_keys)")
		}
		mk, err := newMACKeys(opts.Keys)
		if err != nil {
			return nil, err
		}
		s.mac = mk
	}
	if opts.StateFile != "" {
		entries, gen, pending, newer, err := readStateFile(opts.StateFile)
		if err != nil {
			return nil, err
		}
		if err := checkStateDir(opts.StateFile); err != nil {
			return nil, err
		}
		for _, e := range entries {
			if pending[e.ID()] && s.rdb != nil {
				s.pending[e.ID()] = e
			} else {
				s.known[e.ID()] = e
			}
		}
		s.gen = gen
		// Entries or a generation: a state this or another replica
		// held verified when it wrote the file.
		s.held.Store(gen > 0 || len(entries) > 0)
		if s.rdb != nil && len(newer) > 0 {
			st := remoteState{gen: gen}
			for f, v := range newer {
				st.addForeign(f, v)
				st.newerSwitches = st.newerSwitches || !strings.HasPrefix(f, "_")
			}
			slices.Sort(st.newer)
			s.newerLocked(&st)
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
	err := s.resyncLocked(ctx, true)
	s.mu.Unlock()
	switch {
	case err != nil && s.held.Load():
		s.log.Info("kill switch: enforcing the state file's switches until Redis answers", slog.Int("switches", s.cur.Load().Len()))
	case err != nil:
		s.log.Error("kill switch: Redis is unavailable and this replica holds no switch state of its own (no admin.state_file, or an empty one), so it cannot tell what the fleet disabled: it reports not ready (/readyz kill_switch_unverified) and refuses requests (503 kill_switch_unverified) until Redis answers; set admin.state_file so that a replica starting during a Redis outage enforces the switches it last knew",
			slog.Any("error", err))
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
		return Status{Backend: "memory", Up: true, Held: true}
	}
	st := Status{Backend: "redis", Up: s.redis.Up(), Pending: int(s.npending.Load()), Generation: s.ngen.Load(), Held: s.Held()}
	if u := s.unverified.Load(); u != nil {
		st.Unverified = *u
	} else if u := s.newerMsg.Load(); u != nil {
		st.Unverified = *u
	}
	if ns := s.lastSync.Load(); ns != 0 {
		st.LastSync = time.Unix(0, ns)
	}
	return st
}

// Held reports whether this replica holds a verified state (Status's
// Held) without building a Status: the request path asks it every time.
// A state a newer credgate wrote with a switch this version cannot
// enforce is not held (ReasonNewer): fail closed.
func (s *Switch) Held() bool { return s.rdb == nil || (s.held.Load() && !s.newer.Load()) }

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
// changes nothing and returns the entry in force. A new switch beyond
// Options.MaxEntries fails with ErrFull.
func (s *Switch) Disable(ctx context.Context, e Entry) (Result, error) {
	return s.disable(ctx, e, s.maxEntries(), "admin.max_switches")
}

// Quarantine is Disable for a switch the gateway sets by itself (a
// tripwire's): it fails with ErrFull once three quarters of MaxEntries
// are in force, keeping the last quarter for operators.
func (s *Switch) Quarantine(ctx context.Context, e Entry) (Result, error) {
	m := s.maxEntries()
	return s.disable(ctx, e, m-m/4, "three quarters of admin.max_switches, the share of switches a tripwire may set")
}

func (s *Switch) maxEntries() int {
	if s.opts.MaxEntries > 0 {
		return s.opts.MaxEntries
	}
	return DefaultMaxEntries
}

// errFull is ErrFull for a switch e refused at limit (named by what).
func errFull(e Entry, n, limit int, what string) error {
	return fmt.Errorf("%w: %d are in force, %s is %d; %s was not disabled: enable switches no longer needed (or disable a workload or credential that covers many rules) first, or raise admin.max_switches", ErrFull, n, what, limit, e)
}

func (s *Switch) disable(ctx context.Context, e Entry, limit int, what string) (Result, error) {
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
		if n := len(s.known); n >= limit {
			return Result{}, errFull(e, n, limit, what)
		}
		s.known[id] = e
		s.applyLocked("admin API")
		return Result{Entry: e, Changed: true, Scope: ScopeReplica}, nil
	}
	stored := e
	full := 0 // the switches in force when e found no room
	changed, err := s.commitLocked(ctx, "disable", e, true, func(m map[string]Entry, _ remoteState) bool {
		if old, ok := m[id]; ok {
			stored = old
			return false
		}
		if len(m) >= limit {
			full = len(m)
			return false
		}
		m[id] = e
		return true
	})
	if err == nil && full > 0 {
		return Result{}, errFull(e, full, limit, what)
	}
	if err != nil {
		if old, ok := s.known[id]; ok {
			// Disabled fleet-wide as far as this replica knows.
			return Result{Entry: old, Scope: ScopeFleet}, nil
		}
		if old, ok := s.pending[id]; ok {
			return Result{Entry: old, Scope: ScopeReplica, Pending: true}, nil
		}
		if n := len(s.known) + len(s.pending); n >= limit {
			return Result{}, errFull(e, n, limit, what)
		}
		s.pending[id] = e
		s.log.Warn("kill switch: Redis unavailable; the switch is in force on this replica and will be written to Redis when it answers",
			slog.String("switch", id), slog.Any("error", err))
		s.applyLocked("admin API")
		return Result{Entry: e, Changed: true, Scope: ScopeReplica, Pending: true}, nil
	}
	return Result{Entry: stored, Changed: changed, Scope: ScopeFleet}, nil
}

// Enable lifts the switch of kind and name. With Redis it fails with
// ErrUnavailable when Redis does not answer, with no exception: not even
// a pending disable (one this replica took while Redis was unavailable)
// is lifted here alone, because a write that timed out may have reached
// Redis and the other replicas all the same, and the next read would
// then undo the enable on this replica only. Once Redis answers, the
// pending disable is written back and enabled like any other.
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
	old := probe
	changed, err := s.commitLocked(ctx, "enable", probe, true, func(m map[string]Entry, _ remoteState) bool {
		e, ok := m[id]
		if !ok {
			return false
		}
		old = e
		delete(m, id)
		return true
	})
	if err != nil {
		return Result{}, fmt.Errorf("%w; %s stays disabled, retry when Redis answers: %v", ErrUnavailable, probe, err)
	}
	if changed {
		return Result{Entry: old, Changed: true, Scope: ScopeFleet}, nil
	}
	return Result{Entry: probe, Scope: ScopeFleet}, nil
}

// Lua: replace the whole hash with the fields ARGV[5..] (pairs) when its
// generation and MAC are still ARGV[1] and ARGV[2] (as the writer read
// them; "" for absent), and publish ARGV[4] on ARGV[3], all at once.
// Returns 1 when written, 0 when another writer came first.
var stateScript = redis.NewScript(`
local g = redis.call("HGET", KEYS[1], "` + genField + `") or ""
local m = redis.call("HGET", KEYS[1], "` + macField + `") or ""
if g ~= ARGV[1] or m ~= ARGV[2] then return 0 end
redis.call("DEL", KEYS[1])
for i = 5, #ARGV, 2 do
  redis.call("HSET", KEYS[1], ARGV[i], ARGV[i+1])
end
redis.call("PUBLISH", ARGV[3], ARGV[4])
return 1`)

// maxCommitAttempts bounds the retries of a write that another replica's
// write overtook.
const maxCommitAttempts = 5

// readLocked reads the hash and verifies it.
func (s *Switch) readLocked(ctx context.Context) (remoteState, error) {
	rctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
	all, err := s.rdb.HGetAll(rctx, s.hash).Result()
	cancel()
	if err != nil {
		s.redis.Fail("read", err)
		return remoteState{}, fmt.Errorf("killswitch: read %s: %w", s.hash, err)
	}
	s.redis.Succeed()
	return s.mac.verifyState(s.hash, all), nil
}

// acceptLocked takes a state read from Redis into account and returns
// the state a change builds on and its generation. A verified state at
// least as new as the one in force becomes the one in force; anything
// else (absent, unverifiable, older) leaves the state in force as it is
// (nothing is re-enabled because of data that does not verify), and the
// change builds on it. An older state gets its err (ReasonRollback).
func (s *Switch) acceptLocked(st *remoteState) (map[string]Entry, uint64) {
	switch {
	case !st.exists:
		// Redis answered that there is no state: nothing is disabled
		// but what this replica holds, which it writes back.
		s.hold()
		return s.known, s.gen
	case st.err == nil && st.gen < s.gen:
		st.err = &errVerify{ReasonRollback, fmt.Sprintf("generation %d is older than generation %d already in force (an older state was copied back)", st.gen, s.gen)}
	case st.err == nil:
		s.known, s.gen = st.entries, st.gen
		s.verified()
		s.newerLocked(st)
		return s.known, s.gen
	}
	s.verifyFailed(st.err)
	return s.known, max(s.gen, st.gen)
}

// commitLocked reads the state, lets change edit a copy of it and, when
// change reports an edit, writes the result back signed, with the next
// generation, unless another writer came first (then it starts over). The
// state in force is then the one written. op and e are for the message
// to the other replicas.
//
// Every write also writes back what this replica holds and Redis lacks
// (writeBackLocked): the pending disables, and, when the hash does not
// exist at all, everything in force. So the first call Redis answers,
// whichever it is, writes them, and a read that finds something to write
// back writes even when change edits nothing. With repair, a state in
// Redis that does not verify is written over with the last verified one
// (repairable).
func (s *Switch) commitLocked(ctx context.Context, op string, e Entry, repair bool, change func(m map[string]Entry, st remoteState) bool) (bool, error) {
	for range maxCommitAttempts {
		st, err := s.readLocked(ctx)
		if err != nil {
			return false, err
		}
		base, gen := s.acceptLocked(&st)
		next := maps.Clone(base)
		if next == nil {
			next = map[string]Entry{}
		}
		restored, flushed := s.writeBackLocked(next, st)
		repaired := repair && s.repairable(st)
		changed := change(next, st)
		if !changed && restored+flushed == 0 && !repaired {
			// Redis answered and holds every pending disable already.
			clear(s.pending)
			s.syncedLocked()
			s.applyLocked("redis")
			return false, nil
		}
		if (restored+flushed > 0 || repaired) && op != "state" {
			// The message then describes more than one change: receivers
			// must re-read the state rather than apply it.
			op, e = "state", Entry{}
		}
		gen++
		fields := make(map[string]string, len(next)+2)
		for id, e := range next {
			v, _ := json.Marshal(e)
			fields[id] = string(v)
		}
		// Fields a newer credgate wrote that this version cannot read
		// are written back as they are: dropping them would lift the
		// switches they hold.
		for f, v := range s.foreign {
			if _, ok := fields[f]; !ok {
				fields[f] = v
			}
		}
		fields[genField] = strconv.FormatUint(gen, 10)
		fields[macField] = s.mac.sign(stateParts(s.hash, gen, fields))
		msg := message{Origin: s.origin, Op: op, Entry: e, Gen: gen}
		msg.MAC = s.mac.sign(messageParts(s.channel, msg))
		mb, _ := json.Marshal(msg)
		args := make([]any, 0, 4+2*len(fields))
		args = append(args, st.rawGen, st.rawMAC, s.channel, string(mb))
		for f, v := range fields {
			args = append(args, f, v)
		}
		wctx, cancel := context.WithTimeout(ctx, s.opts.OpTimeout)
		n, err := stateScript.Run(wctx, s.rdb, []string{s.hash}, args...).Int()
		cancel()
		if err != nil {
			s.redis.Fail("write", err)
			return false, fmt.Errorf("killswitch: write %s: %w", s.hash, err)
		}
		s.redis.Succeed()
		if n != 1 {
			continue
		}
		s.known, s.gen = next, gen
		s.verified()
		s.syncedLocked()
		s.wroteBackLocked(restored, flushed, gen)
		if repaired {
			s.log.Warn("kill switch: wrote the last verified switch state over the state in Redis that does not verify, so that replicas starting now enforce it",
				slog.String("reason", st.err.reason), slog.Int("switches", len(next)), slog.Uint64("generation", gen))
			if s.opts.Observer != nil {
				s.opts.Observer.WroteBack(WroteRepaired, len(next))
			}
		}
		s.applyLocked("admin API")
		return changed, nil
	}
	return false, fmt.Errorf("killswitch: write %s: %d other writers came first; retry", s.hash, maxCommitAttempts)
}

// writeBackLocked adds to m, the state about to be written, what this
// replica holds and the state read from Redis (st) lacks: every switch in
// force when the hash does not exist at all (Redis lost its data, or the
// key was deleted: m is then the state this replica knew), and the
// pending disables. It returns how many of each.
func (s *Switch) writeBackLocked(m map[string]Entry, st remoteState) (restored, flushed int) {
	if !st.exists {
		restored = len(m)
	}
	for id, e := range s.pending {
		if _, ok := m[id]; !ok {
			m[id] = e
			flushed++
		}
	}
	return restored, flushed
}

// repairable reports whether st, the state read from Redis, is one that
// this replica writes its last verified state over: it exists and does
// not verify (edited, unsigned, malformed, or an older signed state
// copied back), and this replica holds a verified state (a generation
// read from Redis, written, or kept in the state file). Without the
// repair, a replica that starts afterwards with no state file of its own
// knows only the tampered state: it enforces nothing of what the fleet
// disabled, or, for an older signed state copied back, puts it in force.
//
// A state signed under a key id this replica does not hold is left as it
// is: that is also what a rotation of cache.redis.encryption_keys in
// progress looks like to the replicas that lack the new key, and their
// last verified state lacks what the replicas with it changed since, so
// writing it over would lift those changes.
func (s *Switch) repairable(st remoteState) bool {
	return st.exists && st.err != nil && st.err.reason != ReasonUnknownKey && s.gen > 0
}

// wroteBackLocked records a write that carried what writeBackLocked
// added: the pending disables are now in Redis, and each kind of write-back
// is logged and counted.
func (s *Switch) wroteBackLocked(restored, flushed int, gen uint64) {
	clear(s.pending)
	if restored > 0 {
		s.log.Warn("kill switch: Redis held no switch state (restarted without persistence, or the key was deleted); wrote back the switches this replica had in force",
			slog.Int("switches", restored), slog.Uint64("generation", gen))
		if s.opts.Observer != nil {
			s.opts.Observer.WroteBack(WroteRestored, restored)
		}
	}
	if flushed > 0 {
		s.log.Info("kill switch: Redis answers again; wrote the switches disabled on this replica while it was unavailable, every replica now applies them",
			slog.Int("switches", flushed), slog.Uint64("generation", gen))
		if s.opts.Observer != nil {
			s.opts.Observer.WroteBack(WrotePending, flushed)
		}
	}
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

// resyncLocked reads the whole state from Redis and puts it in force
// when it verifies. Disables this replica holds that Redis lacks are
// written first (commitLocked): the pending ones, and, when the hash does
// not exist at all (Redis lost its data, or it was deleted), everything
// this replica had in force; with repair, a state that does not verify is
// written over with the last verified one.
func (s *Switch) resyncLocked(ctx context.Context, repair bool) error {
	_, err := s.commitLocked(ctx, "state", Entry{}, repair, func(map[string]Entry, remoteState) bool { return false })
	s.applyLocked("redis")
	return err
}

// syncedLocked records a full read of the state.
func (s *Switch) syncedLocked() {
	now := s.opts.Now()
	s.lastSync.Store(now.UnixNano())
	if s.opts.Observer != nil {
		s.opts.Observer.Synced(now)
	}
}

// newerLocked records whether st, a verified state put in force, holds
// fields a newer credgate wrote that this version cannot read: logged
// once per state, counted every read (Observer.VerifyFailed ReasonNewer),
// and, when one is a switch, the replica no longer holds an enforceable
// state (Held false: it refuses every request, fail closed).
func (s *Switch) newerLocked(st *remoteState) {
	s.foreign = st.foreign
	s.newer.Store(st.newerSwitches)
	if len(st.newer) == 0 {
		if s.newerMsg.Swap(nil) != nil {
			s.log.Info("kill switch: the state in Redis holds nothing this version cannot read any more", slog.Uint64("generation", s.gen))
		}
		return
	}
	msg := st.newerDetail()
	if s.opts.Observer != nil {
		s.opts.Observer.VerifyFailed(ReasonNewer)
	}
	if old := s.newerMsg.Swap(&msg); old != nil && *old == msg {
		return
	}
	if st.newerSwitches {
		s.log.Error("kill switch: the state in Redis holds a switch this version cannot enforce; this replica refuses every request (503 kill_switch_unverified, /readyz not ready) rather than let through what it may disable; it keeps the switch in every state it writes. Upgrade this replica, or enable that switch through a replica of the newer version",
			slog.String("key", s.hash), slog.String("reason", ReasonNewer), slog.String("detail", msg))
		return
	}
	s.log.Warn("kill switch: the state in Redis holds metadata this version cannot read; its switches are in force, and this replica keeps the metadata as it is in every state it writes. Upgrade this replica",
		slog.String("key", s.hash), slog.String("reason", ReasonNewer), slog.String("detail", msg))
}

// verified records that the state in Redis verified.
func (s *Switch) verified() {
	if old := s.unverified.Swap(nil); old != nil {
		s.log.Info("kill switch: the state in Redis verifies again", slog.Uint64("generation", s.gen))
	}
	s.hold()
}

// hold records that this replica holds a verified state (the change is
// logged by verified, "verifies again", when it had not).
func (s *Switch) hold() { s.held.Store(true) }

// verifyFailed records a state (or message) that does not verify: an
// error log line when the reason changes, a metric every time.
func (s *Switch) verifyFailed(err *errVerify) {
	msg := err.Error()
	if s.opts.Observer != nil {
		s.opts.Observer.VerifyFailed(err.reason)
	}
	if old := s.unverified.Swap(&msg); old == nil || *old != msg {
		s.log.Error("kill switch: ignoring switch state in Redis that does not verify; the last verified state stays in force. Someone other than credgate wrote to Redis, or the replicas do not share cache.redis.encryption_keys; a disable or enable through the admin API writes a new signed state",
			slog.String("reason", err.reason), slog.String("detail", err.detail), slog.Uint64("generation_in_force", s.gen))
		if !s.held.Load() {
			s.log.Error("kill switch: this replica holds no verified switch state (no admin.state_file, and the state in Redis does not verify), so it would enforce nothing of what the fleet disabled: it reports not ready (/readyz kill_switch_unverified) until the state in Redis verifies (give it the key that signed it, cache.redis.encryption_keys) or a disable or enable through the admin API writes a new signed state",
				slog.String("reason", err.reason))
		}
	}
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
	s.ngen.Store(s.gen)
	next := newSnapshot(all)
	prev := s.cur.Load()
	if sameEntries(prev, next) {
		// The generation or what is pending may have changed (a pending
		// disable written back): the file says so.
		s.writeStateFileLocked(prev)
		return
	}
	s.cur.Store(next)
	s.writeStateFileLocked(next)
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
	if s.opts.Observer != nil {
		s.opts.Observer.Applied(next)
	}
}

// writeStateFileLocked writes the state in force, next, to the state
// file, if there is one and what it would hold changed since the last
// write.
func (s *Switch) writeStateFileLocked(next *Snapshot) {
	if s.opts.StateFile == "" {
		return
	}
	pending := slices.Sorted(maps.Keys(s.pending))
	if s.file.snap == next && s.file.gen == s.gen && slices.Equal(s.file.pending, pending) && maps.Equal(s.file.foreign, s.foreign) {
		return
	}
	s.file.snap, s.file.gen, s.file.pending, s.file.foreign = next, s.gen, pending, s.foreign
	if err := writeStateFile(s.opts.StateFile, s.gen, next.entries, pending, s.foreign); err != nil {
		// Written again at the next change.
		s.file.snap = nil
		s.log.Warn("kill switch: writing the state file failed; the switches are in force but may not survive a restart", slog.Any("error", err))
		if s.opts.Observer != nil {
			s.opts.Observer.SyncError("state_file")
		}
	}
}

// Bounds of the backoff between retries of a re-read that a message or
// a (re)subscription triggered and that failed (retryLimit is capped by
// Options.ResyncInterval).
const (
	retryBase  = 50 * time.Millisecond
	retryLimit = time.Second
)

// run follows the channel until Close: every message and every
// (re)subscription triggers a read of the whole state, as does a timer.
// A triggered read that fails is retried with a jittered backoff
// (internal/backoff) until one succeeds, rather than left to the timer:
// the subscription coming back is how a replica learns that Redis is
// back, and the first read then may still fail (Redis loading its data,
// a write paused by a failover, a connection that went stale), while
// pending disables wait for it and the other replicas wait for them.
func (s *Switch) run() {
	defer s.wg.Done()
	ps := s.rdb.Subscribe(s.ctx, s.channel)
	defer ps.Close()
	ch := ps.ChannelWithSubscriptions()
	tick := time.NewTicker(s.opts.ResyncInterval)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	limit := min(retryLimit, s.opts.ResyncInterval)
	failures := 0 // failed reads since the last success, while retrying
	resync := func(msg *message, triggered bool) {
		if s.sync(msg) == nil {
			failures = 0
			retry.Stop()
			return
		}
		if !triggered && failures == 0 {
			// The timer's own reads during an outage are not retried:
			// the resubscription will say when Redis is back.
			return
		}
		failures++
		retry.Reset(backoff.Delay(retryBase, limit, failures))
	}
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
					resync(nil, true)
				}
			case *redis.Message:
				var msg message
				if json.Unmarshal([]byte(m.Payload), &msg) != nil || msg.Origin == s.origin {
					continue
				}
				resync(&msg, true)
			}
		case <-retry.C:
			resync(nil, true)
		case <-tick.C:
			resync(nil, false)
		}
	}
}

// sync re-reads the state and returns why that failed; when it fails
// after a message, the message itself is applied so that a change
// another replica made is not lost, provided it verifies and is the
// change right after the state in force.
func (s *Switch) sync(msg *message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A read that a message triggered does not repair: two replicas
	// that do not share cache.redis.encryption_keys would otherwise
	// write over each other's state as fast as Redis answers. The
	// periodic reads repair.
	err := s.resyncLocked(s.ctx, msg == nil)
	if err == nil || msg == nil || msg.Entry.Validate() != nil {
		return err
	}
	if verr := s.mac.verify(msg.MAC, messageParts(s.channel, *msg)); verr != nil {
		s.verifyFailed(verr.(*errVerify))
		return err
	}
	if msg.Gen != s.gen+1 {
		return err
	}
	switch msg.Op {
	case "disable":
		s.known[msg.Entry.ID()] = msg.Entry
	case "enable":
		delete(s.known, msg.Entry.ID())
	default:
		return err
	}
	s.gen = msg.Gen
	s.applyLocked("redis message")
	return err
}
