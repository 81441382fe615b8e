package identity

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// apiServer emulates the Kubernetes API server's TokenReview endpoint on
// 127.0.0.1: POST /apis/authentication.k8s.io/v1/tokenreviews, with the
// caller authenticated by bearer token.
type apiServer struct {
	srv     *httptest.Server
	caFile  string
	hits    atomic.Int32
	status  atomic.Int32 // forced HTTP status; 0: normal
	mu      sync.Mutex
	reviews map[string]tokenReview
}

const gatewayToken = "gateway-own-sa-token"

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	a := &apiServer{reviews: map[string]tokenReview{}}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != tokenReviewPath {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+gatewayToken {
			http.Error(w, `{"kind":"Status","code":401}`, http.StatusUnauthorized)
			return
		}
		if s := a.status.Load(); s != 0 {
			http.Error(w, "forced", int(s))
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
			return
		}
		var in tokenReview
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Kind != "TokenReview" || in.APIVersion != "authentication.k8s.io/v1" {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		out, ok := a.reviews[in.Spec.Token]
		a.mu.Unlock()
		out.APIVersion, out.Kind = in.APIVersion, in.Kind
		if ok && out.Status.Audiences == nil {
			out.Status.Audiences = in.Spec.Audiences
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(a.srv.Close)
	a.caFile = writeFile(t, t.TempDir(), "ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw}))
	return a
}

func (a *apiServer) authenticate(tok, user string, audiences []string, pod string) {
	var r tokenReview
	r.Status.Authenticated = true
	r.Status.User.Username = user
	r.Status.Audiences = audiences
	if pod != "" {
		r.Status.User.Extra = map[string][]string{"authentication.kubernetes.io/pod-name": {pod}}
	}
	a.mu.Lock()
	a.reviews[tok] = r
	a.mu.Unlock()
}

func (a *apiServer) config(t *testing.T) KubernetesConfig {
	return KubernetesConfig{
		APIServer: a.srv.URL,
		CAFile:    a.caFile,
		TokenFile: writeFile(t, t.TempDir(), "token", []byte(gatewayToken+"\n")),
		Audiences: []string{"credgate"},
	}
}

func newTestTokenReview(t *testing.T, c *fakeClock, cfg KubernetesConfig, jv *jwtVerifier) *tokenReviewVerifier {
	t.Helper()
	full := Config{Kubernetes: &cfg}.WithDefaults()
	if err := full.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := newTokenReviewVerifier(*full.Kubernetes, jv, full.JWT.ClockSkew, testOptions(c))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenReview(t *testing.T) {
	clock := newFakeClock()
	api := newAPIServer(t)
	goodToken := projectedToken("good")
	api.authenticate(goodToken, "system:serviceaccount:billing:api", nil, "api-7f9")
	api.authenticate("other-audience", "system:serviceaccount:billing:api", []string{"vault"}, "")
	api.authenticate("human", "alice@example.org", nil, "")
	// "revoked" is unknown to the server: authenticated false, as for a
	// token whose pod was deleted.
	v := newTestTokenReview(t, clock, api.config(t), nil)

	tests := []struct {
		name    string
		tok     string
		want    *Factor
		wantErr error
		inMsg   string
	}{
		{name: "authenticated service account", tok: goodToken,
			// The factor expires with the review's answer, before the
			// token's exp.
			want: &Factor{Kind: KindKubernetes, Subject: "system:serviceaccount:billing:api", Attributes: map[string]string{"namespace": "billing", "service_account": "api", "pod": "api-7f9"},
				Expires: t0.Add(DefaultTokenReviewCacheTTL)}},
		{name: "revoked", tok: "revoked", wantErr: ErrInvalid, inMsg: "did not authenticate"},
		{name: "valid for another audience only", tok: "other-audience", wantErr: ErrInvalid, inMsg: "none of the audiences credgate"},
		{name: "not a service account", tok: "human", wantErr: ErrInvalid, inMsg: "not to a service account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := v.Verify(context.Background(), bearer(tt.tok))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if f != nil {
					// The factor keeps the verified token for token
					// exchange; compare the rest.
					if f.Token.Reveal() != tt.tok {
						t.Errorf("the factor does not carry the verified token")
					}
					g := *f
					g.Token = Token{}
					f = &g
				}
				if diff := cmp.Diff(tt.want, f); diff != "" {
					t.Errorf("factor (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.inMsg) {
				t.Fatalf("error %v, want %v saying %q", err, tt.wantErr, tt.inMsg)
			}
			if strings.Contains(err.Error(), tt.tok) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}

	// Answers, good and bad, are cached briefly.
	before := api.hits.Load()
	for range 5 {
		v.Verify(context.Background(), bearer(goodToken))
		v.Verify(context.Background(), bearer("revoked"))
	}
	if got := api.hits.Load() - before; got != 0 {
		t.Fatalf("cached answers caused %d reviews", got)
	}
	clock.Advance(DefaultTokenReviewCacheTTL)
	if _, err := v.Verify(context.Background(), bearer(goodToken)); err != nil {
		t.Fatal(err)
	}
	if got := api.hits.Load() - before; got != 1 {
		t.Fatalf("after the cache TTL: %d reviews, want 1", got)
	}
	// A pod deleted meanwhile: the next review refuses the token.
	api.mu.Lock()
	delete(api.reviews, goodToken)
	api.mu.Unlock()
	clock.Advance(DefaultTokenReviewCacheTTL)
	if _, err := v.Verify(context.Background(), bearer(goodToken)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoked after the cache TTL: error %v, want ErrInvalid", err)
	}
}

func TestTokenReviewUnavailable(t *testing.T) {
	clock := newFakeClock()
	api := newAPIServer(t)
	tok := projectedToken("t")
	api.authenticate(tok, "system:serviceaccount:a:b", nil, "")
	cfg := api.config(t)

	api.status.Store(http.StatusInternalServerError)
	v := newTestTokenReview(t, clock, cfg, nil)
	if _, err := v.Verify(context.Background(), bearer(tok)); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalid) {
		t.Fatalf("API server error: %v, want ErrUnavailable only", err)
	}
	api.status.Store(0)
	// Errors are not cached: the next try works.
	if _, err := v.Verify(context.Background(), bearer(tok)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}

	bad := cfg
	bad.TokenFile = writeFile(t, t.TempDir(), "token", []byte("wrong"))
	v = newTestTokenReview(t, clock, bad, nil)
	_, err := v.Verify(context.Background(), bearer("t2"))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "refused the gateway's own token") {
		t.Fatalf("gateway token refused: %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error %q contains the gateway's token", err)
	}

	down := cfg
	down.APIServer = "https://127.0.0.1:1"
	down.Timeout = time.Second
	v = newTestTokenReview(t, clock, down, nil)
	if _, err := v.Verify(context.Background(), bearer("t3")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("API server down: %v", err)
	}
}

// TestTokenReviewIssuers: tokens that a jwt issuer claims are not
// reviewed, unless kubernetes.issuers names their issuer.
func TestTokenReviewIssuers(t *testing.T) {
	clock := newFakeClock()
	api := newAPIServer(t)
	key := newRSAKey(t, "k")
	const iss = "https://token.actions.githubusercontent.com"
	jv := newTestJWT(t, clock, JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Audiences: []string{"a"}, JWKSFile: writeFile(t, t.TempDir(), "j.json", jwks(t, key))}}})
	ghTok := key.sign(t, std(iss, "repo", "a"))
	v := newTestTokenReview(t, clock, api.config(t), jv)
	if f, err := v.Verify(context.Background(), bearer(ghTok)); f != nil || err != nil {
		t.Fatalf("token claimed by a jwt issuer was reviewed: %v, %v", f, err)
	}
	if api.hits.Load() != 0 {
		t.Fatal("review requested")
	}
	cfg := api.config(t)
	cfg.Issuers = []string{"https://kubernetes.default.svc"}
	v = newTestTokenReview(t, clock, cfg, nil)
	if f, err := v.Verify(context.Background(), bearer("opaque")); f != nil || err != nil {
		t.Fatalf("opaque token reviewed despite issuers: %v, %v", f, err)
	}
	k8sTok := key.sign(t, std("https://kubernetes.default.svc", "system:serviceaccount:a:b", "credgate"))
	api.authenticate(k8sTok, "system:serviceaccount:a:b", nil, "")
	f, err := v.Verify(context.Background(), bearer(k8sTok))
	if err != nil || f.Attributes["namespace"] != "a" {
		t.Fatalf("token of a listed issuer: %v, %v", f, err)
	}
	if want := t0.Add(DefaultTokenReviewCacheTTL); !f.Expires.Equal(want) {
		t.Errorf("Expires = %v, want the review's lifetime %v (before the token's exp)", f.Expires, want)
	}
}
