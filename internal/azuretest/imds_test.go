package azuretest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestIMDSRefuses is the fake's negative table: each request the real
// IMDS or App Service endpoint refuses is refused, with the status the
// real one answers, and a well-formed request is answered.
func TestIMDSRefuses(t *testing.T) {
	const (
		clientID = "7b1e4c3a-9d2f-4e5a-8b6c-1d2e3f4a5b6c"
		objectID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
		resID    = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"
		header   = "identity-header"
		storage  = "https://storage.azure.com"
	)
	m := NewIMDS(IMDSOptions{SystemAssigned: true, AppServiceHeader: header})
	defer m.Close()
	m.AddIdentity(ManagedIdentity{ClientID: clientID, ObjectID: objectID, ResourceID: resID})
	imds := func(q string) string { return m.URL + IMDSTokenPath + "?" + q }
	app := func(q string) string { return m.AppServiceURL() + "?" + q }
	ok := "api-version=2018-02-01&resource=" + url.QueryEscape(storage)
	okApp := "api-version=2019-08-01&resource=" + url.QueryEscape(storage)
	md := map[string]string{"Metadata": "true"}
	xh := map[string]string{"X-IDENTITY-HEADER": header}
	for _, tc := range []struct {
		name, method, url string
		headers           map[string]string
		want              int
	}{
		{"imds system-assigned", "GET", imds(ok), md, 200},
		{"imds client_id", "GET", imds(ok + "&client_id=" + clientID), md, 200},
		{"imds object_id", "GET", imds(ok + "&object_id=" + objectID), md, 200},
		{"imds msi_res_id", "GET", imds(ok + "&msi_res_id=" + url.QueryEscape(resID)), md, 200},
		{"imds without Metadata", "GET", imds(ok), nil, 400},
		{"imds Metadata false", "GET", imds(ok), map[string]string{"Metadata": "false"}, 400},
		{"imds through a proxy (X-Forwarded-For)", "GET", imds(ok), map[string]string{"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}, 400},
		{"imds POST", "POST", imds(ok), md, 405},
		{"imds without api-version", "GET", imds("resource=" + storage), md, 400},
		{"imds unknown api-version", "GET", imds("api-version=2017-01-01&resource=" + storage), md, 400},
		{"imds without resource", "GET", imds("api-version=2018-02-01"), md, 400},
		{"imds two resources", "GET", imds(ok + "&resource=https://vault.azure.net"), md, 400},
		{"imds two ids", "GET", imds(ok + "&client_id=" + clientID + "&object_id=" + objectID), md, 400},
		{"imds identity not assigned", "GET", imds(ok + "&client_id=11111111-2222-4333-8444-555555555555"), md, 400},
		{"app service", "GET", app(okApp), xh, 200},
		{"app service principal_id", "GET", app(okApp + "&principal_id=" + objectID), xh, 200},
		{"app service mi_res_id", "GET", app(okApp + "&mi_res_id=" + url.QueryEscape(resID)), xh, 200},
		{"app service without header", "GET", app(okApp), nil, 401},
		{"app service wrong header", "GET", app(okApp), map[string]string{"X-IDENTITY-HEADER": "other"}, 401},
		{"app service IMDS's Metadata only", "GET", app(okApp), md, 401},
		{"app service IMDS's api-version", "GET", app(ok), xh, 400},
		{"app service IMDS's msi_res_id name", "GET", app(okApp + "&msi_res_id=" + url.QueryEscape(resID)), xh, 400},
		{"app service two ids", "GET", app(okApp + "&client_id=" + clientID + "&principal_id=" + objectID), xh, 400},
		{"app service without resource", "GET", app("api-version=2019-08-01"), xh, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, nil)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d (%v), want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want != 200 {
				if body["error"] == "" || body["error_description"] == "" {
					t.Errorf("refusal without error and error_description: %v", body)
				}
				return
			}
			tok, _ := body["access_token"].(string)
			if err := m.CheckToken(tok, storage); err != nil {
				t.Errorf("issued token: %v", err)
			}
			// expires_on is a string of seconds in both variants;
			// expires_in only from IMDS.
			if _, ok := body["expires_on"].(string); !ok {
				t.Errorf("expires_on %v is not a string", body["expires_on"])
			}
			if _, ok := body["expires_in"].(string); ok == strings.Contains(tc.url, AppServiceTokenPath) {
				t.Errorf("expires_in %v in the %s answer", body["expires_in"], tc.name)
			}
		})
	}
	if err := m.CheckToken("eyMI.forged", storage); err == nil {
		t.Error("CheckToken accepted a token the fake never issued")
	}
}
