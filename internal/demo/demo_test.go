package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMask(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"Bearer demo0123456789abcdef0123456789ab", "Bearer demo…(32 chars)"},
		{"sk_live_0123456789abcdef", "sk_l…(24 chars)"},
		{"Bearer short", "Bearer …(5 chars)"},
		{"Basic ", "Basic (empty)"},
		{"", "(empty)"},
	}
	for _, tt := range tests {
		if got := Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSetupAndOrigin(t *testing.T) {
	ctx := context.Background()
	env, err := Setup(ctx, Options{Listen: "127.0.0.1:0", TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = env.Close(ctx)
		}
	})

	for _, f := range []string{env.ConfigPath, env.PolicyPath, env.CACert, env.CredentialFile} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("Setup did not write %s: %v", f, err)
		}
	}
	st, err := os.Stat(env.CredentialFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %v, want 0600", st.Mode().Perm())
	}
	tokenBytes, err := os.ReadFile(env.CredentialFile)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenBytes))
	if len(token) != 32 || !strings.HasPrefix(token, "demo") {
		t.Errorf("token has length %d, want 32 starting with demo", len(token))
	}
	cfg, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `"api.saas.test:443": "`+env.Origin.Addr().String()+`"`) {
		t.Errorf("config does not resolve api.saas.test to the origin:\n%s", cfg)
	}

	// Talk to the origin directly, trusting its CA, as the gateway does.
	caPEM, err := os.ReadFile(strings.Replace(env.CACert, "ca.pem", "upstream-ca.pem", 1))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	addr := env.Origin.Addr().String()
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: Host},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	tests := []struct {
		name   string
		auth   string
		want   string
		wantOK bool
	}{
		{name: "injected", auth: "Bearer " + token, want: "Bearer demo…(32 chars)", wantOK: true},
		{name: "wrong", auth: "Bearer demo-but-not-the-right-token", want: "Bearer demo…(28 chars)", wantOK: false},
		{name: "none", auth: "", want: "", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+Host+"/v1/hello", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(body), token) {
				t.Fatalf("echo reveals the credential: %s", body)
			}
			var got Echo
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			want := Echo{Method: "GET", Host: Host, Path: "/v1/hello", CredentialInjected: tt.wantOK}
			if diff := cmp.Diff(want, got, cmpIgnoreHeaders); diff != "" {
				t.Errorf("echo (-want +got):\n%s", diff)
			}
			if got.Headers["Authorization"] != tt.want {
				t.Errorf("Authorization echoed as %q, want %q", got.Headers["Authorization"], tt.want)
			}
			if last := env.Origin.Last(); last == nil || last.CredentialInjected != tt.wantOK {
				t.Errorf("Origin.Last() = %+v, want CredentialInjected %v", last, tt.wantOK)
			}
		})
	}

	dir := env.Dir
	closed = true
	if err := env.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Close left %s behind (stat err %v)", dir, err)
	}
}

var cmpIgnoreHeaders = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Headers" }, cmp.Ignore())
