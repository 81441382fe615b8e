package awssts

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

// TestSTSAnswerQuirks is the class of "STS answers 200 with a document
// whose credentials are incomplete": an AssumeRole or
// AssumeRoleWithWebIdentity result always carries an access key id, a
// secret key, a session token and an expiration; temporary keys without
// their session token are refused by every AWS service, and ones without
// an expiration would be kept as if they never expired. Each missing or
// empty part fails the fetch naming it (502; nothing is injected), where
// before a key without session token was injected and sent upstream, and
// one without expiration cached for cache.default_ttl. A complete answer
// (the control) is taken.
func TestSTSAnswerQuirks(t *testing.T) {
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	parts := map[string]string{
		"AccessKeyId":     "<AccessKeyId>ASIAQUIRKS000000001</AccessKeyId>",
		"SecretAccessKey": "<SecretAccessKey>quirks-secret-key-value</SecretAccessKey>",
		"SessionToken":    "<SessionToken>quirks-session-token-value</SessionToken>",
		"Expiration":      "<Expiration>" + exp + "</Expiration>",
	}
	answer := func(omit, empty string) string {
		var b strings.Builder
		for _, k := range []string{"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"} {
			switch k {
			case omit:
			case empty:
				b.WriteString("<" + k + "></" + k + ">")
			default:
				b.WriteString(parts[k])
			}
		}
		return b.String()
	}
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		action := r.Form.Get("Action")
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<%[1]sResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><%[1]sResult><Credentials>%[2]s</Credentials></%[1]sResult><ResponseMetadata><RequestId>q</RequestId></ResponseMetadata></%[1]sResponse>`, action, body)
	}))
	t.Cleanup(srv.Close)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("quirks-web-identity-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	flows := map[string]*Provider{
		"web-identity": load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, retries: 0, web_identity_token_file: %s}", srv.URL, tok), nil),
		"assume-role":  load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, retries: 0, source_credential: src}", srv.URL), map[string]providers.Provider{"src": staticSource{cred: sourceCred()}}),
	}
	for flow, p := range flows {
		body = answer("", "")
		if _, err := p.Fetch(context.Background(), providers.Request{Workload: billing()}); err != nil {
			t.Fatalf("%s: a complete answer: %v", flow, err)
		}
		for _, part := range []string{"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"} {
			for _, how := range []string{"missing", "empty"} {
				t.Run(flow+"/"+part+"-"+how, func(t *testing.T) {
					if how == "missing" {
						body = answer(part, "")
					} else {
						body = answer("", part)
					}
					cred, err := p.Fetch(context.Background(), providers.Request{Workload: billing()})
					if err == nil {
						t.Fatalf("an answer with %s %s was taken (fields %d, expiry %v)", part, how, len(cred.Fields), cred.Expiry)
					}
					if strings.Contains(err.Error(), "quirks-") {
						t.Errorf("the error quotes a value: %v", err)
					}
				})
			}
		}
	}
}

// TestCAFileTrusted: the client the provider builds around the SDK's
// transport (to refuse redirects and bound answers) still trusts
// ca_file, the CA bundle the SDK put on that transport.
func TestCAFileTrusted(t *testing.T) {
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIATLS</AccessKeyId><SecretAccessKey>tls-secret</SecretAccessKey><SessionToken>tls-token</SessionToken><Expiration>%s</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>`, exp)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("tls-web-identity-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, withCA := range []bool{true, false} {
		settings := fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, retries: 0, web_identity_token_file: %s", srv.URL, tok)
		if withCA {
			settings += ", ca_file: " + ca
		}
		_, err := load(t, settings+"}", nil).Fetch(context.Background(), providers.Request{Workload: billing()})
		if withCA && err != nil {
			t.Errorf("with ca_file: %v", err)
		}
		if !withCA && err == nil {
			t.Errorf("without ca_file the test server's certificate was trusted")
		}
	}
}
