package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/spiffetest"
	"github.com/credgate/credgate/internal/testpki"
)

func mustAuthority(t *testing.T, name string) *testpki.Authority {
	t.Helper()
	a, err := testpki.NewAuthority(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustSVID(t *testing.T, a *testpki.Authority, id string) tls.Certificate {
	t.Helper()
	c, err := a.SVID(id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func clientSVID(t *testing.T, a *testpki.Authority, id string) []*x509.Certificate {
	t.Helper()
	return []*x509.Certificate{mustSVID(t, a, id).Leaf}
}

// TestWorkloadAPISource: the gateway's SVID and the bundles come from the
// Workload API, verify client SVIDs alongside a PEM bundle, and rotate
// without a restart: a rotated-out CA stops verifying at once.
func TestWorkloadAPISource(t *testing.T) {
	api := spiffetest.Start(t)
	prod := mustAuthority(t, "prod SPIRE CA")
	partner := mustAuthority(t, "partner SPIRE CA")
	corp := mustAuthority(t, "corporate PKI")
	gw1 := mustSVID(t, prod, "spiffe://prod.example.org/credgate")
	if err := api.Set([]tls.Certificate{gw1}, map[string][]*x509.Certificate{
		"prod.example.org": {prod.Cert}, "partner.example.org": {partner.Cert},
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r, err := New(context.Background(), Config{MTLS: MTLSConfig{
		Bundles:     []TrustBundle{{File: writeFile(t, dir, "corp.pem", corp.CertPEM)}},
		WorkloadAPI: &WorkloadAPIConfig{Socket: api.Addr, StartTimeout: 10 * time.Second},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	src := r.WorkloadAPI()
	if src == nil {
		t.Fatal("WorkloadAPI() is nil")
	}
	served := func() *x509.Certificate {
		c, err := src.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	if !served().Equal(gw1.Leaf) {
		t.Fatal("the listener would not serve the SVID of the Workload API")
	}
	st := src.Status()
	if st.ID != "spiffe://prod.example.org/credgate" || !st.Held || st.Rotations != 0 || !st.Expires.Equal(gw1.Leaf.NotAfter) {
		t.Errorf("Status = %+v", st)
	}

	verify := func(certs []*x509.Certificate) (string, error) {
		w, err := r.Resolve(context.Background(), Evidence{PeerCertificates: certs}, nil)
		if err != nil {
			return "", err
		}
		return w.Factor(KindMTLS).Subject, nil
	}
	for _, tc := range []struct {
		name  string
		certs []*x509.Certificate
		want  string // "": refused
	}{
		{"SVID of the agent's trust domain", clientSVID(t, prod, "spiffe://prod.example.org/ns/billing/sa/api"), "spiffe://prod.example.org/ns/billing/sa/api"},
		{"SVID of a federated trust domain", clientSVID(t, partner, "spiffe://partner.example.org/app"), "spiffe://partner.example.org/app"},
		{"certificate of the PEM bundle", []*x509.Certificate{mustCorpLeaf(t, corp)}, "CN=batch"},
		{"SVID of one domain signed by another's CA", clientSVID(t, partner, "spiffe://prod.example.org/x"), ""},
		{"SVID of an unknown CA", clientSVID(t, mustAuthority(t, "rogue"), "spiffe://prod.example.org/x"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := verify(tc.certs)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("verified as %s, want refused", got)
			case tc.want == "" && !errors.Is(err, ErrInvalid):
				t.Errorf("error %v, want ErrInvalid", err)
			case tc.want != "" && (err != nil || got != tc.want):
				t.Errorf("got %q, %v; want %s", got, err, tc.want)
			}
		})
	}

	// Rotation: a new SVID, and the prod CA replaced by a new one.
	billing := clientSVID(t, prod, "spiffe://prod.example.org/ns/billing/sa/api")
	if _, err := verify(billing); err != nil {
		t.Fatal(err)
	}
	prod2 := mustAuthority(t, "prod SPIRE CA 2")
	gw2 := mustSVID(t, prod2, "spiffe://prod.example.org/credgate")
	if err := api.Set([]tls.Certificate{gw2}, map[string][]*x509.Certificate{"prod.example.org": {prod2.Cert}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rotated SVID", func() bool { return served().Equal(gw2.Leaf) })
	if st := src.Status(); st.Rotations != 1 || st.Updates != 2 {
		t.Errorf("after rotation: Status = %+v, want 1 rotation of 2 updates", st)
	}
	if _, err := verify(billing); !errors.Is(err, ErrInvalid) {
		t.Errorf("SVID of the rotated-out CA (verified and cached before): %v, want ErrInvalid", err)
	}
	if _, err := verify(clientSVID(t, partner, "spiffe://partner.example.org/app")); !errors.Is(err, ErrInvalid) {
		t.Errorf("SVID of a federation that ended: %v, want ErrInvalid", err)
	}
	if got, err := verify(clientSVID(t, prod2, "spiffe://prod.example.org/ns/billing/sa/api")); err != nil || got == "" {
		t.Errorf("SVID of the new CA: %q %v", got, err)
	}
	if r.ClientCAs() == nil {
		t.Error("ClientCAs is nil with Workload API bundles")
	}
}

func mustCorpLeaf(t *testing.T, a *testpki.Authority) *x509.Certificate {
	t.Helper()
	c, err := a.ClientLeaf("batch")
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// TestWorkloadAPIPick: spiffe_id picks the gateway's SVID among several;
// an update without it is rejected and the previous SVID kept.
func TestWorkloadAPIPick(t *testing.T) {
	api := spiffetest.Start(t)
	ca := mustAuthority(t, "CA")
	other, mine := mustSVID(t, ca, "spiffe://example.org/other"), mustSVID(t, ca, "spiffe://example.org/credgate")
	bundles := map[string][]*x509.Certificate{"example.org": {ca.Cert}}
	if err := api.Set([]tls.Certificate{other, mine}, bundles); err != nil {
		t.Fatal(err)
	}
	r, err := New(context.Background(), Config{MTLS: MTLSConfig{WorkloadAPI: &WorkloadAPIConfig{
		Socket: api.Addr, SPIFFEID: "spiffe://example.org/credgate", StartTimeout: 10 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := r.WorkloadAPI()
	if c, _ := src.GetCertificate(nil); !c.Leaf.Equal(mine.Leaf) {
		t.Fatalf("served %v, want the SVID named by spiffe_id", c.Leaf.URIs)
	}
	if err := api.Set([]tls.Certificate{other}, bundles); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rejected update", func() bool { return src.Status().Errors > 0 })
	if c, _ := src.GetCertificate(nil); !c.Leaf.Equal(mine.Leaf) {
		t.Error("an update without the chosen SVID replaced it")
	}
}

// TestWorkloadAPIStart: New waits at most start_timeout and says what is
// wrong; the agent answering later makes no difference then.
func TestWorkloadAPIStart(t *testing.T) {
	t.Run("socket missing", func(t *testing.T) {
		sock := "unix://" + filepath.Join(t.TempDir(), "none.sock")
		start := time.Now()
		_, err := New(context.Background(), Config{MTLS: MTLSConfig{WorkloadAPI: &WorkloadAPIConfig{Socket: sock, StartTimeout: 1500 * time.Millisecond}}})
		if err == nil {
			t.Fatal("New succeeded without an agent")
		}
		for _, want := range []string{"identity.mtls.workload_api", "cannot reach the agent", sock, "start_timeout 1.5s"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("New took %s with start_timeout 1.5s", d)
		}
	})
	t.Run("no registration entry", func(t *testing.T) {
		api := spiffetest.Start(t)
		_, err := New(context.Background(), Config{MTLS: MTLSConfig{WorkloadAPI: &WorkloadAPIConfig{Socket: api.Addr, StartTimeout: 1500 * time.Millisecond}}})
		if err == nil || !strings.Contains(err.Error(), "issued the gateway no identity") || !strings.Contains(err.Error(), "registration entry") {
			t.Errorf("error %v, want advice about the registration entry", err)
		}
	})
	t.Run("no socket configured", func(t *testing.T) {
		t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
		_, err := New(context.Background(), Config{MTLS: MTLSConfig{WorkloadAPI: &WorkloadAPIConfig{}}})
		if err == nil || !strings.Contains(err.Error(), "SPIFFE_ENDPOINT_SOCKET") {
			t.Errorf("error %v, want it to name SPIFFE_ENDPOINT_SOCKET", err)
		}
	})
	t.Run("socket from the environment", func(t *testing.T) {
		api := spiffetest.Start(t)
		ca := mustAuthority(t, "CA")
		if err := api.Set([]tls.Certificate{mustSVID(t, ca, "spiffe://example.org/credgate")}, map[string][]*x509.Certificate{"example.org": {ca.Cert}}); err != nil {
			t.Fatal(err)
		}
		t.Setenv("SPIFFE_ENDPOINT_SOCKET", api.Addr)
		r, err := New(context.Background(), Config{MTLS: MTLSConfig{WorkloadAPI: &WorkloadAPIConfig{}}})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if r.WorkloadAPI().Socket() != api.Addr {
			t.Errorf("socket %q, want %q", r.WorkloadAPI().Socket(), api.Addr)
		}
	})
}

func TestWorkloadAPIConfigValidate(t *testing.T) {
	err := Config{MTLS: MTLSConfig{WorkloadAPI: &WorkloadAPIConfig{Socket: "/run/spire/agent.sock", SPIFFEID: "https://x", StartTimeout: -time.Second}}}.Validate()
	for _, want := range []string{"identity.mtls.workload_api.socket", "unix:///run/spire/agent.sock", "identity.mtls.workload_api.spiffe_id", "identity.mtls.workload_api.start_timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want it to mention %s", err, want)
		}
	}
	if err := (Config{MTLS: MTLSConfig{WorkloadAPI: &WorkloadAPIConfig{Socket: "unix:///run/spire/agent.sock"}}}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestWorkloadAPIConcurrentUpdates: updates arriving while connections
// are verified and handshakes served (run with -race).
func TestWorkloadAPIConcurrentUpdates(t *testing.T) {
	api := spiffetest.Start(t)
	ca := mustAuthority(t, "CA")
	bundles := map[string][]*x509.Certificate{"example.org": {ca.Cert}}
	if err := api.Set([]tls.Certificate{mustSVID(t, ca, "spiffe://example.org/credgate")}, bundles); err != nil {
		t.Fatal(err)
	}
	r, err := New(context.Background(), Config{MTLS: MTLSConfig{WorkloadAPI: &WorkloadAPIConfig{Socket: api.Addr, StartTimeout: 10 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	client := clientSVID(t, ca, "spiffe://example.org/app")
	done := make(chan struct{})
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			for {
				select {
				case <-done:
					errc <- nil
					return
				default:
				}
				if _, err := r.Resolve(context.Background(), Evidence{PeerCertificates: client}, nil); err != nil {
					errc <- err
					return
				}
				if _, err := r.WorkloadAPI().GetCertificate(nil); err != nil {
					errc <- err
					return
				}
				_ = r.ClientCAs()
			}
		}()
	}
	// The fake API coalesces updates that come faster than the stream
	// sends them, like an agent would: wait for the last one.
	var last tls.Certificate
	for range 20 {
		last = mustSVID(t, ca, "spiffe://example.org/credgate")
		if err := api.Set([]tls.Certificate{last}, bundles); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the last update", func() bool {
		c, err := r.WorkloadAPI().GetCertificate(nil)
		return err == nil && c.Leaf.Equal(last.Leaf)
	})
	close(done)
	for range 2 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}
