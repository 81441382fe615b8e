package azuresharedkey

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
	"github.com/credgate/credgate/internal/azuretest"
)

const tableAccount = "acmetables"

// fixedNow is the signing clock of the vectors.
var fixedNow = time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)

// TestTableStringToSignVectors checks the injector's Table signatures
// byte for byte against strings to sign written out by hand from
// "Authorize with Shared Key" (Shared Key for the Table service: VERB,
// Content-MD5, Content-Type, Date, CanonicalizedResource; Shared Key
// Lite: Date, CanonicalizedResource; the resource keeps only comp).
func TestTableStringToSignVectors(t *testing.T) {
	key := newKey(t)
	raw, _ := base64.StdEncoding.DecodeString(key)
	const date = "Fri, 04 Dec 2026 08:00:00 GMT"
	for _, tc := range []struct {
		name, settings, method, url string
		headers                     map[string]string
		scheme, toSign              string
	}{
		{"create table", "", "POST", "https://acmetables.table.core.windows.net/Tables",
			map[string]string{"Content-Type": "application/json", "Accept": "application/json;odata=nometadata", "X-Ms-Meta-Ignored": "x"},
			"SharedKey", "POST\n\napplication/json\n" + date + "\n/acmetables/Tables"},
		{"query entities: $filter and $top are not signed", "", "GET", "https://acmetables.table.core.windows.net/orders()?$filter=PartitionKey%20eq%20%27emea%27&$top=10",
			nil, "SharedKey", "GET\n\n\n" + date + "\n/acmetables/orders()"},
		{"entity path as sent", "", "GET", "https://acmetables.table.core.windows.net/orders(PartitionKey='emea',RowKey='2026%2F42')",
			nil, "SharedKey", "GET\n\n\n" + date + "\n/acmetables/orders(PartitionKey='emea',RowKey='2026%2F42')"},
		{"get table ACL: comp kept", "", "GET", "https://acmetables.table.core.windows.net/orders?comp=acl&timeout=30",
			nil, "SharedKey", "GET\n\n\n" + date + "\n/acmetables/orders?comp=acl"},
		{"service properties: restype dropped, comp kept", "", "GET", "https://acmetables.table.core.windows.net/?restype=service&comp=properties",
			nil, "SharedKey", "GET\n\n\n" + date + "\n/acmetables/?comp=properties"},
		{"Content-MD5 signed", "", "PUT", "https://acmetables.table.core.windows.net/orders?comp=acl",
			map[string]string{"Content-Md5": "XUFAKrxLKna5cZ2REBfFkg==", "Content-Type": "application/xml"},
			"SharedKey", "PUT\nXUFAKrxLKna5cZ2REBfFkg==\napplication/xml\n" + date + "\n/acmetables/orders?comp=acl"},
		{"Shared Key Lite", "service: table\nscheme: SharedKeyLite", "GET", "https://acmetables.table.core.windows.net/orders?comp=acl",
			map[string]string{"Content-Type": "application/json"}, "SharedKeyLite", date + "\n/acmetables/orders?comp=acl"},
		{"service table on another host (an emulator)", "service: table\naccount: acmetables", "DELETE", "https://127.0.0.1:10002/acmetables/orders(PartitionKey='a',RowKey='b')",
			nil, "SharedKey", "DELETE\n\n\n" + date + "\n/acmetables/acmetables/orders(PartitionKey='a',RowKey='b')"},
		{"sovereign cloud", "", "GET", "https://acmetables.table.core.chinacloudapi.cn/Tables",
			nil, "SharedKey", "GET\n\n\n" + date + "\n/acmetables/Tables"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.url, nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			r.Header.Set("Date", "Mon, 01 Jan 2001 00:00:00 GMT") // x-ms-date is signed, not Date
			if err := injectors.Apply(load(t, tc.settings, func() time.Time { return fixedNow }), r, injectortest.Cred(FieldAccountKey, key)); err != nil {
				t.Fatal(err)
			}
			mac := hmac.New(sha256.New, raw)
			mac.Write([]byte(tc.toSign))
			want := tc.scheme + " " + tableAccount + ":" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
			if got := r.Header.Get("Authorization"); got != want {
				t.Errorf("Authorization %q, want %q over %q", got, want, tc.toSign)
			}
			if d := r.Header.Get("x-ms-date"); d != date {
				t.Errorf("x-ms-date %q", d)
			}
			if v := r.Header.Get("x-ms-version"); v != DefaultTableVersion {
				t.Errorf("x-ms-version %q, want %s", v, DefaultTableVersion)
			}
		})
	}
}

// TestTableServiceSelection: with service auto the host decides (table
// hosts get the Table signing, other storage hosts Blob's); service
// overrides the host either way.
func TestTableServiceSelection(t *testing.T) {
	key := newKey(t)
	for _, tc := range []struct {
		settings, url string
		table         bool
	}{
		{"", "https://acme1.table.core.windows.net/Tables", true},
		{"", "https://acme1.table.core.usgovcloudapi.net/Tables", true},
		{"", "https://acme1.blob.core.windows.net/c?comp=list", false},
		{"", "https://acme1.queue.core.windows.net/q", false},
		{"account: acme1", "https://table.example.com/Tables", false},
		{"service: table\naccount: acme1", "https://tables.example.com/Tables", true},
		{"service: blob", "https://acme1.table.core.windows.net/Tables", false},
		{"service: auto", "https://acme1.TABLE.core.windows.net./Tables", true},
	} {
		r := httptest.NewRequest("GET", tc.url, nil)
		if err := injectors.Apply(load(t, tc.settings, nil), r, injectortest.Cred(FieldAccountKey, key)); err != nil {
			t.Fatalf("%s %s: %v", tc.settings, tc.url, err)
		}
		// The Blob signing canonicalizes headers: x-ms-date and
		// x-ms-version are in its string to sign; the Table one's
		// resource is short. Tell them apart by verifying with each.
		got := r.Header.Get("Authorization")
		tableSig := sign(key, azuretest.TableStringToSign(r, "acme1"))
		blobSig := sign(key, azuretest.StringToSign(r, "acme1"))
		switch {
		case tc.table && got != "SharedKey acme1:"+tableSig:
			t.Errorf("%q %s: %q is not the Table signature", tc.settings, tc.url, got)
		case !tc.table && got != "SharedKey acme1:"+blobSig:
			t.Errorf("%q %s: %q is not the Blob signature", tc.settings, tc.url, got)
		}
	}
}

func sign(key, s string) string {
	raw, _ := base64.StdEncoding.DecodeString(key)
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// TestTableFakeAccepts: Table requests signed by the injector (Shared Key
// and Shared Key Lite) are accepted by the fake Table service, which
// recomputes the signature with its own implementation; a client's
// forged Authorization and stale x-ms-date are replaced.
func TestTableFakeAccepts(t *testing.T) {
	key := newKey(t)
	s := azuretest.NewTable(azuretest.TableOptions{Account: tableAccount, Key: key})
	t.Cleanup(s.Close)
	hc := &http.Client{Transport: redirect{s.Addr, s.Client().Transport}}
	cred := injectortest.Cred(FieldAccountKey, key)
	base := "https://" + tableAccount + ".table.core.windows.net"
	for _, settings := range []string{"", "service: table\nscheme: SharedKeyLite"} {
		inj := load(t, settings, nil)
		do := func(method, url, body string) int {
			t.Helper()
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			r := httptest.NewRequest(method, url, rd)
			r.RequestURI = ""
			if body != "" {
				r.Header.Set("Content-Type", "application/json")
			}
			r.Header.Set("Accept", "application/json;odata=minimalmetadata")
			r.Header.Set("Authorization", "SharedKey "+tableAccount+":Zm9yZ2Vk")
			r.Header.Set("x-ms-date", "Mon, 01 Jan 2001 00:00:00 GMT")
			if err := injectors.Apply(inj, r, cred); err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		table := "orders"
		if settings != "" {
			table = "orderslite"
		}
		for _, st := range []struct {
			method, url, body string
			want              int
		}{
			{"POST", base + "/Tables", `{"TableName":"` + table + `"}`, 201},
			{"POST", base + "/" + table, `{"PartitionKey":"emea","RowKey":"42","Total":7}`, 201},
			{"GET", base + "/" + table + "(PartitionKey='emea',RowKey='42')", "", 200},
			{"GET", base + "/" + table + "()?$filter=PartitionKey%20eq%20%27emea%27&$top=5", "", 200},
			{"GET", base + "/" + table + "?comp=acl", "", 200},
			{"PUT", base + "/" + table + "?comp=acl&timeout=20", `<?xml version="1.0" encoding="utf-8"?><SignedIdentifiers />`, 204},
			{"GET", base + "/?restype=service&comp=properties", "", 200},
			{"DELETE", base + "/" + table + "(PartitionKey='emea',RowKey='42')", "", 204},
		} {
			if got := do(st.method, st.url, st.body); got != st.want {
				t.Errorf("%q: %s %s: %d, want %d (refused %q)", settings, st.method, st.url, got, st.want, s.Refused())
			}
		}
	}
	if r := s.Refused(); len(r) != 0 {
		t.Errorf("the fake refused %q", r)
	}
	if sc := s.Schemes(); len(sc) != 16 || sc[0] != "SharedKey" || sc[15] != "SharedKeyLite" {
		t.Errorf("schemes %q, want 8 SharedKey then 8 SharedKeyLite", sc)
	}
}

// TestTableSettings: service and scheme errors name the fix.
func TestTableSettings(t *testing.T) {
	for _, tc := range []struct{ settings, want string }{
		{"scheme: SharedKeyLite", "set service: table"},
		{"service: blob\nscheme: SharedKeyLite", "Table service only"},
		{"service: tables", "not auto, table, blob"},
		{"scheme: sharedkey", "not SharedKey or SharedKeyLite"},
	} {
		if _, err := injectortest.Load(t, Name, tc.settings); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.settings, err, tc.want)
		}
	}
	for _, ok := range []string{"service: table", "service: table\nscheme: SharedKeyLite", "service: queue", "scheme: SharedKey"} {
		if _, err := injectortest.Load(t, Name, ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// TestTableRefusesSAS: a Table request carrying its own SAS is refused,
// as for Blob.
func TestTableRefusesSAS(t *testing.T) {
	r := httptest.NewRequest("GET", "https://acmetables.table.core.windows.net/orders()?sv=2019-02-02&tn=orders&sig=abc%3D", nil)
	if err := load(t, "", nil).Inject(r, injectortest.Cred(FieldAccountKey, newKey(t))); err == nil || !strings.Contains(err.Error(), "SAS") {
		t.Errorf("SAS: %v", err)
	}
}
