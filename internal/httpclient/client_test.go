package httpclient_test

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/httpclient"
)

// TestNewClient checks the token-endpoint client: it trusts the ca_cert
// file, never follows a redirect (the 3xx reaches the caller), ignores
// the proxy environment TestMain sets, and names a bad ca_cert and its fix.
func TestNewClient(t *testing.T) {
	var redirected bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			redirected = true
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := httpclient.NewClient(httpclient.Options{Timeout: 5 * time.Second, CACertFile: ca})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if c.Timeout != 5*time.Second {
		t.Errorf("Timeout = %v, want 5s", c.Timeout)
	}
	before := proxyConns.Load()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/token", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || redirected {
		t.Errorf("status %d (redirect followed: %v), want 302 returned to the caller", resp.StatusCode, redirected)
	}
	if n := proxyConns.Load() - before; n != 0 {
		t.Errorf("%d connections to HTTPS_PROXY, want 0", n)
	}

	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{filepath.Join(dir, "missing.pem"), empty} {
		_, err := httpclient.NewClient(httpclient.Options{CACertFile: file})
		if err == nil || !strings.HasPrefix(err.Error(), "ca_cert: ") || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "set ca_cert to") {
			t.Errorf("NewClient(%s) error = %v, want one starting ca_cert: that names the file and the fix", file, err)
		}
	}
}
