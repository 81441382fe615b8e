package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/go-jose/go-jose/v4"

	"github.com/credgate/credgate/internal/azuretest"
	"github.com/credgate/credgate/providers/jwtsign"
)

const azurePolicy = `
workloads:
  analytics:
    namespace: analytics
    require: [jwt]
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  reports-blob:
    hosts: [acmereports.blob.core.windows.net]
    allow_private: true
    encoded_slashes: true   # azblob writes the '/' in blob names as %2F
  archive-blob:
    hosts: [acmearchive.blob.core.windows.net]
    allow_private: true
    encoded_slashes: true
  fed-blob:
    hosts: [acmefed.blob.core.windows.net]
    allow_private: true
    encoded_slashes: true
credentials:
  storage-key:
    provider: static
    file: KEY_FILE
  entra-storage:
    provider: azure
    tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    resource: https://storage.azure.com
    authority_host: ENTRA_URL
    client_certificate: {file: CERT_FILE}
    ca_cert: CA_FILE
  entra-federated:
    provider: azure
    tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47
    client_id: 0f5a3b1c-2d4e-4f60-8a7b-9c0d1e2f3a4b
    resource: https://storage.azure.com
    authority_host: ENTRA_URL
    federated: {factor: jwt}
    ca_cert: CA_FILE
rules:
  - {name: fed-entra, from: analytics, to: fed-blob, inject: {credential: entra-federated, as: bearer}}
  - {name: reports-sharedkey, from: local, to: reports-blob, inject: {credential: storage-key, as: azure-sharedkey}}
  - {name: archive-entra, from: local, to: archive-blob, inject: {credential: entra-storage, as: bearer}}
default: deny
`

// TestAzure drives the Azure SDK for Go's blob client (azblob, with no
// credential: only HTTPS_PROXY and the gateway's CA) through the
// gateway to two fake storage accounts (internal/azuretest): one with
// Shared Key, which the fake recomputes, the other with an Entra bearer
// token the azure provider minted by a certificate assertion, which the
// fake Entra verified (x5t#S256, signature, aud, lifetime) and the fake
// storage checks.
func TestAzure(t *testing.T) {
	t.Parallel()
	const (
		tenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
		clientID = "6731de76-14a6-49ae-97bc-6eba6914391e"
	)
	rawKey := make([]byte, 64)
	if _, err := rand.Read(rawKey); err != nil {
		t.Fatal(err)
	}
	accountKey := base64.StdEncoding.EncodeToString(rawKey)

	leaf, err := originCA.Leaf("acmereports.blob.core.windows.net", "acmearchive.blob.core.windows.net", "acmefed.blob.core.windows.net", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	entra := azuretest.NewEntra(azuretest.EntraOptions{Certificate: &leaf})
	t.Cleanup(entra.Close)
	reports := azuretest.NewStorage(azuretest.StorageOptions{Certificate: &leaf, Account: "acmereports", Key: accountKey})
	t.Cleanup(reports.Close)
	archiveKey := make([]byte, 64)
	_, _ = rand.Read(archiveKey)
	archive := azuretest.NewStorage(azuretest.StorageOptions{Certificate: &leaf, Account: "acmearchive", Key: base64.StdEncoding.EncodeToString(archiveKey),
		CheckBearer: func(tok string) error { return entra.CheckToken(tok, "https://storage.azure.com") }})
	t.Cleanup(archive.Close)
	reportPeer(t, "azure: fake Entra at %s, fake blob storage at %s and %s (internal/azuretest)", entra.URL, reports.URL, archive.URL)

	// The app registration's certificate, and its key, in one PEM file.
	appKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "credgate-e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &appKey.PublicKey, appKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(appKey)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "app.pem"), filepath.Join(dir, "storage.key")
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	for p, b := range map[string][]byte{certFile: pemData, keyFile: []byte(accountKey + "\n")} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	entra.AddApp(azuretest.App{Tenant: tenant, ClientID: clientID, Certificates: []*x509.Certificate{cert}})

	// Workload identity federation: the cluster's OIDC issuer signs the
	// workloads' tokens; the gateway's jwt factor and the fake Entra both
	// verify them against its JWKS.
	issuerKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://kubernetes.azure-e2e.test"
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &issuerKey.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}
	jwksJSON, _ := json.Marshal(jwks)
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwksJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	entra.AddApp(azuretest.App{Tenant: tenant, ClientID: "0f5a3b1c-2d4e-4f60-8a7b-9c0d1e2f3a4b", Federated: []azuretest.FederatedCredential{
		{Issuer: issuer, Subject: "system:serviceaccount:analytics:api", Audience: "credgate", JWKS: jwks}}})
	issuerSigner, err := jwtsign.NewFromKey(issuerKey, jwtsign.RS256, "k1")
	if err != nil {
		t.Fatal(err)
	}
	workloadToken := func(ns string) string {
		tok, err := issuerSigner.Sign(context.Background(), nil, map[string]any{
			"iss": issuer, "aud": []string{"credgate"}, "sub": "system:serviceaccount:" + ns + ":api",
			"iat": time.Now().Unix(), "nbf": time.Now().Add(-time.Minute).Unix(), "exp": time.Now().Add(time.Hour).Unix(),
			"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": "api", "uid": "1"}}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	pol := strings.NewReplacer("KEY_FILE", keyFile, "CERT_FILE", certFile, "CA_FILE", originCACert, "ENTRA_URL", entra.URL).Replace(azurePolicy)
	e := startEnv(t, envOptions{
		Policy: pol,
		Resolve: map[string]string{
			"acmereports.blob.core.windows.net:443": reports.Addr,
			"acmearchive.blob.core.windows.net:443": archive.Addr,
			"acmefed.blob.core.windows.net:443":     archive.Addr,
		},
		ExtraConfig: fmt.Sprintf("identity:\n  jwt:\n    issuers:\n      - issuer: %s\n        profile: kubernetes\n        audiences: [credgate]\n        jwks_file: %q\n", issuer, jwksFile),
	})
	e.secrets = append(e.secrets, accountKey, base64.StdEncoding.EncodeToString(keyDER)[64:128])
	t.Cleanup(func() { e.secrets = append(e.secrets, entra.Tokens()...) })

	hc := newGoClient(t, e.proxyURL, gwCACert, false)
	opts := &azblob.ClientOptions{ClientOptions: policy.ClientOptions{Transport: hc, Retry: policy.RetryOptions{MaxRetries: -1}}}
	ctx := context.Background()
	roundTrip := func(t *testing.T, account string, data []byte) {
		t.Helper()
		c, err := azblob.NewClientWithNoCredential("https://"+account+".blob.core.windows.net/", opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateContainer(ctx, "reports", nil); err != nil {
			t.Fatalf("CreateContainer through the gateway: %v", err)
		}
		if _, err := c.UploadBuffer(ctx, "reports", "2026/q4 summary.csv", data, nil); err != nil {
			t.Fatalf("UploadBuffer through the gateway: %v", err)
		}
		pager := c.NewListBlobsFlatPager("reports", nil)
		var names []string
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				t.Fatalf("list through the gateway: %v", err)
			}
			for _, b := range page.Segment.BlobItems {
				names = append(names, *b.Name)
			}
		}
		if !slices.Equal(names, []string{"2026/q4 summary.csv"}) {
			t.Errorf("listed %q", names)
		}
		resp, err := c.DownloadStream(ctx, "reports", "2026/q4 summary.csv", nil)
		if err != nil {
			t.Fatalf("DownloadStream through the gateway: %v", err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, data) {
			t.Errorf("downloaded %d bytes, want the %d uploaded", len(got), len(data))
		}
	}

	t.Run("shared key", func(t *testing.T) {
		data := bytes.Repeat([]byte("region,total\nemea,42\n"), 50000) // ~1 MiB, streamed
		roundTrip(t, "acmereports", data)
		if r := reports.Refused(); len(r) != 0 {
			t.Errorf("the fake refused %q", r)
		}
		if n := reports.Accepted(); n != 4 {
			t.Errorf("the fake accepted %d requests, want 4", n)
		}
	})

	t.Run("entra bearer token", func(t *testing.T) {
		roundTrip(t, "acmearchive", []byte("archived"))
		if a := archive.Auths(); len(a) != 4 || slices.ContainsFunc(a, func(s string) bool { return s != "Bearer" }) {
			t.Errorf("the fake storage saw %q, want four Bearer requests", a)
		}
		if n := entra.Grants(); n != 1 {
			t.Errorf("Entra issued %d tokens for four calls, want 1 (cached)", n)
		}
	})

	t.Run("entra token by workload identity federation", func(t *testing.T) {
		analyticsToken := workloadToken("analytics")
		e.secrets = append(e.secrets, analyticsToken)
		proxy, err := url.Parse(e.proxyURL)
		if err != nil {
			t.Fatal(err)
		}
		proxy.User = url.UserPassword("analytics", analyticsToken)
		fc := newGoClient(t, proxy.String(), gwCACert, false)
		c, err := azblob.NewClientWithNoCredential("https://acmefed.blob.core.windows.net/",
			&azblob.ClientOptions{ClientOptions: policy.ClientOptions{Transport: fc, Retry: policy.RetryOptions{MaxRetries: -1}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.UploadBuffer(ctx, "reports", "fed.txt", []byte("federated"), nil); err != nil {
			t.Fatalf("UploadBuffer as analytics through the gateway: %v (Entra refused %v)", err, entra.Refused())
		}
		var fed int
		for _, tok := range entra.Tokens() {
			if in, ok := entra.TokenInfo(tok); ok && in.Method == "federated" && in.Subject == "system:serviceaccount:analytics:api" {
				fed++
			}
		}
		if fed != 1 {
			t.Errorf("Entra issued %d federated tokens for analytics, want 1", fed)
		}
	})

	t.Run("a forged shared key from the client is replaced", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "https://acmereports.blob.core.windows.net/reports/2026/q4%20summary.csv", nil)
		req.Header.Set("Authorization", "SharedKey acmereports:Zm9yZ2Vk")
		req.Header.Set("x-ms-date", "Mon, 01 Jan 2001 00:00:00 GMT")
		req.Header.Set("x-ms-version", "2025-05-05")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d, want 200 with the gateway's signature", resp.StatusCode)
		}
	})
}
