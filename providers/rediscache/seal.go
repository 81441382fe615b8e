package rediscache

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
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

// envelope layout: magic "cg1", one byte len(keyID), keyID, 12-byte nonce,
// GCM ciphertext. The Redis key name is the additional data, so an entry
// copied to another key (or namespace) does not open.
const magic = "cg1"

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
	FetchedAt int64             `json:"t"`
}

func (s *sealer) seal(redisKey string, cred *providers.Credential, fetchedAt time.Time) ([]byte, error) {
	rec := record{Fields: make(map[string]string, len(cred.Fields)), FetchedAt: fetchedAt.UnixNano()}
	for name, v := range cred.Fields {
		rec.Fields[name] = v.Reveal()
	}
	if !cred.Expiry.IsZero() {
		rec.Expiry = cred.Expiry.UnixNano()
	}
	plain, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("rediscache: encode entry: %w", err)
	}
	defer clear(plain)
	id := s.ids[0]
	aead := s.aeads[id]
	out := make([]byte, 0, len(magic)+1+len(id)+aead.NonceSize()+len(plain)+aead.Overhead())
	out = append(out, magic...)
	out = append(out, byte(len(id)))
	out = append(out, id...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("rediscache: nonce: %w", err)
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, []byte(redisKey)), nil
}

func (s *sealer) open(redisKey string, data []byte) (*providers.Credential, time.Time, error) {
	if len(data) < len(magic)+1 || string(data[:len(magic)]) != magic {
		return nil, time.Time{}, errors.New("rediscache: entry has an unknown format")
	}
	data = data[len(magic):]
	n := int(data[0])
	data = data[1:]
	if len(data) < n {
		return nil, time.Time{}, errors.New("rediscache: entry is truncated")
	}
	id := string(data[:n])
	data = data[n:]
	aead, ok := s.aeads[id]
	if !ok {
		return nil, time.Time{}, fmt.Errorf("rediscache: key id %q: %w", id, errUnknownKey)
	}
	if len(data) < aead.NonceSize() {
		return nil, time.Time{}, errors.New("rediscache: entry is truncated")
	}
	plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(redisKey))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("rediscache: open entry sealed with key %q: %w", id, err)
	}
	defer clear(plain)
	var rec record
	if json.Unmarshal(plain, &rec) != nil {
		// The decoder's message could quote the plaintext: leave it out.
		return nil, time.Time{}, errors.New("rediscache: decode entry: not a credential record")
	}
	cred := &providers.Credential{Fields: make(map[string]providers.Secret, len(rec.Fields))}
	for name, v := range rec.Fields {
		cred.Fields[name] = providers.NewSecret(v)
	}
	if rec.Expiry != 0 {
		cred.Expiry = time.Unix(0, rec.Expiry)
	}
	return cred, time.Unix(0, rec.FetchedAt), nil
}
