package httpsig

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/injectors/injectortest"
)

// The test keys and the example request of RFC 9421 Appendix B.
const (
	rfcEd25519Key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n"
	rfcSharedKey  = "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ=="
	rfcBody       = `{"hello": "world"}`
)

// rfcRequest is the test request of RFC 9421 Appendix B.2.
func rfcRequest() *http.Request {
	r := httptest.NewRequest("POST", "https://example.com/foo?param=Value&Pet=dog", strings.NewReader(rfcBody))
	r.Header.Set("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
	r.Header.Set("Content-Type", "application/json")
	return r
}

// rfcClock is the created time of the Appendix B examples.
func rfcClock() time.Time { return time.Unix(1618884473, 0) }

func loadWith(t *testing.T, settings string) *Injector {
	t.Helper()
	inj, err := injectortest.Load(t, "httpsig", settings)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	s := inj.(*Injector)
	s.now = rfcClock
	return s
}

// TestRFC9421Vectors reproduces the signatures of RFC 9421 B.2.5 (HMAC)
// and B.2.6 (Ed25519) byte for byte: both algorithms are deterministic,
// so the signature base, the parameters and their serialization must all
// be exactly the RFC's.
func TestRFC9421Vectors(t *testing.T) {
	tests := []struct {
		name, settings, field, key, wantInput, wantSig string
	}{
		{
			name:      "B.2.6 ed25519",
			settings:  "{label: sig-b26, key_id: test-key-ed25519, components: [date, '@method', '@path', '@authority', content-type, content-length]}",
			field:     "private_key",
			key:       rfcEd25519Key,
			wantInput: `sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`,
			wantSig:   `sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:`,
		},
		{
			name:      "B.2.5 hmac-sha256",
			settings:  "{label: sig-b25, algorithm: hmac-sha256, key_encoding: base64, key_id: test-shared-secret, components: [date, '@authority', content-type]}",
			field:     "secret",
			key:       rfcSharedKey,
			wantInput: `sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"`,
			wantSig:   `sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := loadWith(t, tt.settings)
			r := rfcRequest()
			if err := s.Inject(r, injectortest.Cred(tt.field, tt.key)); err != nil {
				t.Fatalf("Inject: %v", err)
			}
			if got := r.Header.Get("Signature-Input"); got != tt.wantInput {
				t.Errorf("Signature-Input\n got %s\nwant %s", got, tt.wantInput)
			}
			if got := r.Header.Get("Signature"); got != tt.wantSig {
				t.Errorf("Signature\n got %s\nwant %s", got, tt.wantSig)
			}
		})
	}
}

// TestContentDigestRFC checks Content-Digest against RFC 9421 B.2's
// sha-512 digest of the example body, and that the body still reaches
// the upstream whole.
func TestContentDigestRFC(t *testing.T) {
	s := loadWith(t, "{key_id: k, content_digest: sha-512, components: ['@method', content-digest]}")
	r := rfcRequest()
	if err := s.Inject(r, injectortest.Cred("private_key", rfcEd25519Key)); err != nil {
		t.Fatal(err)
	}
	want := "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
	if got := r.Header.Get("Content-Digest"); got != want {
		t.Errorf("Content-Digest\n got %s\nwant %s", got, want)
	}
	b, err := io.ReadAll(r.Body)
	if err != nil || string(b) != rfcBody {
		t.Errorf("body after Inject = %q, %v; want the original", b, err)
	}
}
