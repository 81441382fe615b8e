// Package httpsigtest is a partner API that authenticates requests by
// HTTP Message Signatures (RFC 9421) and Content-Digest (RFC 9530), as a
// verifier following the RFCs does: it rebuilds the signature base from
// the request it received, checks the signature with the public key (or
// HMAC secret) registered for the keyid, the created/expires window, that
// the components it requires are covered, and that Content-Digest is the
// digest of the body it read (in an algorithm it supports), and that a
// query is covered. It is the server side of the tests of the
// httpsig injector; it shares no code with it.
package httpsigtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/credgate/credgate/internal/fakekit"
)

// Key verifies signatures made with one keyid.
type Key struct {
	// Public is an ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey;
	// Secret an HMAC-SHA256 key. Set one.
	Public crypto.PublicKey
	Secret []byte
	// Alg is the algorithm the key is registered for (RFC 9421 §3.3).
	Alg string
}

// Verifier checks signed requests.
type Verifier struct {
	// Keys maps keyids to keys.
	Keys map[string]Key
	// Required lists components every signature must cover. Default
	// @method, @authority, @path, for a request with a body
	// content-digest, and for a request with a query @query (or
	// @target-uri or @request-target, which contain it).
	Required []string
	// MaxAge bounds how old created may be (default 5 minutes); created
	// may be at most a minute in the future.
	MaxAge time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Verify checks every signature on r, whose body (already read) is body.
// It returns the keyid of the (last) signature verified.
func (v *Verifier) Verify(r *http.Request, body []byte) (string, error) {
	inputs, err := httpsfv.UnmarshalDictionary(r.Header.Values("Signature-Input"))
	if err != nil {
		return "", fmt.Errorf("the Signature-Input header is not a structured-field dictionary: %w", err)
	}
	sigs, err := httpsfv.UnmarshalDictionary(r.Header.Values("Signature"))
	if err != nil {
		return "", fmt.Errorf("the Signature header is not a structured-field dictionary: %w", err)
	}
	if len(inputs.Names()) == 0 {
		return "", errors.New("no Signature-Input")
	}
	if err := checkDigest(r, body); err != nil {
		return "", err
	}
	var keyID string
	for _, label := range inputs.Names() {
		m, _ := inputs.Get(label)
		il, ok := m.(httpsfv.InnerList)
		if !ok {
			return "", fmt.Errorf("signature %s: Signature-Input member is not an inner list", label)
		}
		sm, ok := sigs.Get(label)
		if !ok {
			return "", fmt.Errorf("signature %s: no Signature member", label)
		}
		item, ok := sm.(httpsfv.Item)
		raw, isBytes := item.Value.([]byte)
		if !ok || !isBytes {
			return "", fmt.Errorf("signature %s: the Signature member is not a byte sequence", label)
		}
		if keyID, err = v.verifyOne(r, body, label, il, raw); err != nil {
			return "", err
		}
	}
	return keyID, nil
}

func (v *Verifier) verifyOne(r *http.Request, body []byte, label string, il httpsfv.InnerList, sig []byte) (string, error) {
	kid, _ := il.Params.Get("keyid")
	keyID, _ := kid.(string)
	key, ok := v.Keys[keyID]
	if !ok {
		return "", fmt.Errorf("signature %s: unknown keyid %q", label, keyID)
	}
	if alg, ok := il.Params.Get("alg"); ok && alg != key.Alg {
		return "", fmt.Errorf("signature %s: alg %v, the key is registered for %s", label, alg, key.Alg)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	maxAge := v.MaxAge
	if maxAge == 0 {
		maxAge = 5 * time.Minute
	}
	c, ok := il.Params.Get("created")
	created, isInt := c.(int64)
	if !ok || !isInt {
		return "", fmt.Errorf("signature %s: no created parameter", label)
	}
	if t := time.Unix(created, 0); t.After(now.Add(time.Minute)) || t.Before(now.Add(-maxAge)) {
		return "", fmt.Errorf("signature %s: created %s is outside the accepted window", label, t.UTC())
	}
	if e, ok := il.Params.Get("expires"); ok {
		if exp, _ := e.(int64); time.Unix(exp, 0).Before(now) {
			return "", fmt.Errorf("signature %s: expired", label)
		}
	}
	var base strings.Builder
	var covered []string
	for _, it := range il.Items {
		name, ok := it.Value.(string)
		if !ok {
			return "", fmt.Errorf("signature %s: a component identifier is not a string", label)
		}
		covered = append(covered, name)
		id, err := httpsfv.Marshal(it)
		if err != nil {
			return "", err
		}
		values, err := componentValues(r, name, it.Params)
		if err != nil {
			return "", fmt.Errorf("signature %s: %w", label, err)
		}
		for _, val := range values {
			fmt.Fprintf(&base, "%s: %s\n", id, val)
		}
	}
	required := v.Required
	if required == nil {
		required = []string{"@method", "@authority", "@path"}
		if len(body) > 0 {
			required = append(required, "content-digest")
		}
	}
	for _, want := range required {
		if !slices.Contains(covered, want) {
			return "", fmt.Errorf("signature %s: %s is not covered (covered: %s)", label, want, strings.Join(covered, " "))
		}
	}
	// A query the signature does not cover could be changed in flight
	// without breaking it: RFC 9421 §7.2.1 (insufficient coverage) has
	// the verifier require what its application needs, and an API's
	// query selects what the request does. So a request with a query
	// needs @query, or a component that contains it (@target-uri,
	// @request-target).
	if v.Required == nil && r.URL.RawQuery != "" && !slices.ContainsFunc(covered, func(c string) bool {
		return c == "@query" || c == "@target-uri" || c == "@request-target"
	}) {
		return "", fmt.Errorf("signature %s: the request has a query and @query is not covered (covered: %s)", label, strings.Join(covered, " "))
	}
	params, err := httpsfv.Marshal(httpsfv.List{il})
	if err != nil {
		return "", err
	}
	base.WriteString(`"@signature-params": ` + params)
	if err := verify(key, []byte(base.String()), sig); err != nil {
		return "", fmt.Errorf("signature %s (keyid %s, %s): %w", label, keyID, key.Alg, err)
	}
	return keyID, nil
}

// componentValues reads a component from the request as received.
func componentValues(r *http.Request, name string, params *httpsfv.Params) ([]string, error) {
	host := strings.TrimSuffix(strings.ToLower(r.Host), ":443")
	switch name {
	case "@method":
		return []string{r.Method}, nil
	case "@authority":
		return []string{host}, nil
	case "@scheme":
		return []string{"https"}, nil
	case "@path":
		return []string{r.URL.EscapedPath()}, nil
	case "@query":
		return []string{"?" + r.URL.RawQuery}, nil
	case "@request-target":
		return []string{r.RequestURI}, nil
	case "@target-uri":
		return []string{"https://" + host + r.RequestURI}, nil
	case "@query-param":
		n, _ := params.Get("name")
		pn, _ := n.(string)
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		vals, ok := q[pn]
		if !ok {
			return nil, fmt.Errorf("query parameter %q is covered but absent", pn)
		}
		out := make([]string, len(vals))
		for i, v := range vals {
			e := url.QueryEscape(v)
			e = strings.NewReplacer("+", "%20", "~", "%7E", "%2A", "*").Replace(e)
			out[i] = e
		}
		return out, nil
	}
	if strings.HasPrefix(name, "@") {
		return nil, fmt.Errorf("derived component %s is not known", name)
	}
	vals := r.Header.Values(name)
	if name == "content-length" && len(vals) == 0 && r.ContentLength >= 0 {
		vals = []string{strconv.FormatInt(r.ContentLength, 10)}
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("header %s is covered but absent", name)
	}
	for i := range vals {
		vals[i] = strings.TrimSpace(vals[i])
	}
	return []string{strings.Join(vals, ", ")}, nil
}

// checkDigest checks Content-Digest against the body, when there is one.
func checkDigest(r *http.Request, body []byte) error {
	vals := r.Header.Values("Content-Digest")
	if len(vals) == 0 {
		return nil
	}
	d, err := httpsfv.UnmarshalDictionary(vals)
	if err != nil {
		return fmt.Errorf("the Content-Digest header is not a structured-field dictionary: %w", err)
	}
	known := 0
	for _, alg := range d.Names() {
		m, _ := d.Get(alg)
		it, _ := m.(httpsfv.Item)
		got, _ := it.Value.([]byte)
		var want []byte
		switch alg {
		case "sha-256":
			s := sha256.Sum256(body)
			want = s[:]
		case "sha-512":
			s := sha512.Sum512(body)
			want = s[:]
		default:
			continue
		}
		known++
		if !hmac.Equal(got, want) {
			return fmt.Errorf("the Content-Digest %s does not match the %d-byte body received", alg, len(body))
		}
	}
	// RFC 9530 §2: a recipient that supports none of the algorithms
	// cannot check the body; a signed Content-Digest of only unknown
	// algorithms would leave the body unverified.
	if known == 0 {
		return fmt.Errorf("the Content-Digest names no supported algorithm (sha-256, sha-512)")
	}
	return nil
}

// verify checks sig over base with key (RFC 9421 §3.3).
func verify(key Key, base, sig []byte) error {
	bad := errors.New("the signature does not verify")
	switch key.Alg {
	case "hmac-sha256":
		m := hmac.New(sha256.New, key.Secret)
		m.Write(base)
		if !hmac.Equal(m.Sum(nil), sig) {
			return bad
		}
	case "ed25519":
		if !ed25519.Verify(key.Public.(ed25519.PublicKey), base, sig) {
			return bad
		}
	case "ecdsa-p256-sha256", "ecdsa-p384-sha384":
		pub := key.Public.(*ecdsa.PublicKey)
		var digest []byte
		size := 32
		if key.Alg == "ecdsa-p384-sha384" {
			d := sha512.Sum384(base)
			digest, size = d[:], 48
		} else {
			d := sha256.Sum256(base)
			digest = d[:]
		}
		if len(sig) != 2*size {
			return fmt.Errorf("an ECDSA signature of %d bytes, want %d (r || s)", len(sig), 2*size)
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, digest, r, s) {
			return bad
		}
	case "rsa-pss-sha512":
		d := sha512.Sum512(base)
		if rsa.VerifyPSS(key.Public.(*rsa.PublicKey), crypto.SHA512, d[:], sig, &rsa.PSSOptions{SaltLength: 64}) != nil {
			return bad
		}
	case "rsa-v1_5-sha256":
		d := sha256.Sum256(base)
		if rsa.VerifyPKCS1v15(key.Public.(*rsa.PublicKey), crypto.SHA256, d[:], sig) != nil {
			return bad
		}
	default:
		return fmt.Errorf("algorithm %q is not known", key.Alg)
	}
	return nil
}

// Echo is what the Server answers to a verified request.
type Echo struct {
	KeyID  string `json:"keyid"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	Body   string `json:"body"`
}

// Server is a TLS partner API that accepts only verified requests:
// 200 with an Echo, or 401 with the reason.
type Server struct {
	*httptest.Server
	// Addr is host:port.
	Addr string

	v        *Verifier
	mu       sync.Mutex
	accepted int
	refused  []string
}

// NewServer starts a Server with cert (nil: httptest's own) and v.
func NewServer(cert *tls.Certificate, v *Verifier) *Server {
	s := &Server{v: v}
	s.Server = fakekit.StartTLS(http.HandlerFunc(s.serve), cert)
	s.Addr = s.Listener.Addr().(*net.TCPAddr).String()
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	keyID, err := s.v.Verify(r, body)
	s.mu.Lock()
	if err != nil {
		s.refused = append(s.refused, err.Error())
	} else {
		s.accepted++
	}
	s.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Echo{KeyID: keyID, Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Body: string(body)})
}

// Accepted is the number of requests verified.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Refused returns the reasons of the requests refused.
func (s *Server) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.refused)
}
