package killswitch

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/redistest"
)

// writeSignedFields replaces hash with fields (switch fields and any
// other), signed for generation gen under testKeys: what a credgate
// holding the key, of whatever version, writes.
func writeSignedFields(t *testing.T, rc *redis.Client, hash string, gen uint64, fields map[string]string) {
	t.Helper()
	mk, err := newMACKeys(testKeys)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{genField: strconv.FormatUint(gen, 10)}
	for f, v := range fields {
		all[f] = v
	}
	all[macField] = mk.sign(stateParts(hash, gen, all))
	ctx := context.Background()
	must(t, rc.Del(ctx, hash).Err())
	must(t, rc.HSet(ctx, hash, all).Err())
}

func entryJSON(e Entry) string {
	b, _ := json.Marshal(e)
	return string(b)
}

// TestRedisStateVersions is the class "the kill switch state in Redis was
// written by another version of credgate" (a rolling upgrade, a
// rollback): for each shape a writer of version N-1, N or N+1 leaves, a
// replica of this version reading it (the real reader, on a real Redis)
// never lifts a switch: a switch it can read is in force, a switch it
// cannot read makes it refuse every request (Held false), and every
// state it writes (an admin change, a periodic read) keeps what it cannot
// read as it was written.
func TestRedisStateVersions(t *testing.T) {
	const hash = "test:switches"
	charges := entry(Rule, "charges")
	tests := []struct {
		name   string
		fields map[string]string
		// want are the switches in force; held whether the replica
		// holds an enforceable state; newer whether it reports the
		// state as written by a newer credgate (and refuses writes).
		want  []string
		held  bool
		newer bool
	}{
		{"current (unmarked: version 1)", map[string]string{charges.ID(): entryJSON(charges)},
			[]string{"rule:charges"}, true, false},
		{"newer: a metadata field", map[string]string{charges.ID(): entryJSON(charges), "_format": "2"},
			[]string{"rule:charges"}, true, true},
		{"newer: an unknown kind of switch", map[string]string{charges.ID(): entryJSON(charges), "tenant:acme": `{"kind":"tenant","name":"acme"}`},
			[]string{"rule:charges"}, false, true},
		{"newer: a name this version refuses", map[string]string{charges.ID(): entryJSON(charges), "rule:" + strings.Repeat("x", MaxNameLen+1): `{}`},
			[]string{"rule:charges"}, false, true},
		{"newer: a field of another shape", map[string]string{charges.ID(): entryJSON(charges), "everything": `{}`},
			[]string{"rule:charges"}, false, true},
		{"extra unknown field in an entry", map[string]string{charges.ID(): `{"kind":"rule","name":"charges","by":"alice","until":"2030-01-01T00:00:00Z"}`},
			[]string{"rule:charges"}, true, false},
		{"unknown enum value in an entry's kind", map[string]string{charges.ID(): `{"kind":"rule-v2","name":"charges"}`},
			[]string{"rule:charges"}, true, false},
		{"truncated entry", map[string]string{charges.ID(): `{"kind":"ru`},
			[]string{"rule:charges"}, true, false},
		{"current, another switch", map[string]string{"rule:placeholder": entryJSON(entry(Rule, "placeholder"))}, []string{"rule:placeholder"}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := context.Background()
			rc := srv.Client()
			writeSignedFields(t, rc, hash, 5, tt.fields)
			before, err := rc.HGetAll(ctx, hash).Result()
			must(t, err)
			obs := &events{}
			// Periodic reads repair: a write that drops a field would
			// happen within a few of them.
			s := newRedisSwitch(t, srv, Options{ResyncInterval: 10 * time.Millisecond, Observer: obs})
			waitFor(t, 2*time.Second, "a few periodic reads", func() error {
				obs.mu.Lock()
				synced := obs.synced
				obs.mu.Unlock()
				if synced < 3 && !tt.newer {
					return errors.New("not yet")
				}
				if tt.newer && obs.verifyCount(ReasonNewer) < 3 {
					return errors.New("not yet")
				}
				return nil
			})
			snap := s.Snapshot()
			if snap.Len() != len(tt.want) {
				t.Errorf("switches in force: %d, want %v", snap.Len(), tt.want)
			}
			for _, id := range tt.want {
				kind, name, _ := strings.Cut(id, ":")
				if _, ok := snap.Get(Kind(kind), name); !ok {
					t.Errorf("%s not in force", id)
				}
			}
			if got := s.Held(); got != tt.held {
				t.Errorf("Held() = %v, want %v (Status: %+v)", got, tt.held, s.Status())
			}
			st := s.Status()
			if tt.newer != strings.Contains(st.Unverified, "newer credgate") {
				t.Errorf("Status.Unverified = %q, want it to say newer credgate: %v", st.Unverified, tt.newer)
			}
			// A change on this replica, and its periodic repair, keep
			// every field it cannot read as the newer writer wrote it.
			if _, err := s.Disable(ctx, entry(Workload, "batch")); err != nil {
				t.Fatalf("Disable: %v", err)
			}
			if _, err := s.Enable(ctx, Rule, "charges"); err != nil {
				t.Fatalf("Enable: %v", err)
			}
			if _, ok := s.Snapshot().Get(Workload, "batch"); !ok || s.Held() != tt.held {
				t.Errorf("after Disable: batch in force %v, Held %v", ok, s.Held())
			}
			n := obs.verifyCount(ReasonNewer)
			waitFor(t, 2*time.Second, "more periodic reads", func() error {
				if tt.newer && obs.verifyCount(ReasonNewer) < n+3 {
					return errors.New("not yet")
				}
				return nil
			})
			after, err := rc.HGetAll(ctx, hash).Result()
			must(t, err)
			for f, v := range before {
				if f == genField || f == macField || f == charges.ID() {
					continue
				}
				if after[f] != v {
					t.Errorf("field %q = %q, was %q: this version dropped or changed what it cannot read", f, after[f], v)
				}
			}
			if _, ok := after["workload:batch"]; !ok {
				t.Errorf("workload:batch not written: %v", after)
			}
			if _, ok := after[charges.ID()]; ok {
				t.Errorf("rule:charges still in Redis after Enable: %v", after)
			}
			// What this replica wrote verifies for any replica holding
			// the key (a newer one reads it as it wrote it).
			mk, err := newMACKeys(testKeys)
			must(t, err)
			if st := mk.verifyState(hash, after); st.err != nil || len(st.newer) != len(before)-3 {
				t.Errorf("the state written: err %v, unreadable fields %v", st.err, st.newer)
			}
		})
	}
}

// TestRedisStateNewerThenCurrent: once a newer replica writes a state
// this version reads wholly again (the unknown switch enabled), the
// replica holds it and accepts changes again.
func TestRedisStateNewerThenCurrent(t *testing.T) {
	const hash = "test:switches"
	srv := redistest.Start(t)
	rc := srv.Client()
	charges := entry(Rule, "charges")
	writeSignedFields(t, rc, hash, 5, map[string]string{charges.ID(): entryJSON(charges), "tenant:acme": `{}`})
	obs := &events{}
	s := newRedisSwitch(t, srv, Options{ResyncInterval: 10 * time.Millisecond, Observer: obs})
	if s.Held() {
		t.Fatal("Held with a switch this version cannot enforce")
	}
	writeSignedFields(t, rc, hash, 6, map[string]string{charges.ID(): entryJSON(charges)})
	waitFor(t, 2*time.Second, "the state to be held again", func() error {
		if !s.Held() || s.Status().Unverified != "" {
			return errors.New("not yet: " + s.Status().Unverified)
		}
		return nil
	})
	if _, err := s.Disable(context.Background(), entry(Workload, "batch")); err != nil {
		t.Fatal(err)
	}
}

// TestStateFileVersions is the class for the state file: a file another
// version wrote is read wholly or refused with an error naming it, the
// version seen and the fix; never read in part.
func TestStateFileVersions(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    int      // switches read
		errs    []string // in the error; nil for none
	}{
		{"current", `{"version":1,"generation":3,"switches":[{"kind":"rule","name":"charges"}]}`, 1, nil},
		{"newer version", `{"version":2,"generation":3,"switches":[{"kind":"rule","name":"charges"}]}`, 0,
			[]string{"version 2", "newer than this credgate reads (1)", "written by a newer credgate"}},
		{"unmarked (no version)", `{"switches":[{"kind":"rule","name":"charges"}]}`, 0,
			[]string{"unknown version 0", "fix or remove it"}},
		{"extra unknown field", `{"version":1,"switches":[{"kind":"rule","name":"charges","until":"2030"}],"later":true}`, 1, nil},
		{"unknown kind of switch", `{"version":1,"switches":[{"kind":"tenant","name":"acme"}]}`, 0,
			[]string{`kind "tenant"`, "written by a newer credgate", "run that version"}},
		{"truncated", `{"version":1,"switches":[{"kind":"ru`, 0, []string{"not valid JSON", "fix or remove it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "switches.json")
			must(t, os.WriteFile(path, []byte(tt.content), 0o600))
			snap, err := ReadStateFile(path)
			_, nerr := New(context.Background(), Options{StateFile: path})
			if tt.errs == nil {
				if err != nil || nerr != nil {
					t.Fatalf("ReadStateFile: %v; New: %v", err, nerr)
				}
				if snap.Len() != tt.want {
					t.Errorf("switches: %d, want %d", snap.Len(), tt.want)
				}
				return
			}
			if err == nil || nerr == nil {
				t.Fatalf("ReadStateFile: %v; New: %v; want both to refuse the file", err, nerr)
			}
			for _, w := range append(tt.errs, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestStateFileKeepsNewerFields: a replica that read a state holding a
// switch a newer credgate wrote keeps it in its state file, so that,
// restarted while Redis is unavailable, it still refuses every request
// rather than enforce only the switches it can read.
func TestStateFileKeepsNewerFields(t *testing.T) {
	const hash = "test:switches"
	srv := redistest.Start(t)
	rc := srv.Client()
	charges := entry(Rule, "charges")
	writeSignedFields(t, rc, hash, 5, map[string]string{charges.ID(): entryJSON(charges), "tenant:acme": `{"kind":"tenant"}`})
	state := filepath.Join(t.TempDir(), "switches.json")
	a := newRedisSwitch(t, srv, Options{StateFile: state})
	if a.Held() {
		t.Fatal("Held with a switch this version cannot enforce")
	}
	b, err := os.ReadFile(state)
	must(t, err)
	if !strings.Contains(string(b), `"tenant:acme"`) {
		t.Fatalf("the state file does not keep the newer switch:\n%s", b)
	}
	srv.Stop()
	r := newRedisSwitch(t, srv, Options{StateFile: state})
	if _, ok := r.Snapshot().Get(Rule, "charges"); !ok || r.Held() {
		t.Errorf("restarted while Redis is down: charges in force %v, Held %v; want true, false", ok, r.Held())
	}
	if !strings.Contains(r.Status().Unverified, `"tenant:acme"`) {
		t.Errorf("Status.Unverified = %q, want it to name the field", r.Status().Unverified)
	}
}
