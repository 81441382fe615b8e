package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/api/option"
	pubsub "google.golang.org/api/pubsub/v1"
	storage "google.golang.org/api/storage/v1"

	"github.com/credgate/credgate/internal/googletest"
)

const googlePolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  pubsub:
    hosts: [pubsub.googleapis.com]
    allow_private: true
  storage:
    hosts: [storage.googleapis.com]
    allow_private: true
credentials:
  sa-key:
    provider: static
    file: KEY_FILE
  pubsub-jwt:
    provider: google
    key: {credential: sa-key}
    mode: self_signed_jwt
    audience: https://pubsub.googleapis.com/
  gcs:
    provider: google
    key: {credential: sa-key}
    scopes: [https://www.googleapis.com/auth/cloud-platform]
    ca_cert: CA_FILE
rules:
  - {name: publish, from: local, to: pubsub, methods: [POST], paths: ["/v1/projects/acme/topics/*"], inject: {credential: pubsub-jwt, as: bearer}}
  - {name: list, from: local, to: storage, methods: [GET], paths: ["/storage/v1/b/acme-reports/*"], inject: {credential: gcs, as: bearer}}
default: deny
`

// TestGoogle drives Google's Go API clients (google.golang.org/api, with
// no credentials: option.WithHTTPClient over HTTPS_PROXY and the CA)
// through the gateway to a fake Google (internal/googletest) that
// verifies the self-signed JWT at the API and the JWT bearer assertion at
// its token endpoint. The service account's JSON key comes from another
// credential (composition).
func TestGoogle(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := originCA.Leaf("pubsub.googleapis.com", "storage.googleapis.com", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	g := googletest.New(googletest.Options{Certificate: &leaf})
	t.Cleanup(g.Close)
	acct := googletest.Account{Email: "reports@acme.iam.gserviceaccount.com", KeyID: "e2e-key", Key: key}
	g.AddAccount(acct)
	js, err := acct.JSONKey(g.TokenURL)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(keyFile, js, 0o600); err != nil {
		t.Fatal(err)
	}
	reportPeer(t, "google: fake token endpoint and API (internal/googletest) at %s", g.URL)

	pol := strings.NewReplacer("KEY_FILE", keyFile, "CA_FILE", originCACert).Replace(googlePolicy)
	e := startEnv(t, envOptions{
		Policy:  pol,
		Resolve: map[string]string{"pubsub.googleapis.com:443": g.Addr, "storage.googleapis.com:443": g.Addr},
	})
	// A piece of the key's PEM body and every access token issued must
	// stay out of the gateway's output.
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	e.secrets = append(e.secrets, base64.StdEncoding.EncodeToString(der)[64:128])
	t.Cleanup(func() { e.secrets = append(e.secrets, g.Tokens()...) })
	hc := newGoClient(t, e.proxyURL, gwCACert, false)
	ctx := context.Background()

	t.Run("pubsub with a self-signed JWT, no token endpoint call", func(t *testing.T) {
		svc, err := pubsub.NewService(ctx, option.WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Projects.Topics.Publish("projects/acme/topics/reports",
			&pubsub.PublishRequest{Messages: []*pubsub.PubsubMessage{{Data: "aGVsbG8="}}}).Context(ctx).Do()
		if err != nil {
			t.Fatalf("Publish through the gateway: %v", err)
		}
		if n := g.Grants(); n != 0 {
			t.Errorf("%d token requests; a self-signed JWT needs none", n)
		}
	})

	t.Run("storage with an access token from the JWT bearer grant", func(t *testing.T) {
		svc, err := storage.NewService(ctx, option.WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := svc.Objects.List("acme-reports").Context(ctx).Do(); err != nil {
				t.Fatalf("Objects.List through the gateway: %v", err)
			}
		}
		if n := g.Grants(); n != 1 {
			t.Errorf("%d token requests for three calls, want 1 (cached)", n)
		}
	})

	if calls := g.APICalls(); len(calls) != 4 || slices.ContainsFunc(calls, func(s string) bool { return s != acct.Email }) {
		t.Errorf("the fake API served %v, want four calls as %s", calls, acct.Email)
	}
}
