package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// TestTokenSpellings: a token is read one way only. Duplicate members in
// its claims or header (which JSON decoders resolve differently: first
// wins, last wins, error) are refused; a member spelled in another case
// is another member (SUB is not sub, as go-jose reads it, and as the
// issuer is chosen from the unverified claims); and what is not a
// compact JWS of base64url segments (padding, white space, a JWE's five
// parts, a payload with a byte-order mark or trailing data, a JSON array
// or null) is refused, never taken for a token of another shape. All
// passed when written: a guard for the probes of an outside review.
func TestTokenSpellings(t *testing.T) {
	clock := newFakeClock()
	key := newECKey(t, "k1")
	const iss = "https://issuer.example"
	v := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"credgate"}, JWKSFile: writeFile(t, t.TempDir(), "jwks.json", jwks(t, key))}}})
	exp := strconv.FormatInt(t0.Unix()+600, 10)
	claims := func(members string) []byte {
		return []byte(`{"iss":"` + iss + `","aud":"credgate","exp":` + exp + members + `}`)
	}
	sign := func(payload []byte) string {
		return signWithHeader(t, jose.ES256, key.key, map[jose.HeaderKey]any{"kid": "k1"}, true, payload)
	}
	good := sign(claims(`,"sub":"svc"`))
	p := strings.Split(good, ".")
	enc := base64.RawURLEncoding.EncodeToString
	const undecodable, notJWS, noIssuer = "claims do not decode", "not a compact JWS", "no configured issuer accepts"
	tests := []struct {
		name    string
		tok     string
		wantSub string // "" with want: refused
		want    string
	}{
		{name: "plain", tok: good, wantSub: "svc"},
		{name: "SUB beside sub is another claim", tok: sign(claims(`,"sub":"svc","SUB":"admin"`)), wantSub: "svc"},
		{name: "duplicate sub", tok: sign(claims(`,"sub":"svc","sub":"admin"`)), want: undecodable},
		{name: "duplicate iss, another issuer's last", tok: sign([]byte(`{"iss":"` + iss + `","iss":"https://other.example","aud":"credgate","exp":` + exp + `,"sub":"svc"}`)), want: noIssuer},
		{name: "duplicate iss, this issuer's last", tok: sign([]byte(`{"iss":"https://other.example","iss":"` + iss + `","aud":"credgate","exp":` + exp + `,"sub":"svc"}`)), want: undecodable},
		{name: "duplicate exp", tok: sign(claims(`,"sub":"svc","exp":99999999999`)), want: undecodable},
		{name: "duplicate alg in the header", tok: enc([]byte(`{"alg":"none","alg":"ES256","kid":"k1"}`)) + "." + p[1] + "." + p[2], want: notJWS},
		{name: "duplicate kid in the header", tok: enc([]byte(`{"alg":"ES256","kid":"x","kid":"k1"}`)) + "." + p[1] + "." + p[2], want: notJWS},
		{name: "padded payload", tok: p[0] + "." + p[1] + "==." + p[2], want: noIssuer},
		{name: "padded signature", tok: good + "=", want: notJWS},
		{name: "space in the signature", tok: p[0] + "." + p[1] + "." + p[2][:4] + " " + p[2][4:], want: notJWS},
		{name: "JWE compact, five parts", tok: p[0] + ".." + p[1] + "." + p[2] + ".", want: noIssuer},
		{name: "byte-order mark before the claims", tok: sign(append([]byte("\xef\xbb\xbf"), claims(`,"sub":"svc"`)...)), want: noIssuer},
		{name: "a second object after the claims", tok: sign(append(claims(`,"sub":"svc"`), []byte(` {"sub":"admin"}`)...)), want: noIssuer},
		{name: "claims an array", tok: sign([]byte(`[` + string(claims(`,"sub":"svc"`)) + `]`)), want: noIssuer},
		{name: "claims null", tok: sign([]byte(`null`)), want: noIssuer},
	}
	r := NewResolver(v)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := r.Resolve(context.Background(), bearer(tt.tok), nil)
			if tt.wantSub != "" {
				f := w.Factor(KindJWT)
				if err != nil || f == nil || f.Subject != tt.wantSub {
					t.Fatalf("factor %+v, error %v; want sub %q", f, err, tt.wantSub)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) || w.Factor(KindJWT) != nil {
				t.Fatalf("error %v; want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}
