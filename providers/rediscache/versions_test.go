package rediscache

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/redistest"
	"github.com/credgate/credgate/providers"
)

// sealAs seals plain for redisKey as a writer of envelope magic m would,
// with the layout of this version and the fleet's key: what a credgate
// of another version holding the same key writes.
func sealAs(t *testing.T, s *sealer, m, redisKey string, plain []byte, version uint64, notAfter time.Time) []byte {
	t.Helper()
	id := s.ids[0]
	hdr := append([]byte(m), byte(len(id)))
	hdr = append(hdr, id...)
	hdr = binary.BigEndian.AppendUint64(hdr, version)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(notAfter.UnixNano()))
	aead := s.aeads[id]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	out := append(append([]byte(nil), hdr...), nonce...)
	return aead.Seal(out, nonce, plain, additionalData(hdr, redisKey))
}

// TestSealedEntryVersions is the class "a shared cache entry was written
// by another version of credgate" (a rolling upgrade, a rollback): for
// each shape a writer of version N-1, N or N+1 leaves (sealed with the
// fleet's key, on a real Redis), this version serves it only when it
// reads it wholly; anything else is a miss (the provider is called, the
// entry overwritten in this format), counted by its reason, never a
// credential read in part.
func TestSealedEntryVersions(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	rc := srv.Client()
	keys := []Key{newKey(t, "k1")}
	exp := time.Now().Add(time.Hour)
	now := time.Now().UnixNano()
	record := func(extra string) []byte {
		return []byte(fmt.Sprintf(`{"f":{"token":"stored"},"e":%d,"t":%d%s}`, exp.UnixNano(), now, extra))
	}
	tests := []struct {
		name string
		// value is the entry for the store's sealer and Redis key.
		value func(s *sealer, ek string) []byte
		// reject is the reason counted; "" for a hit.
		reject string
	}{
		{"current (cg2)", func(s *sealer, ek string) []byte {
			return sealAs(t, s, magic, ek, record(""), 1<<40, exp)
		}, ""},
		{"current with a field name this version does not inject", func(s *sealer, ek string) []byte {
			return sealAs(t, s, magic, ek, []byte(fmt.Sprintf(`{"f":{"token":"stored","token_v2":"x"},"e":%d,"t":%d}`, exp.UnixNano(), now)), 1<<40, exp)
		}, ""},
		{"newer format (cg3)", func(s *sealer, ek string) []byte {
			return sealAs(t, s, "cg3", ek, record(""), 1<<40, exp)
		}, RejectNewer},
		{"newer format with another layout (cg10)", func(s *sealer, ek string) []byte {
			return []byte("cg10\x00anything at all")
		}, RejectNewer},
		{"extra unknown field in the record", func(s *sealer, ek string) []byte {
			return sealAs(t, s, magic, ek, record(`,"only_methods":["GET"]`), 1<<40, exp)
		}, RejectNewer},
		{"older format (cg1)", func(s *sealer, ek string) []byte {
			return sealAs(t, s, "cg1", ek, record(""), 1<<40, exp)
		}, RejectUndecryptable},
		{"unmarked", func(s *sealer, ek string) []byte {
			return record("")
		}, RejectUndecryptable},
		{"truncated", func(s *sealer, ek string) []byte {
			v := sealAs(t, s, magic, ek, record(""), 1<<40, exp)
			return v[:len(v)/2]
		}, RejectUndecryptable},
		{"truncated header", func(s *sealer, ek string) []byte {
			return []byte(magic + "\x02k")
		}, RejectUndecryptable},
		{"garbled record", func(s *sealer, ek string) []byte {
			return sealAs(t, s, magic, ek, []byte(`{"f":{"token":"stored"`), 1<<40, exp)
		}, RejectUndecryptable},
		{"record followed by more", func(s *sealer, ek string) []byte {
			return sealAs(t, s, magic, ek, append(record(""), `{"f":{}}`...), 1<<40, exp)
		}, RejectUndecryptable},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := &counts{}
			s := newStore(t, srv, keys, obs)
			k := testKey
			k.Scope = fmt.Sprint("versions-", i)
			ek := s.entryKey(keyHash(k))
			must(t, rc.Set(ctx, ek, tt.value(s.seal, ek), time.Hour).Err())
			var calls atomic.Int64
			fetch := func(context.Context) (*providers.Credential, error) {
				calls.Add(1)
				return secretCred("fetched", exp), nil
			}
			got, err := s.Fetch(ctx, k, 0, fetch)
			must(t, err)
			v := got.Fields[providers.FieldToken].Reveal()
			obs.mu.Lock()
			rejected := obs.rejected
			obs.mu.Unlock()
			if tt.reject == "" {
				if v != "stored" || calls.Load() != 0 || len(rejected) != 0 {
					t.Fatalf("got %s after %d provider calls, rejected %v; want the stored entry, no call", v, calls.Load(), rejected)
				}
				return
			}
			if v != "fetched" || calls.Load() != 1 {
				t.Errorf("got %s after %d provider calls; want a miss: the freshly fetched credential, one call", v, calls.Load())
			}
			if len(rejected) != 1 || rejected[tt.reject] == 0 {
				t.Errorf("rejected = %v, want only %s", rejected, tt.reject)
			}
			stored, err := rc.Get(ctx, ek).Bytes()
			must(t, err)
			if !strings.HasPrefix(string(stored), magic) {
				t.Errorf("the entry was not overwritten in this format: starts %q", stored[:min(len(stored), 4)])
			}
		})
	}
}
