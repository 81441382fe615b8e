package httpclient_test

import (
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/httpclient"
)

func TestCheckURL(t *testing.T) {
	for _, c := range []struct {
		url  string
		want string // "" = accepted; else a substring of the error
	}{
		{"https://auth.example.com/token", ""},
		{"https://10.0.0.1:8200", ""},
		{"http://127.0.0.1:8200", ""},
		{"http://127.8.9.10/x", ""},
		{"http://[::1]:8200/v1", ""},
		{"http://localhost:9000", ""},
		{"http://LOCALHOST.:9000", ""},
		{"http://vault.internal:8200", "plain http to a host that is not loopback; use https"},
		{"http://10.0.0.1/token", "plain http to a host that is not loopback"},
		{"http://[::ffff:10.0.0.1]/", "not loopback"},
		{"http://localhost.example.com/", "not loopback"},
		{"http://127.0.0.1.nip.io/", "not loopback"},
		{"http://[fe80::1%25lo]/", "not loopback"},
		{"ftp://x/token", "not an absolute http(s) URL"},
		{"vault:8200", "not an absolute http(s) URL"},
		{"/token", "not an absolute http(s) URL"},
		{"https://user:pw@x/token", "must not carry credentials"},
	} {
		err := httpclient.CheckURL(c.url)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckURL(%q) = %v, want nil", c.url, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CheckURL(%q) = %v, want an error containing %q", c.url, err, c.want)
		case err != nil && strings.Contains(err.Error(), "pw"):
			t.Errorf("CheckURL(%q) = %v: the error shows the password", c.url, err)
		}
	}
}

func TestCheckURLHidesSecrets(t *testing.T) {
	for _, raw := range []string{
		"ftp://user:s3cr3t@x/token",
		"http://user:s3cr3t@vault.internal/",
		"http://vault.internal/?token=s3cr3t",
		"http://vault.internal/#s3cr3t",
		"::not a url s3cr3t@x",
	} {
		err := httpclient.CheckURL(raw)
		if err == nil {
			t.Fatalf("CheckURL(%q) accepted", raw)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("CheckURL(%q) = %v: shows the secret", raw, err)
		}
	}
}

func TestNewTransportHasNoProxy(t *testing.T) {
	tr := httpclient.NewTransport()
	if tr.Proxy != nil {
		t.Fatal("NewTransport sets Proxy")
	}
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion == 0 {
		t.Fatal("NewTransport has no TLS minimum version")
	}
}
