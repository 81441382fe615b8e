package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/credgate/credgate/internal/azuretest"
)

const azureMIPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  vm-blob:
    hosts: [acmevm.blob.core.windows.net]
    allow_private: true
    encoded_slashes: true
  app-blob:
    hosts: [acmeapp.blob.core.windows.net]
    allow_private: true
    encoded_slashes: true
credentials:
  vm-identity:
    provider: azure
    resource: https://storage.azure.com
    managed_identity: {source: imds, endpoint: IMDS_URL, client_id: 7b1e4c3a-9d2f-4e5a-8b6c-1d2e3f4a5b6c}
  app-identity:
    provider: azure
    resource: https://storage.azure.com
    managed_identity: {}   # source auto: IDENTITY_ENDPOINT and IDENTITY_HEADER are set
rules:
  - {name: vm, from: local, to: vm-blob, inject: {credential: vm-identity, as: bearer}}
  - {name: app, from: local, to: app-blob, inject: {credential: app-identity, as: bearer}}
default: deny
`

// TestAzureManagedIdentity drives azblob (no credential) through the
// gateway to two fake storage accounts that accept only tokens the fake
// managed identity endpoint issued for https://storage.azure.com: one
// credential is a VM's user-assigned identity from IMDS (Metadata: true,
// no X-Forwarded-For, client_id, verified by the fake), the other the
// App Service variant found from IDENTITY_ENDPOINT and IDENTITY_HEADER in
// the gateway's environment (X-IDENTITY-HEADER verified by the fake).
func TestAzureManagedIdentity(t *testing.T) {
	t.Parallel()
	const clientID = "7b1e4c3a-9d2f-4e5a-8b6c-1d2e3f4a5b6c"
	var hdr [24]byte
	_, _ = rand.Read(hdr[:])
	identityHeader := base64.RawURLEncoding.EncodeToString(hdr[:])

	imds := azuretest.NewIMDS(azuretest.IMDSOptions{SystemAssigned: true, AppServiceHeader: identityHeader, Resources: []string{"https://storage.azure.com"}})
	t.Cleanup(imds.Close)
	imds.AddIdentity(azuretest.ManagedIdentity{ClientID: clientID, ObjectID: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"})

	leaf, err := originCA.Leaf("acmevm.blob.core.windows.net", "acmeapp.blob.core.windows.net", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	check := func(variant string) func(string) error {
		return func(tok string) error {
			if err := imds.CheckToken(tok, "https://storage.azure.com"); err != nil {
				return err
			}
			if in, _ := imds.TokenInfo(tok); in.Variant != variant {
				return fmt.Errorf("token from %s, want %s", in.Variant, variant)
			}
			return nil
		}
	}
	accountKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 64))
	vm := azuretest.NewStorage(azuretest.StorageOptions{Certificate: &leaf, Account: "acmevm", Key: accountKey, CheckBearer: check("imds")})
	t.Cleanup(vm.Close)
	app := azuretest.NewStorage(azuretest.StorageOptions{Certificate: &leaf, Account: "acmeapp", Key: accountKey, CheckBearer: check("app_service")})
	t.Cleanup(app.Close)
	reportPeer(t, "azure managed identity: fake IMDS and App Service endpoint at %s, fake blob storage at %s and %s (internal/azuretest)", imds.URL, vm.URL, app.URL)

	e := startEnv(t, envOptions{
		Policy: strings.ReplaceAll(azureMIPolicy, "IMDS_URL", imds.URL),
		Resolve: map[string]string{
			"acmevm.blob.core.windows.net:443":  vm.Addr,
			"acmeapp.blob.core.windows.net:443": app.Addr,
		},
		Env: []string{"IDENTITY_ENDPOINT=" + imds.AppServiceURL(), "IDENTITY_HEADER=" + identityHeader},
	})
	e.secrets = append(e.secrets, identityHeader)
	t.Cleanup(func() { e.secrets = append(e.secrets, imds.Tokens()...) })

	hc := newGoClient(t, e.proxyURL, gwCACert, false)
	opts := &azblob.ClientOptions{ClientOptions: policy.ClientOptions{Transport: hc, Retry: policy.RetryOptions{MaxRetries: -1}}}
	ctx := context.Background()
	for _, tc := range []struct {
		account string
		store   *azuretest.Storage
	}{{"acmevm", vm}, {"acmeapp", app}} {
		t.Run(tc.account, func(t *testing.T) {
			c, err := azblob.NewClientWithNoCredential("https://"+tc.account+".blob.core.windows.net/", opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreateContainer(ctx, "reports", nil); err != nil {
				t.Fatalf("CreateContainer through the gateway: %v (storage refused %q, identity endpoint refused %q)", err, tc.store.Refused(), imds.Refused())
			}
			data := []byte("managed identity, " + tc.account)
			if _, err := c.UploadBuffer(ctx, "reports", "2026/q4.csv", data, nil); err != nil {
				t.Fatalf("UploadBuffer through the gateway: %v", err)
			}
			resp, err := c.DownloadStream(ctx, "reports", "2026/q4.csv", nil)
			if err != nil {
				t.Fatalf("DownloadStream through the gateway: %v", err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Equal(got, data) {
				t.Errorf("downloaded %q, want %q", got, data)
			}
			if a := tc.store.Auths(); len(a) != 3 || slices.ContainsFunc(a, func(s string) bool { return s != "Bearer" }) {
				t.Errorf("the fake storage saw %q, want three Bearer requests", a)
			}
		})
	}
	if n := imds.Grants(); n != 2 {
		t.Errorf("the identity endpoint issued %d tokens for six calls on two credentials, want 2 (cached)", n)
	}
	if r := imds.Refused(); len(r) != 0 {
		t.Errorf("the identity endpoint refused %q", r)
	}
}
