package killswitch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/redistest"
)

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	poll.Until(t, timeout, what, cond)
}

// testKeys authenticate the state in the tests' Redis.
var testKeys = []Key{{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)}}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func entry(k Kind, name string) Entry {
	return Entry{Kind: k, Name: name, By: "alice", Reason: "INC-42", Since: t0}
}

func TestParseKindAndNames(t *testing.T) {
	for _, s := range []string{"rule", "Workload", " credential "} {
		if _, err := ParseKind(s); err != nil {
			t.Errorf("ParseKind(%q): %v", s, err)
		}
	}
	if _, err := ParseKind("destination"); err == nil || !strings.Contains(err.Error(), "use rule, workload, source or credential") {
		t.Errorf("ParseKind(destination) = %v", err)
	}
	bad := []string{"", "*", "a b", "a,b", "a\nb", strings.Repeat("x", MaxNameLen+1), "\xff"}
	for _, n := range bad {
		if err := CheckName(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckName(%q) = %v, want ErrInvalid", n, err)
		}
	}
	for _, n := range []string{"billing-charges", "anonymous", "ns/a:b", "ünïcode"} {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q) = %v", n, err)
		}
	}
	e := entry(Rule, "r")
	e.Reason = "line\nbreak"
	if err := e.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("reason with a newline: %v", err)
	}
	e = entry(Rule, "r")
	e.By = strings.Repeat("b", MaxByLen+1)
	if err := e.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("long by: %v", err)
	}
	if err := (Entry{Kind: "RULE", Name: "r"}).Validate(); err == nil {
		t.Error("upper-case kind accepted in an entry")
	}
}

func TestSnapshot(t *testing.T) {
	var nilSnap *Snapshot
	if nilSnap.Match("r", Caller{Workload: "w"}, "c") != nil || nilSnap.Len() != 0 || nilSnap.Entries() != nil {
		t.Error("nil snapshot is not empty")
	}
	s := newSnapshot(map[string]Entry{
		"workload:w1":   entry(Workload, "w1"),
		"rule:r1":       entry(Rule, "r1"),
		"credential:c1": entry(Credential, "c1"),
		"rule:r0":       entry(Rule, "r0"),
	})
	var ids []string
	for _, e := range s.Entries() {
		ids = append(ids, e.ID())
	}
	if d := cmp.Diff([]string{"credential:c1", "rule:r0", "rule:r1", "workload:w1"}, ids); d != "" {
		t.Errorf("Entries order (-want +got):\n%s", d)
	}
	if s.Count(Rule) != 2 || s.Count(Workload) != 1 || s.Count(Credential) != 1 || s.Len() != 4 {
		t.Errorf("counts: %d %d %d %d", s.Count(Rule), s.Count(Workload), s.Count(Credential), s.Len())
	}
	tests := []struct {
		rule, wl, cred string
		want           string
	}{
		{"r1", "w1", "c1", "rule:r1"},
		{"other", "w1", "c1", "workload:w1"},
		{"other", "other", "c1", "credential:c1"},
		{"other", "other", "other", ""},
		{"", "", "", ""},
		{"w1", "r1", "", ""}, // names are per kind
	}
	for _, tt := range tests {
		got := ""
		if e := s.Match(tt.rule, Caller{Workload: tt.wl}, tt.cred); e != nil {
			got = e.ID()
		}
		if got != tt.want {
			t.Errorf("Match(%q, %q, %q) = %q, want %q", tt.rule, tt.wl, tt.cred, got, tt.want)
		}
	}
	// A decision's credentials: the one injected, then those it is made
	// from; any of them disabled covers it.
	for _, tt := range []struct {
		creds []string
		want  string
	}{
		{[]string{"token", "c1"}, "credential:c1"},
		{[]string{"c1", "token"}, "credential:c1"},
		{[]string{"token", "", "key"}, ""},
		{nil, ""},
	} {
		got := ""
		if e := s.Match("other", Caller{Workload: "other"}, tt.creds...); e != nil {
			got = e.ID()
		}
		if got != tt.want {
			t.Errorf("Match(other, other, %q...) = %q, want %q", tt.creds, got, tt.want)
		}
	}
	if e, ok := s.Get(Rule, "r0"); !ok || e.By != "alice" {
		t.Errorf("Get(rule, r0) = %+v, %v", e, ok)
	}
}

// events is an Observer.
type events struct {
	mu      sync.Mutex
	applied []int
	errs    map[string]int
	synced  int
	verify  map[string]int
	wrote   map[string]int
}

func (e *events) WroteBack(why string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.wrote == nil {
		e.wrote = map[string]int{}
	}
	e.wrote[why] += n
}
func (e *events) wroteCount(why string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.wrote[why]
}

func (e *events) Applied(s *Snapshot) {
	e.mu.Lock()
	e.applied = append(e.applied, s.Len())
	e.mu.Unlock()
}
func (e *events) SyncError(op string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.errs == nil {
		e.errs = map[string]int{}
	}
	e.errs[op]++
}
func (e *events) Synced(time.Time) { e.mu.Lock(); e.synced++; e.mu.Unlock() }
func (e *events) VerifyFailed(reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.verify == nil {
		e.verify = map[string]int{}
	}
	e.verify[reason]++
}
func (e *events) verifyCount(reason string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.verify[reason]
}
func (e *events) errCount(op string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.errs[op]
}

func TestMemorySwitchAndStateFile(t *testing.T) {
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "switches.json")
	obs := &events{}
	s, err := New(ctx, Options{StateFile: state, Observer: obs, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Status(); st.Backend != "memory" || !st.Up {
		t.Errorf("Status = %+v", st)
	}
	res, err := s.Disable(ctx, Entry{Kind: Rule, Name: "charges", By: "alice", Reason: "INC-1"})
	if err != nil || !res.Changed || res.Scope != ScopeReplica || !res.Entry.Since.Equal(t0) {
		t.Fatalf("Disable = %+v, %v", res, err)
	}
	if s.Snapshot().Match("charges", Caller{}, "") == nil {
		t.Fatal("rule not disabled in the snapshot")
	}
	// Disabling again keeps the first entry.
	res, err = s.Disable(ctx, Entry{Kind: Rule, Name: "charges", By: "bob"})
	if err != nil || res.Changed || res.Entry.By != "alice" {
		t.Errorf("second Disable = %+v, %v", res, err)
	}
	if _, err := s.Disable(ctx, Entry{Kind: Workload, Name: "bad name"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Disable with a bad name: %v", err)
	}
	if _, err := s.Disable(ctx, Entry{Kind: Workload, Name: "billing"}); err != nil {
		t.Fatal(err)
	}

	// A new Switch on the same file (a restart) has both.
	s2, err := New(ctx, Options{StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if n := s2.Snapshot().Len(); n != 2 {
		t.Errorf("after restart: %d switches, want 2", n)
	}
	s2.Close()

	res, err = s.Enable(ctx, Rule, "charges")
	if err != nil || !res.Changed || res.Entry.Reason != "INC-1" {
		t.Errorf("Enable = %+v, %v", res, err)
	}
	res, err = s.Enable(ctx, Rule, "charges")
	if err != nil || res.Changed {
		t.Errorf("Enable of an enabled rule = %+v, %v", res, err)
	}
	s3, err := New(ctx, Options{StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if got := s3.Snapshot().Entries(); len(got) != 1 || got[0].ID() != "workload:billing" {
		t.Errorf("after enable and restart: %+v", got)
	}
	s3.Close()
	obs.mu.Lock()
	if d := cmp.Diff([]int{0, 1, 2, 1}, obs.applied); d != "" {
		t.Errorf("Applied sizes (-want +got):\n%s", d)
	}
	obs.mu.Unlock()

	if err := os.WriteFile(state, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Options{StateFile: state}); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("New with a corrupt state file: %v", err)
	}
}

func newClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newRedisSwitch(t *testing.T, srv *redistest.Server, opts Options) *Switch {
	t.Helper()
	opts.Client = newClient(t, srv)
	if opts.Namespace == "" {
		opts.Namespace = "test"
	}
	if opts.Keys == nil {
		opts.Keys = testKeys
	}
	opts.OpTimeout = 200 * time.Millisecond
	if opts.ResyncInterval == 0 {
		opts.ResyncInterval = time.Hour // only messages and subscriptions
	}
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func has(s *Switch, id string) func() error {
	return func() error {
		for _, e := range s.Snapshot().Entries() {
			if e.ID() == id {
				return nil
			}
		}
		return errors.New(id + " not disabled")
	}
}

func hasNot(s *Switch, id string) func() error {
	return func() error {
		if has(s, id)() == nil {
			return errors.New(id + " still disabled")
		}
		return nil
	}
}

func TestRedisPropagation(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := newRedisSwitch(t, srv, Options{})
	b := newRedisSwitch(t, srv, Options{})

	start := time.Now()
	res, err := a.Disable(ctx, entry(Rule, "charges"))
	if err != nil || !res.Changed || res.Scope != ScopeFleet {
		t.Fatalf("Disable = %+v, %v", res, err)
	}
	if has(a, "rule:charges")() != nil {
		t.Fatal("the replica that wrote the switch does not enforce it on return")
	}
	waitFor(t, time.Second, "B to apply A's disable", has(b, "rule:charges"))
	t.Logf("propagated to the other replica in %s", time.Since(start))
	if e, _ := b.Snapshot().Get(Rule, "charges"); e.By != "alice" || e.Reason != "INC-42" || !e.Since.Equal(t0) {
		t.Errorf("B's entry = %+v", e)
	}

	// Disabling on B again changes nothing and reports A's entry.
	res, err = b.Disable(ctx, Entry{Kind: Rule, Name: "charges", By: "bob"})
	if err != nil || res.Changed || res.Entry.By != "alice" {
		t.Errorf("second Disable on B = %+v, %v", res, err)
	}

	res, err = b.Enable(ctx, Rule, "charges")
	if err != nil || !res.Changed || res.Entry.By != "alice" || res.Scope != ScopeFleet {
		t.Fatalf("Enable = %+v, %v", res, err)
	}
	waitFor(t, time.Second, "A to apply B's enable", hasNot(a, "rule:charges"))

	// A replica started later reads the state.
	if _, err := a.Disable(ctx, entry(Credential, "stripe")); err != nil {
		t.Fatal(err)
	}
	c := newRedisSwitch(t, srv, Options{})
	if has(c, "credential:stripe")() != nil {
		t.Error("a new replica does not enforce the fleet's switches when New returns")
	}
	if st := c.Status(); st.Backend != "redis" || !st.Up || st.LastSync.IsZero() {
		t.Errorf("Status = %+v", st)
	}

	// Redis holds the entries under the namespace, with a change count.
	all, err := srv.Client().HGetAll(ctx, "test:switches").Result()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := all["credential:stripe"]; !ok || all[genField] == "" || all[macField] == "" || len(all) != 3 {
		t.Errorf("Redis hash = %v", all)
	}
}

// writeSigned replaces hash with the entries at generation gen, signed
// with keys, without a message.
func writeSigned(t *testing.T, rc *redis.Client, hash string, keys []Key, gen uint64, entries ...Entry) {
	t.Helper()
	mk, err := newMACKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{genField: strconv.FormatUint(gen, 10)}
	for _, e := range entries {
		v, _ := json.Marshal(e)
		fields[e.ID()] = string(v)
	}
	fields[macField] = mk.sign(stateParts(hash, gen, fields))
	ctx := context.Background()
	if err := rc.Del(ctx, hash).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.HSet(ctx, hash, fields).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestRedisMissedMessageHeals(t *testing.T) {
	srv := redistest.Start(t)
	a := newRedisSwitch(t, srv, Options{ResyncInterval: 50 * time.Millisecond})
	// A signed change written without a message (as if it were lost) is
	// picked up by the periodic read.
	rc := srv.Client()
	writeSigned(t, rc, "test:switches", testKeys, 1, entry(Workload, "batch"))
	waitFor(t, 2*time.Second, "the periodic read", has(a, "workload:batch"))
	if e, _ := a.Snapshot().Get(Workload, "batch"); e.By != "alice" {
		t.Errorf("entry = %+v", e)
	}
	writeSigned(t, rc, "test:switches", testKeys, 2)
	waitFor(t, 2*time.Second, "the periodic read", hasNot(a, "workload:batch"))
}

func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	var logs syncBuf
	obs := &events{}
	state := filepath.Join(t.TempDir(), "switches.json")
	a := newRedisSwitch(t, srv, Options{ResyncInterval: 50 * time.Millisecond, Observer: obs, StateFile: state,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	b := newRedisSwitch(t, srv, Options{ResyncInterval: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if _, err := a.Disable(ctx, entry(Rule, "charges")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "B", has(b, "rule:charges"))

	srv.Stop()
	waitFor(t, 2*time.Second, "A to notice the outage", func() error {
		if a.Status().Up {
			return errors.New("still up")
		}
		return nil
	})
	if has(a, "rule:charges")() != nil || has(b, "rule:charges")() != nil {
		t.Fatal("a switch was lifted because Redis is down")
	}
	if obs.errCount("read") == 0 {
		t.Error("no read error observed")
	}

	// A disable while Redis is down holds on this replica.
	res, err := a.Disable(ctx, entry(Workload, "batch"))
	if err != nil || !res.Changed || res.Scope != ScopeReplica || !res.Pending {
		t.Fatalf("Disable during the outage = %+v, %v", res, err)
	}
	if st := a.Status(); st.Pending != 1 {
		t.Errorf("Status.Pending = %d", st.Pending)
	}
	// An enable cannot be done: neither of a fleet switch nor of one
	// pending on this replica (a write that timed out may have reached
	// Redis all the same).
	if _, err := a.Enable(ctx, Rule, "charges"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Enable during the outage: %v, want ErrUnavailable", err)
	}
	if _, err := a.Disable(ctx, entry(Credential, "tmp")); err != nil {
		t.Fatal(err)
	}
	if res, err := a.Enable(ctx, Credential, "tmp"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Enable of a pending switch during the outage = %+v, %v, want ErrUnavailable", res, err)
	}
	if has(a, "credential:tmp")() != nil || a.Status().Pending != 2 {
		t.Errorf("after a refused enable: %v, %d pending", a.Snapshot().Entries(), a.Status().Pending)
	}
	// Disabling a pending switch again changes nothing.
	if res, err := a.Disable(ctx, entry(Credential, "tmp")); err != nil || res.Changed || !res.Pending {
		t.Errorf("Disable of a pending switch = %+v, %v", res, err)
	}

	// A replica that starts during the outage enforces its state file.
	c, err := New(ctx, Options{Client: newClient(t, srv), Namespace: "test", Keys: testKeys, OpTimeout: 100 * time.Millisecond, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if c.Snapshot().Len() != 3 || c.Status().Pending != 2 {
		t.Errorf("replica started during the outage enforces %v, %d pending", c.Snapshot().Entries(), c.Status().Pending)
	}
	c.Close()

	// Redis comes back empty (no persistence): the first replica to read
	// it writes back what it had, A writes what was pending; B gets it
	// all.
	srv.Restart()
	waitFor(t, 5*time.Second, "B to get the pending switches", has(b, "workload:batch"))
	waitFor(t, 5*time.Second, "B to get the pending switches", has(b, "credential:tmp"))
	waitFor(t, 5*time.Second, "B to keep the restored switch", has(b, "rule:charges"))
	// (A read can still time out now and then on a loaded machine.)
	waitFor(t, 5*time.Second, "A to show Redis up and nothing pending", func() error {
		if st := a.Status(); st.Pending != 0 || !st.Up {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	all, _ := srv.Client().HGetAll(ctx, "test:switches").Result()
	for _, id := range []string{"rule:charges", "workload:batch", "credential:tmp"} {
		if _, ok := all[id]; !ok {
			t.Errorf("Redis after recovery lacks %s: %v", id, all)
		}
	}
	if !strings.Contains(logs.String(), "Redis held no switch state") {
		t.Errorf("no log line about restoring the state:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "wrote the switches disabled on this replica while it was unavailable") {
		t.Errorf("no log line about writing the pending switches:\n%s", logs.String())
	}
	if n := obs.wroteCount(WrotePending); n != 2 {
		t.Errorf("WroteBack(pending) = %d, want 2", n)
	}
	// Enabling works again, fleet-wide, also for what was pending.
	for _, name := range []string{"batch", "tmp"} {
		kind := Workload
		if name == "tmp" {
			kind = Credential
		}
		if res, err := b.Enable(ctx, kind, name); err != nil || !res.Changed || res.Scope != ScopeFleet {
			t.Fatalf("Enable %s after the outage = %+v, %v", name, res, err)
		}
	}
	waitFor(t, time.Second, "A to apply the enable", hasNot(a, "workload:batch"))
	waitFor(t, time.Second, "A to apply the enable", hasNot(a, "credential:tmp"))
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// BenchmarkMatch is the request path's cost: the snapshot load and the
// lookups, with nothing disabled (the usual case) and with 1000 switches
// that do not match.
func BenchmarkMatch(b *testing.B) {
	s, err := New(context.Background(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("empty", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if s.Snapshot().Match("billing-charges", Caller{Workload: "billing-api"}, "stripe-live") != nil {
				b.Fatal("match")
			}
		}
	})
	for i := range 1000 {
		k := Kinds[i%3]
		if _, err := s.Disable(context.Background(), Entry{Kind: k, Name: "item-" + string(rune('a'+i%26)) + "-" + time.Duration(i).String()}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("1000-miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if s.Snapshot().Match("billing-charges", Caller{Workload: "billing-api"}, "stripe-live") != nil {
				b.Fatal("match")
			}
		}
	})
}

func TestMain(m *testing.M) {
	// go-redis logs every failed dial of the outage tests through a
	// process-wide logger; the tests check the Switch's own log.
	redis.SetLogger(quietRedis{})
	os.Exit(m.Run())
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// failReads is a go-redis hook that fails the next n HGETALLs, as a Redis
// that accepts connections and subscriptions but does not answer reads
// yet (loading its data, or a connection gone stale) does.
type failReads struct{ n atomic.Int32 }

func (f *failReads) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *failReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (f *failReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "hgetall" && f.n.Add(-1) >= 0 {
			err := errors.New("LOADING Redis is loading the dataset in memory (injected)")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

// TestRedisBackRereadRetried: when Redis comes back, the re-read that the
// resubscription triggers may fail; it is retried at once with backoff,
// not left to the periodic read (an hour here), so a disable taken on A
// during the outage is written back and reaches B within a second of
// Redis answering, even though A's and B's first reads fail.
func TestRedisBackRereadRetried(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	var logs syncBuf
	obs := &events{}
	fa, fb := &failReads{}, &failReads{}
	ca, cb := newClient(t, srv), newClient(t, srv)
	ca.AddHook(fa)
	cb.AddHook(fb)
	mk := func(c *redis.Client, o Observer) *Switch {
		s, err := New(ctx, Options{Client: c, Namespace: "test", Keys: testKeys, OpTimeout: 200 * time.Millisecond,
			ResyncInterval: time.Hour, Observer: o, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := mk(ca, obs), mk(cb, nil)
	if _, err := a.Disable(ctx, entry(Rule, "charges")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "B", has(b, "rule:charges"))

	srv.Stop()
	waitFor(t, 5*time.Second, "A to notice the outage", func() error {
		if _, err := a.Disable(ctx, entry(Workload, "batch")); err != nil {
			return err
		}
		if a.Status().Pending != 1 {
			return errors.New("the disable was not taken as pending")
		}
		return nil
	})
	fa.n.Store(2)
	fb.n.Store(2)
	t0 := time.Now()
	srv.Restart()
	waitFor(t, 5*time.Second, "B to get the switch A took during the outage", has(b, "workload:batch"))
	took := time.Since(t0)
	t.Logf("B applied the switch A took during the outage %s after Redis came back (first two reads of each failed)", took.Round(time.Millisecond))
	if took >= time.Second {
		t.Errorf("B applied it %s after Redis came back, want < 1s", took)
	}
	if fa.n.Load() >= 0 || fb.n.Load() >= 0 {
		t.Errorf("the injected read failures were not all hit (A %d, B %d left)", fa.n.Load(), fb.n.Load())
	}
	if has(b, "rule:charges")() != nil {
		t.Error("B lost the switch it had")
	}
	if n := obs.wroteCount(WrotePending); n != 1 {
		t.Errorf("WroteBack(pending) = %d, want 1", n)
	}
	if !strings.Contains(logs.String(), "wrote the switches disabled on this replica while it was unavailable") {
		t.Errorf("no log line about the write-back:\n%s", logs.String())
	}
}

// TestPendingSurvivesRestart: a disable taken while Redis could not be
// read is still pending after the replica restarts (admin.state_file),
// and is written back when Redis answers, even though Redis kept its
// state meanwhile (which lacks it, at the generation the replica knew):
// it is not taken for a switch the fleet had and dropped.
func TestPendingSurvivesRestart(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "switches.json")
	f := &failReads{}
	ca := newClient(t, srv)
	ca.AddHook(f)
	a, err := New(ctx, Options{Client: ca, Namespace: "test", Keys: testKeys, OpTimeout: 200 * time.Millisecond,
		ResyncInterval: time.Hour, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	b := newRedisSwitch(t, srv, Options{})
	if _, err := a.Disable(ctx, entry(Rule, "charges")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "B", has(b, "rule:charges"))
	f.n.Store(1 << 20) // A cannot read Redis any more; B and Redis are fine
	res, err := a.Disable(ctx, entry(Workload, "batch"))
	if err != nil || !res.Pending {
		t.Fatalf("Disable while A cannot read Redis = %+v, %v", res, err)
	}
	_ = a.Close()

	a2 := newRedisSwitch(t, srv, Options{StateFile: state})
	if err := has(a2, "workload:batch")(); err != nil {
		t.Fatalf("A after its restart: %v", err)
	}
	waitFor(t, time.Second, "B to get the switch A held across its restart", has(b, "workload:batch"))
	if st := a2.Status(); st.Pending != 0 {
		t.Errorf("A after the write-back: %+v", st)
	}
	// Once written back, the file no longer says pending: enabling it
	// fleet-wide and restarting A does not bring it back.
	if _, err := b.Enable(ctx, Workload, "batch"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "A to apply the enable", hasNot(a2, "workload:batch"))
	_ = a2.Close()
	a3 := newRedisSwitch(t, srv, Options{StateFile: state})
	if has(a3, "workload:batch")() == nil || has(b, "workload:batch")() == nil {
		t.Errorf("an enabled switch came back from the state file: A %v, B %v", a3.Snapshot().Entries(), b.Snapshot().Entries())
	}
}

// TestSourceSwitch: a source switch names one address as the gateway
// writes it, and covers the callers whose source it is (the gateway sets
// Source for anonymous callers only); other spellings of an address are
// refused with the form to use.
func TestSourceSwitch(t *testing.T) {
	for _, name := range []string{"10.0.0.5", "2001:db8::1", "::1"} {
		if err := (Entry{Kind: Source, Name: name}).Validate(); err != nil {
			t.Errorf("source %q: %v", name, err)
		}
	}
	for _, name := range []string{"10.0.0.5:80", "::ffff:10.0.0.5", "2001:db8:0::1", "fe80::1%eth0", "10.0.0.0/8", "host.example", "010.0.0.5"} {
		if err := (Entry{Kind: Source, Name: name}).Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "like 10.0.0.5") {
			t.Errorf("source %q: %v, want ErrInvalid naming the form", name, err)
		}
	}
	if k, err := ParseKind("Source"); err != nil || k != Source {
		t.Errorf("ParseKind(Source) = %q, %v", k, err)
	}
	s := newSnapshot(map[string]Entry{"source:10.0.0.5": {Kind: Source, Name: "10.0.0.5"}, "workload:w1": {Kind: Workload, Name: "w1"}})
	for _, tt := range []struct {
		caller Caller
		want   string
	}{
		{Caller{Workload: "anonymous", Source: netip.MustParseAddr("10.0.0.5")}, "source:10.0.0.5"},
		{Caller{Workload: "anonymous", Source: netip.MustParseAddr("::ffff:10.0.0.5")}, "source:10.0.0.5"},
		{Caller{Workload: "anonymous", Source: netip.MustParseAddr("10.0.0.6")}, ""},
		{Caller{Workload: "anonymous"}, ""},
		{Caller{Workload: "w1", Source: netip.MustParseAddr("10.0.0.6")}, "workload:w1"},
	} {
		got := ""
		if e := s.Match("r", tt.caller); e != nil {
			got = e.ID()
		}
		if got != tt.want {
			t.Errorf("Match(%+v) = %q, want %q", tt.caller, got, tt.want)
		}
	}
}
