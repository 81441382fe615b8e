package rediscache

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/credgate/credgate/providers"
)

// KeySize is the length of an encryption key: AES-256.
const KeySize = 32

// Key is one AES-256-GCM key that seals entries. Its ID is written in
// clear into every entry it seals, so that after a rotation entries sealed
// with an older key can still be opened.
type Key struct {
	// ID names the key (1 to 64 bytes, not secret).
	ID string
	// Secret is the 32-byte key.
	Secret []byte
}

// envelope layout: magic "cg2", one byte len(keyID), keyID, the entry's
// version (8 bytes, big endian), its expiry (8 bytes, unix nanoseconds,
// big endian), 12-byte nonce, GCM ciphertext. The additional data is
// that header and the Redis key name, so an entry copied to another key
// (or namespace) does not open, and its version and expiry cannot be
// changed: a stale or superseded entry copied back is recognised (Store
// keeps the lowest version it accepts per key). Entries of the first
// format ("cg1", bound to the key name only) are not opened: they are
// misses and are overwritten.
const magic = "cg2"

// formatVersion is the number in magic. An entry whose magic is "cg"
// followed by a higher number was sealed by a newer credgate: it is a
// miss (RejectNewer), never opened as this format. A change to the
// envelope or to record that an older reader would misread (a field that
// narrows where or how long a credential may be used) raises it.
const formatVersion = 2

// Reasons an entry was rejected (Observer.Rejected).
const (
	// RejectUndecryptable: unknown format, a key not configured, or an
	// entry that does not open under its key name (copied from another
	// key, or edited).
	RejectUndecryptable = "undecryptable"
	// RejectExpired: past the expiry sealed into it (copied back after
	// it expired, or its Redis TTL was removed).
	RejectExpired = "expired"
	// RejectRollback: older than an entry this replica already accepted
	// or rejected for the key (an older sealed value copied back).
	RejectRollback = "rollback"
	// RejectNewer: sealed by a newer credgate, in a format or with fields
	// this version does not read (a rolling upgrade in progress, or a
	// rollback). A miss; the entry is overwritten in this format.
	RejectNewer = "newer_format"
)

// Rejects lists every reason an entry is rejected, for metrics.
var Rejects = []string{RejectUndecryptable, RejectExpired, RejectRollback, RejectNewer}

// errNewer marks an entry sealed by a newer credgate (RejectNewer).
var errNewer = errors.New("written by a newer credgate; upgrade this replica")

// sealed is an opened entry.
type sealed struct {
	cred      *providers.Credential
	fetchedAt time.Time
	// version is the entry's generation (a fleet-wide counter in Redis).
	version uint64
	// notAfter is when the entry stops being usable.
	notAfter time.Time
}

// errUnknownKey marks an entry sealed with a key no longer configured.
var errUnknownKey = errors.New("entry sealed with a key that is not configured")

// sealer seals and opens entries with its keys; the first one seals.
type sealer struct {
	ids   []string
	aeads map[string]cipher.AEAD
}

func newSealer(keys []Key) (*sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("rediscache: at least one encryption key is required")
	}
	s := &sealer{aeads: map[string]cipher.AEAD{}}
	for i, k := range keys {
		if k.ID == "" || len(k.ID) > 64 {
			return nil, fmt.Errorf("rediscache: encryption key %d: id must be 1 to 64 bytes", i+1)
		}
		if len(k.Secret) != KeySize {
			return nil, fmt.Errorf("rediscache: encryption key %q: %d bytes, want %d (AES-256)", k.ID, len(k.Secret), KeySize)
		}
		if _, dup := s.aeads[k.ID]; dup {
			return nil, fmt.Errorf("rediscache: encryption key id %q appears twice", k.ID)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("rediscache: encryption key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("rediscache: encryption key %q: %w", k.ID, err)
		}
		s.ids = append(s.ids, k.ID)
		s.aeads[k.ID] = aead
	}
	return s, nil
}

// record is an entry's plaintext: the credential and when it was fetched.
// It exists only in memory and, sealed, in Redis.
type record struct {
	Fields    map[string]string `json:"f"`
	Expiry    int64             `json:"e,omitempty"` // unix nanoseconds; 0 = none
	Hosts     []string          `json:"h,omitempty"` // Credential.Hosts
	FetchedAt int64             `json:"t"`
}

// header is the envelope up to the nonce.
func header(id string, version uint64, notAfter time.Time) []byte {
	h := make([]byte, 0, len(magic)+1+len(id)+16)
	h = append(h, magic...)
	h = append(h, byte(len(id)))
	h = append(h, id...)
	h = binary.BigEndian.AppendUint64(h, version)
	return binary.BigEndian.AppendUint64(h, uint64(notAfter.UnixNano()))
}

// additionalData binds an entry to its header and its Redis key name.
func additionalData(hdr []byte, redisKey string) []byte {
	ad := make([]byte, 0, len(hdr)+1+len(redisKey))
	ad = append(ad, hdr...)
	ad = append(ad, 0)
	return append(ad, redisKey...)
}

func (s *sealer) seal(redisKey string, cred *providers.Credential, fetchedAt time.Time, version uint64, notAfter time.Time) ([]byte, error) {
	rec := record{Fields: make(map[string]string, len(cred.Fields)), FetchedAt: fetchedAt.UnixNano()}
	for name, v := range cred.Fields {
		rec.Fields[name] = v.Reveal()
	}
	if !cred.Expiry.IsZero() {
		rec.Expiry = cred.Expiry.UnixNano()
	}
	rec.Hosts = cred.Hosts
	plain, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("rediscache: encode entry: %w", err)
	}
	defer clear(plain)
	id := s.ids[0]
	aead := s.aeads[id]
	hdr := header(id, version, notAfter)
	out := make([]byte, 0, len(hdr)+aead.NonceSize()+len(plain)+aead.Overhead())
	out = append(out, hdr...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("rediscache: nonce: %w", err)
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, additionalData(hdr, redisKey)), nil
}

// newerFormat reports whether data starts with the magic of a format
// newer than this one ("cg" and a higher number, then a key id length),
// and its number.
func newerFormat(data []byte) (int, bool) {
	rest, ok := bytes.CutPrefix(data, []byte("cg"))
	if !ok {
		return 0, false
	}
	v, n := 0, 0
	for n < len(rest) && n < 4 && rest[n] >= '0' && rest[n] <= '9' {
		v = v*10 + int(rest[n]-'0')
		n++
	}
	return v, n > 0 && v > formatVersion
}

// open opens an entry read from redisKey. Expiry and version are checked
// by the caller.
func (s *sealer) open(redisKey string, data []byte) (sealed, error) {
	if len(data) < len(magic)+1 || string(data[:len(magic)]) != magic {
		if v, ok := newerFormat(data); ok {
			return sealed{}, fmt.Errorf("rediscache: entry of format cg%d, newer than this version reads (%s): %w", v, magic, errNewer)
		}
		return sealed{}, errors.New("rediscache: entry has an unknown format")
	}
	n := int(data[len(magic)])
	hlen := len(magic) + 1 + n + 16
	if len(data) < hlen {
		return sealed{}, errors.New("rediscache: entry is truncated")
	}
	hdr := data[:hlen]
	id := string(hdr[len(magic)+1 : len(magic)+1+n])
	version := binary.BigEndian.Uint64(hdr[hlen-16:])
	notAfter := time.Unix(0, int64(binary.BigEndian.Uint64(hdr[hlen-8:])))
	data = data[hlen:]
	aead, ok := s.aeads[id]
	if !ok {
		return sealed{}, fmt.Errorf("rediscache: key id %q: %w", id, errUnknownKey)
	}
	if len(data) < aead.NonceSize() {
		return sealed{}, errors.New("rediscache: entry is truncated")
	}
	plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], additionalData(hdr, redisKey))
	if err != nil {
		return sealed{}, fmt.Errorf("rediscache: open entry sealed with key %q: %w", id, err)
	}
	defer clear(plain)
	// The entry opened under a key of the fleet: a field this version
	// does not know was sealed by a newer one, and may narrow the use of
	// the credential (as Hosts did): not read in part.
	var rec record
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		// The decoder's message could quote the plaintext: leave it out.
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return sealed{}, fmt.Errorf("rediscache: entry holds a field this version does not know: %w", errNewer)
		}
		return sealed{}, errors.New("rediscache: decode entry: not a credential record")
	}
	if dec.More() {
		return sealed{}, errors.New("rediscache: decode entry: not a credential record")
	}
	cred := &providers.Credential{Fields: make(map[string]providers.Secret, len(rec.Fields))}
	for name, v := range rec.Fields {
		cred.Fields[name] = providers.NewSecret(v)
	}
	if rec.Expiry != 0 {
		cred.Expiry = time.Unix(0, rec.Expiry)
	}
	cred.Hosts = rec.Hosts
	return sealed{cred: cred, fetchedAt: time.Unix(0, rec.FetchedAt), version: version, notAfter: notAfter}, nil
}
