package vault

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
)

// pkiEnv mounts a PKI engine with a root CA and a client-certificate role.
func pkiEnv(t *testing.T, e *env) (mount string) {
	t.Helper()
	mount = e.mount(t, "pki", map[string]any{"config": map[string]any{"max_lease_ttl": "87600h"}})
	e.write(t, mount+"/root/generate/internal", map[string]any{"common_name": "credgate test root", "ttl": "8760h"})
	e.write(t, mount+"/roles/partner-client", map[string]any{"allow_any_name": true, "enforce_hostnames": false,
		"client_flag": true, "server_flag": false, "max_ttl": "2h", "key_type": "ec", "key_bits": 256, "generate_lease": true,
		"allowed_uri_sans": "spiffe://*"})
	return mount
}

// TestPKIIssuesClientCertificate issues a certificate per workload and
// uses it for mTLS to a local origin that requires client certificates
// from the PKI's CA.
func TestPKIIssuesClientCertificate(t *testing.T) {
	e := newEnv(t, envOpts{})
	mount := pkiEnv(t, e)
	p := e.load(t, "vault-pki", e.serverYAML(tokenAuth)+fmt.Sprintf(`mount: %s
role: partner-client
common_name: "{{.workload.name}}.clients.example.com"
uri_sans: ["spiffe://example.org/ns/{{.workload.namespace}}/sa/{{.workload.name}}"]
ttl: 1h
revoke_on_cleanup: true
`, mount))
	w := workload("settlement", map[string]string{"namespace": "payments"})
	cred := mustFetch(t, p, w)
	f := reveal(cred)
	pair, err := tls.X509KeyPair([]byte(f[FieldCertificate]), []byte(f[FieldPrivateKey]))
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	// The expiry is NotAfter counted on the gateway's clock from the
	// answer's Date (TestPKINotAfterOnGatewayClock): on one machine, NotAfter
	// less at most the Date's resolution and a second.
	onTime := !cred.Expiry.After(leaf.NotAfter) && leaf.NotAfter.Sub(cred.Expiry) <= 2*time.Second
	got := []string{leaf.Subject.CommonName, fmt.Sprint(leaf.URIs), fmt.Sprint(onTime)}
	want := []string{"settlement.clients.example.com", "[spiffe://example.org/ns/payments/sa/settlement]", "true"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("certificate CN, URIs, expiry at NotAfter (-want +got):\n%s", diff)
	}
	if d := time.Until(leaf.NotAfter); d < 50*time.Minute || d > 61*time.Minute {
		t.Errorf("certificate lifetime %v, want about 1h", d)
	}

	// A local origin requiring a client certificate from the PKI's CA.
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(f[FieldCAChain])) {
		t.Fatal("ca_chain holds no certificate")
	}
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello "+r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	origin.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots}
	origin.StartTLS()
	defer origin.Close()
	call := func(certs []tls.Certificate) (string, error) {
		tr := origin.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = certs
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(origin.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := call([]tls.Certificate{pair}); err != nil || body != "hello settlement.clients.example.com" {
		t.Errorf("mTLS call with the issued certificate = %q, %v", body, err)
	}
	if _, err := call(nil); err == nil {
		t.Errorf("the origin accepted a call without a client certificate")
	}

	// Another workload: its own certificate and cache scope.
	other := mustFetch(t, p, workload("ledger", map[string]string{"namespace": "payments"}))
	if reveal(other)[FieldCertificate] == f[FieldCertificate] {
		t.Errorf("two workloads got the same certificate")
	}
	s := p.(providers.Scoped)
	if s.CacheScope(providers.Request{Workload: w}) == s.CacheScope(providers.Request{Workload: workload("ledger", nil)}) {
		t.Errorf("two workloads share a cache scope")
	}
	if _, err := fetch(t, p, workload("bad", map[string]string{"namespace": "../x"})); err == nil || !strings.Contains(err.Error(), "rejected for templating") {
		t.Errorf("Fetch with an escaping attribute = %v, want it rejected", err)
	}
	if e.emu != nil {
		if err := p.(providers.CleanerUpper).Cleanup(); err != nil {
			t.Fatal(err)
		}
		for _, l := range e.emu.Leases() {
			if !l.Revoked {
				t.Errorf("certificate lease %s not revoked on cleanup", l.ID)
			}
		}
	}
}

func TestTransitSignJWT(t *testing.T) {
	e := newEnv(t, envOpts{})
	mount := e.mount(t, "transit", nil)
	c, err := NewClient(Server{Address: e.addr, Auth: Auth{Method: MethodToken, TokenEnv: tokenEnv}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		alg, keyType string
	}{
		{"ES256", "ecdsa-p256"},
		{"ES384", "ecdsa-p384"},
		{"RS256", "rsa-2048"},
		{"PS256", "rsa-2048"},
		{"EdDSA", "ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			key := strings.ToLower(tt.alg) + "-" + randName()
			e.write(t, mount+"/keys/"+key, map[string]any{"type": tt.keyType})
			pub := transitPublicKey(t, e, mount, key)
			s := &TransitSigner{Client: c, Mount: mount, Key: key, Algorithm: tt.alg, KeyID: "kid-1"}
			claims := map[string]any{"iss": "client-123", "sub": "client-123", "aud": "https://auth.example.com/token", "exp": float64(2000000000)}
			jwt, err := s.SignJWT(t.Context(), claims)
			if err != nil {
				t.Fatalf("SignJWT: %v", err)
			}
			parts := strings.Split(jwt, ".")
			if len(parts) != 3 {
				t.Fatalf("not a compact JWS: %q", jwt)
			}
			var hdr, gotClaims map[string]any
			decodeSeg(t, parts[0], &hdr)
			decodeSeg(t, parts[1], &gotClaims)
			if diff := cmp.Diff(map[string]any{"alg": tt.alg, "typ": "JWT", "kid": "kid-1"}, hdr); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(claims, gotClaims); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			sig, err := base64.RawURLEncoding.DecodeString(parts[2])
			if err != nil {
				t.Fatalf("signature not base64url: %v", err)
			}
			if err := verifyJWS(tt.alg, pub, parts[0]+"."+parts[1], sig); err != nil {
				t.Errorf("signature does not verify with the transit public key: %v", err)
			}
			if err := verifyJWS(tt.alg, pub, parts[0]+"."+parts[0], sig); err == nil {
				t.Errorf("signature verifies over other input")
			}
		})
	}
	t.Run("bad algorithm", func(t *testing.T) {
		_, err := (&TransitSigner{Client: c, Key: "k", Algorithm: "HS256"}).SignJWT(t.Context(), map[string]any{})
		if !strings.Contains(errString(err), `unsupported JWS algorithm "HS256"`) {
			t.Errorf("err = %v", err)
		}
	})
}

func decodeSeg(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// transitPublicKey reads a transit key's public key the way a verifier
// would: GET MOUNT/keys/KEY, keys["1"].public_key (PEM, or base64 for
// ed25519).
func transitPublicKey(t *testing.T, e *env, mount, key string) crypto.PublicKey {
	t.Helper()
	s := e.read(t, mount+"/keys/"+key)
	v, _ := s.Data["keys"].(map[string]any)["1"].(map[string]any)["public_key"].(string)
	if b, _ := pem.Decode([]byte(v)); b != nil {
		pub, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}
	raw, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("public key %q is neither PEM nor an ed25519 key", v)
	}
	return ed25519.PublicKey(raw)
}

func verifyJWS(alg string, pub crypto.PublicKey, input string, sig []byte) error {
	hashOf := func(h crypto.Hash) []byte { w := h.New(); w.Write([]byte(input)); return w.Sum(nil) }
	switch alg {
	case "ES256", "ES384":
		k := pub.(*ecdsa.PublicKey)
		h := crypto.SHA256
		if alg == "ES384" {
			h = crypto.SHA384
		}
		n := len(sig) / 2
		if !ecdsa.Verify(k, hashOf(h), new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])) {
			return fmt.Errorf("ecdsa signature invalid")
		}
	case "RS256":
		return rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, hashOf(crypto.SHA256), sig)
	case "PS256":
		return rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, hashOf(crypto.SHA256), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "EdDSA":
		if !ed25519.Verify(pub.(ed25519.PublicKey), []byte(input), sig) {
			return fmt.Errorf("ed25519 signature invalid")
		}
	}
	return nil
}

// TestPKICertificateTiedToToken: a certificate with a lease
// (generate_lease) is the child of the gateway's token, which Vault
// revokes with it: the credential expires no later than the token (60s
// here, for a 1h certificate) and is withdrawn when the token is found
// revoked. Runs against a real server when one is available.
func TestPKICertificateTiedToToken(t *testing.T) {
	e := newEnv(t, envOpts{})
	mount := pkiEnv(t, e)
	approle, roleID, wrapped := e.appRole(t, "60s", "1h")
	auth := fmt.Sprintf("{method: approle, mount: %s, role_id: %s, secret_id_file: %s}", approle, roleID, writeFile(t, "sid", wrapped()))
	p := e.load(t, "vault-pki", e.serverYAML(auth)+fmt.Sprintf("mount: %s\nrole: partner-client\ncommon_name: settlement.clients.example.com\nttl: 1h\n", mount))
	c1 := mustFetch(t, p, identity.Workload{})
	if latest := time.Now().Add(60 * time.Second); c1.Expiry.After(latest) {
		t.Errorf("Expiry = %v, want no later than the token's end %v (the certificate lives 1h)", c1.Expiry, latest)
	}
	if c1.Revoked == nil || c1.Revoked.Err() != nil {
		t.Fatalf("Revoked = %v, want a live context", c1.Revoked)
	}

	// Someone revokes the gateway's token (here: the token itself).
	tok := p.(*PKIProvider).client.current()
	if err := tok.api.Auth().Token().RevokeSelfWithContext(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	c2 := mustFetch(t, p, identity.Workload{}) // 403, confirmed by lookup-self: re-login
	if reveal(c1)[FieldCertificate] == reveal(c2)[FieldCertificate] {
		t.Error("the same certificate after the token was revoked")
	}
	if err := context.Cause(c1.Revoked); !errors.Is(err, errTokenRevoked) {
		t.Errorf("the first certificate's Revoked cause = %v, want errTokenRevoked", err)
	}
	if c2.Revoked.Err() != nil {
		t.Errorf("the new certificate is revoked: %v", context.Cause(c2.Revoked))
	}
}
