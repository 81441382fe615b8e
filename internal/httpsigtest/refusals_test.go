package httpsigtest_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/httpsigtest"
)

// message is what a signature is computed over: the request's
// components as a signer saw them.
type message struct {
	method, authority, path, query, body, contentType string
	created, expires                                  int64
	keyid, alg                                        string
	// covered are the component identifiers in order (default: method,
	// authority, path, query, content-type, content-digest).
	covered []string
	// digestAlg names the Content-Digest algorithm (default sha-256).
	digestAlg string
}

func (m message) digest() string {
	sum := sha256.Sum256([]byte(m.body))
	alg := m.digestAlg
	if alg == "" {
		alg = "sha-256"
	}
	return alg + "=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

// base builds the RFC 9421 §2.5 signature base by hand (no structured-
// field library, apart from the fake's) and the Signature-Input value.
func (m message) base() (base, input string) {
	covered := m.covered
	if covered == nil {
		covered = []string{"@method", "@authority", "@path", "@query", "content-type", "content-digest"}
	}
	var b strings.Builder
	ids := make([]string, len(covered))
	for i, c := range covered {
		ids[i] = `"` + c + `"`
		v := map[string]string{"@method": m.method, "@authority": m.authority, "@path": m.path,
			"@query": "?" + m.query, "content-type": m.contentType, "content-digest": m.digest()}[c]
		fmt.Fprintf(&b, "%s: %s\n", ids[i], v)
	}
	input = "(" + strings.Join(ids, " ") + fmt.Sprintf(");created=%d", m.created)
	if m.expires != 0 {
		input += fmt.Sprintf(";expires=%d", m.expires)
	}
	input += `;keyid="` + m.keyid + `"`
	if m.alg != "" {
		input += `;alg="` + m.alg + `"`
	}
	b.WriteString(`"@signature-params": ` + input)
	return b.String(), input
}

// TestVerifierRefusesWhatRFC9421Refuses: the fake accepts a request
// signed over its components as RFC 9421 builds the base, and refuses it
// with the signature one bit off, or signed over another method,
// authority, path, query, body (Content-Digest) or header; with created
// too old or in the future, expires past, an unknown keyid, an alg the
// key is not registered for, a query it does not cover, and a
// Content-Digest in no algorithm it supports.
func TestVerifierRefusesWhatRFC9421Refuses(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := httpsigtest.NewServer(nil, &httpsigtest.Verifier{Now: func() time.Time { return now },
		Keys: map[string]httpsigtest.Key{"k1": {Public: pub, Alg: "ed25519"}}})
	t.Cleanup(s.Close)
	sent := message{method: "POST", authority: "api.partner.example", path: "/v1/orders", query: "id=7",
		body: `{"qty":1}`, contentType: "application/json", created: now.Unix(), keyid: "k1", alg: "ed25519"}
	// send sends sent's request with signed's signature (and flip, when
	// set, changes one bit of it).
	send := func(signed message, flip bool) int {
		t.Helper()
		base, input := signed.base()
		sig := ed25519.Sign(priv, []byte(base))
		if flip {
			sig[0] ^= 1
		}
		r, err := http.NewRequest(sent.method, s.URL+sent.path+"?"+sent.query, strings.NewReader(sent.body))
		if err != nil {
			t.Fatal(err)
		}
		r.Host = sent.authority
		r.Header.Set("Content-Type", sent.contentType)
		r.Header.Set("Content-Digest", signed.digest())
		r.Header.Set("Signature-Input", "sig1="+input)
		r.Header.Set("Signature", "sig1=:"+base64.StdEncoding.EncodeToString(sig)+":")
		resp, err := s.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send(sent, false); code != http.StatusOK {
		t.Fatalf("a valid signature: %d; refused %q", code, s.Refused())
	}
	change := func(f func(*message)) message { m := sent; f(&m); return m }
	for _, c := range []struct {
		name   string
		signed message
		flip   bool
	}{
		{"signature one bit off", sent, true},
		{"signed over another method", change(func(m *message) { m.method = "GET" }), false},
		{"signed over another authority", change(func(m *message) { m.authority = "other.example" }), false},
		{"signed over another path", change(func(m *message) { m.path = "/v1/refunds" }), false},
		{"signed over another query", change(func(m *message) { m.query = "id=8" }), false},
		{"signed over another body", change(func(m *message) { m.body = `{"qty":9}` }), false},
		{"signed over another content-type", change(func(m *message) { m.contentType = "text/plain" }), false},
		{"created 6 minutes ago", change(func(m *message) { m.created = now.Add(-6 * time.Minute).Unix() }), false},
		{"created 2 minutes ahead", change(func(m *message) { m.created = now.Add(2 * time.Minute).Unix() }), false},
		{"expired", change(func(m *message) { m.expires = now.Add(-time.Second).Unix() }), false},
		{"unknown keyid", change(func(m *message) { m.keyid = "k2" }), false},
		{"alg the key is not registered for", change(func(m *message) { m.alg = "hmac-sha256" }), false},
		{"query not covered", change(func(m *message) {
			m.covered = []string{"@method", "@authority", "@path", "content-type", "content-digest"}
		}), false},
		{"body not covered", change(func(m *message) { m.covered = []string{"@method", "@authority", "@path", "@query"} }), false},
		{"Content-Digest in an unsupported algorithm only", change(func(m *message) { m.digestAlg = "md5" }), false},
	} {
		if code := send(c.signed, c.flip); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", c.name, code)
		}
	}
}
