package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/azuretest"
)

const azureTablePolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  tables:
    hosts: [acmetables.table.core.windows.net]
    allow_private: true
  tables-lite:
    hosts: [acmelite.table.core.windows.net]
    allow_private: true
credentials:
  tables-key:
    provider: static
    file: KEY_FILE
rules:
  - {name: tables, from: local, to: tables, inject: {credential: tables-key, as: azure-sharedkey}}
  - {name: tables-lite, from: local, to: tables-lite, inject: {credential: tables-key, as: azure-sharedkey, service: table, scheme: SharedKeyLite}}
default: deny
`

// TestAzureTable drives the Table service REST API (create table, insert,
// get and query entities, get and set the table ACL with ?comp=acl,
// service properties with ?restype=service&comp=properties, delete)
// through the gateway with a client holding no key, to two fake Table
// accounts that recompute the signature: one signed with Shared Key (the
// Table string to sign chosen by the host), one with Shared Key Lite.
func TestAzureTable(t *testing.T) {
	t.Parallel()
	raw := make([]byte, 64)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(raw)
	leaf, err := originCA.Leaf("acmetables.table.core.windows.net", "acmelite.table.core.windows.net", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	full := azuretest.NewTable(azuretest.TableOptions{Certificate: &leaf, Account: "acmetables", Key: key})
	t.Cleanup(full.Close)
	lite := azuretest.NewTable(azuretest.TableOptions{Certificate: &leaf, Account: "acmelite", Key: key})
	t.Cleanup(lite.Close)
	reportPeer(t, "azure table: fake Table services at %s and %s (internal/azuretest)", full.URL, lite.URL)
	keyFile := filepath.Join(t.TempDir(), "tables.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, envOptions{
		Policy: strings.ReplaceAll(azureTablePolicy, "KEY_FILE", keyFile),
		Resolve: map[string]string{
			"acmetables.table.core.windows.net:443": full.Addr,
			"acmelite.table.core.windows.net:443":   lite.Addr,
		},
	})
	e.secrets = append(e.secrets, key)
	hc := newGoClient(t, e.proxyURL, gwCACert, false)

	for _, tc := range []struct {
		account, scheme string
		fake            *azuretest.Table
	}{{"acmetables", "SharedKey", full}, {"acmelite", "SharedKeyLite", lite}} {
		t.Run(tc.scheme, func(t *testing.T) {
			base := "https://" + tc.account + ".table.core.windows.net"
			do := func(method, url, body string, want int) []byte {
				t.Helper()
				var rd io.Reader
				if body != "" {
					rd = strings.NewReader(body)
				}
				req, err := http.NewRequest(method, url, rd)
				if err != nil {
					t.Fatal(err)
				}
				if body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				req.Header.Set("Accept", "application/json;odata=nometadata")
				req.Header.Set("DataServiceVersion", "3.0")
				req.Header.Set("Authorization", "SharedKey "+tc.account+":Zm9yZ2Vk") // replaced by the gateway
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				got, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != want {
					t.Fatalf("%s %s: %d %s, want %d (the fake refused %q)", method, url, resp.StatusCode, got, want, tc.fake.Refused())
				}
				return got
			}
			do("POST", base+"/Tables", `{"TableName":"orders"}`, 201)
			do("POST", base+"/orders", `{"PartitionKey":"emea","RowKey":"42","Total":7}`, 201)
			if got := do("GET", base+"/orders(PartitionKey='emea',RowKey='42')", "", 200); !bytes.Contains(got, []byte(`"Total":7`)) {
				t.Errorf("entity %s", got)
			}
			if got := do("GET", base+"/orders()?$filter=PartitionKey%20eq%20%27emea%27&$top=5", "", 200); !bytes.Contains(got, []byte(`"RowKey":"42"`)) {
				t.Errorf("query %s", got)
			}
			do("PUT", base+"/orders?comp=acl", `<?xml version="1.0" encoding="utf-8"?><SignedIdentifiers />`, 204)
			do("GET", base+"/orders?comp=acl", "", 200)
			do("GET", base+"/?restype=service&comp=properties", "", 200)
			do("DELETE", base+"/orders(PartitionKey='emea',RowKey='42')", "", 204)
			if n := tc.fake.Accepted(); n != 8 {
				t.Errorf("the fake accepted %d requests, want 8", n)
			}
			for _, s := range tc.fake.Schemes() {
				if s != tc.scheme {
					t.Errorf("signed with %s, want %s", s, tc.scheme)
				}
			}
		})
	}
}
