package killswitch

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The state in Redis is authenticated: the hash carries a MAC
// (HMAC-SHA256) over its name, its generation and every field, under a
// key that is not in Redis. A Redis writer can therefore neither lift a
// disable (delete or edit a field, replace the hash) nor forge one
// without the key, and a state signed earlier (a lower generation) is
// not taken back once a newer one was seen.

// macField is the hash field holding "KEYID:HEX" (the MAC and the key
// that made it).
const macField = "_mac"

// MinKeySize is the shortest key accepted.
const MinKeySize = 32

// Key is one secret the state MAC key is derived from. The gateway passes
// its cache.redis.encryption_keys; the first signs, all verify (so keys
// rotate like the cache's).
type Key struct {
	// ID names the key (not secret); it is written beside the MAC.
	ID string
	// Secret is at least MinKeySize random bytes.
	Secret []byte
}

// macInfo separates the MAC key from every other use of the same secret
// (HKDF-SHA256 "info"): the AES-GCM key of the credential cache is the
// secret itself, this is an independent pseudo-random key derived from it.
const macInfo = "credgate killswitch state MAC v1"

// Reasons a state read from Redis was not put in force (Status.Unverified,
// Observer.VerifyFailed).
const (
	ReasonUnsigned   = "unsigned"    // no MAC field
	ReasonBadMAC     = "bad_mac"     // MAC does not match: a field was added, edited or removed
	ReasonUnknownKey = "unknown_key" // signed with a key not configured here
	ReasonRollback   = "rollback"    // validly signed, but older than the state already seen
	ReasonMalformed  = "malformed"   // generation or MAC unreadable
	// ReasonNewer: validly signed, but holding fields this version cannot
	// read (a switch kind it does not know, a name it does not accept, a
	// metadata field): written by a newer credgate. Its readable switches
	// are in force, the fields it cannot read are kept as they are in
	// every state it writes (never dropped: that would lift what they
	// disable), and the replica refuses every request while one of them
	// is a switch it cannot enforce (Held is false).
	ReasonNewer = "newer_version"
)

// Reasons lists every reason a state or message read from Redis was not
// (or not wholly) put in force, for metrics.
var Reasons = []string{ReasonUnsigned, ReasonBadMAC, ReasonUnknownKey, ReasonRollback, ReasonMalformed, ReasonNewer}

// MaxGeneration is the highest generation a state may carry: a fleet
// that made a change every nanosecond would take 146 years to reach it.
// A state above it does not verify (ReasonMalformed), so that the
// generation of the state written over it cannot wrap around.
const MaxGeneration = 1 << 62

// errVerify is a state or message that does not verify.
type errVerify struct {
	reason string
	detail string
}

func (e *errVerify) Error() string {
	return "killswitch: the state in Redis does not verify (" + e.reason + "): " + e.detail
}

// macKeys signs and verifies states and messages.
type macKeys struct {
	ids  []string
	keys map[string][]byte
}

func newMACKeys(keys []Key) (*macKeys, error) {
	m := &macKeys{keys: map[string][]byte{}}
	for i, k := range keys {
		if k.ID == "" || len(k.ID) > 64 {
			return nil, fmt.Errorf("killswitch: key %d: id must be 1 to 64 bytes", i+1)
		}
		if len(k.Secret) < MinKeySize {
			return nil, fmt.Errorf("killswitch: key %q: %d bytes, want at least %d", k.ID, len(k.Secret), MinKeySize)
		}
		if _, dup := m.keys[k.ID]; dup {
			return nil, fmt.Errorf("killswitch: key id %q appears twice", k.ID)
		}
		mk, err := hkdf.Key(sha256.New, k.Secret, nil, macInfo, sha256.Size)
		if err != nil {
			return nil, fmt.Errorf("killswitch: key %q: %w", k.ID, err)
		}
		m.ids = append(m.ids, k.ID)
		m.keys[k.ID] = mk
	}
	return m, nil
}

// mac is HMAC-SHA256 under key id over the length-prefixed parts.
func (m *macKeys) mac(id string, parts ...string) []byte {
	h := hmac.New(sha256.New, m.keys[id])
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return h.Sum(nil)
}

// stateParts is what a state's MAC covers: the hash name (so a state
// copied from another namespace does not verify), the generation and
// every other field, sorted.
func stateParts(hash string, gen uint64, fields map[string]string) []string {
	names := make([]string, 0, len(fields))
	for f := range fields {
		if f != macField && f != genField {
			names = append(names, f)
		}
	}
	slices.Sort(names)
	parts := make([]string, 0, 3+2*len(names))
	parts = append(parts, "state", hash, strconv.FormatUint(gen, 10))
	for _, f := range names {
		parts = append(parts, f, fields[f])
	}
	return parts
}

// sign returns the MAC field's value for parts, under the first key.
func (m *macKeys) sign(parts []string) string {
	id := m.ids[0]
	return id + ":" + hex.EncodeToString(m.mac(id, parts...))
}

// verify checks a MAC field's value over parts.
func (m *macKeys) verify(value string, parts []string) error {
	if value == "" {
		return &errVerify{ReasonUnsigned, "it carries no MAC (written by something other than a credgate replica, or by a version before 13)"}
	}
	// The hex MAC holds no ':'; the key id may.
	i := strings.LastIndexByte(value, ':')
	if i < 0 {
		return &errVerify{ReasonMalformed, "the MAC field is not KEYID:HEX"}
	}
	id := value[:i]
	got, err := hex.DecodeString(value[i+1:])
	if err != nil {
		return &errVerify{ReasonMalformed, "the MAC field is not KEYID:HEX"}
	}
	if _, ok := m.keys[id]; !ok {
		return &errVerify{ReasonUnknownKey, fmt.Sprintf("signed with key %q, which is not among cache.redis.encryption_keys", id)}
	}
	if !hmac.Equal(got, m.mac(id, parts...)) {
		return &errVerify{ReasonBadMAC, "the MAC does not match: a field was added, edited or removed outside credgate"}
	}
	return nil
}

// remoteState is the hash as read from Redis.
type remoteState struct {
	// exists is false when the hash holds no generation (absent, or a
	// Redis that lost its data).
	exists bool
	// rawGen and rawMAC are the fields as read, for the writer's
	// compare-and-set.
	rawGen, rawMAC string
	// gen is the generation (0 when unreadable).
	gen uint64
	// entries is the state, valid only when err is nil.
	entries map[string]Entry
	// err is why the state does not verify.
	err *errVerify
	// newer are the fields of a verified state that this version cannot
	// read (ReasonNewer), sorted; foreign holds them with their values;
	// newerSwitches is set when one of them is a switch rather than
	// metadata (a field beginning with "_").
	newer         []string
	foreign       map[string]string
	newerSwitches bool
}

// verifyState checks a hash read from Redis against the keys.
func (m *macKeys) verifyState(hash string, all map[string]string) remoteState {
	st := remoteState{rawGen: all[genField], rawMAC: all[macField]}
	_, st.exists = all[genField]
	if !st.exists {
		if len(all) > 0 {
			st.exists = true
			st.err = &errVerify{ReasonMalformed, "the hash has fields but no generation"}
		}
		return st
	}
	gen, err := strconv.ParseUint(st.rawGen, 10, 64)
	if err != nil {
		st.err = &errVerify{ReasonMalformed, "the generation is not a number"}
		return st
	}
	if gen > MaxGeneration {
		// One change at a time never gets there; the next write's
		// generation (one more) must not wrap to 0, which every replica
		// would refuse as a rollback.
		st.err = &errVerify{ReasonMalformed, fmt.Sprintf("the generation %d is above %d", gen, uint64(MaxGeneration))}
		return st
	}
	st.gen = gen
	if err := m.verify(st.rawMAC, stateParts(hash, gen, all)); err != nil {
		st.err = err.(*errVerify)
		return st
	}
	// The MAC verified: every field was written by a credgate holding
	// the key. One this version cannot read was written by a newer one
	// (a new kind of switch, a longer name, new metadata): it is neither
	// garbage nor tampering, and it must not be dropped.
	st.entries = make(map[string]Entry, len(all))
	for f, v := range all {
		if f == genField || f == macField {
			continue
		}
		if strings.HasPrefix(f, "_") {
			st.addForeign(f, v)
			continue
		}
		e, err := parseEntry(f, v)
		if err != nil {
			st.addForeign(f, v)
			st.newerSwitches = true
			continue
		}
		st.entries[f] = e
	}
	slices.Sort(st.newer)
	return st
}

// addForeign records a field this version cannot read.
func (st *remoteState) addForeign(f, v string) {
	if st.foreign == nil {
		st.foreign = map[string]string{}
	}
	st.newer = append(st.newer, f)
	st.foreign[f] = v
}

// newerDetail describes the fields of st this version cannot read.
func (st *remoteState) newerDetail() string {
	const max = 5
	names := st.newer
	more := ""
	if len(names) > max {
		names, more = names[:max], fmt.Sprintf(" and %d more", len(st.newer)-max)
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(inertField(n))
	}
	return fmt.Sprintf("generation %d holds fields this version of credgate cannot read (%s%s): it was written by a newer credgate; upgrade this replica", st.gen, strings.Join(quoted, ", "), more)
}

// inertField cuts a field name read from Redis for a log line: at most
// 80 bytes, control characters replaced.
func inertField(f string) string {
	if len(f) > 80 {
		f = f[:80] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, f)
}

// messageParts is what a message's MAC covers.
func messageParts(channel string, msg message) []string {
	return []string{"message", channel, msg.Origin, msg.Op, strconv.FormatUint(msg.Gen, 10),
		string(msg.Entry.Kind), msg.Entry.Name, msg.Entry.By, msg.Entry.Reason, strconv.FormatInt(msg.Entry.Since.UnixNano(), 10)}
}
