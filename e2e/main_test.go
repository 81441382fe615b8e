package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/testpki"
)

// Names the origin answers to. None of them resolves in DNS: the gateway's
// resolve map sends them to the local origin.
const (
	apiHost     = "api.origin.test"     // has an inject rule
	otherHost   = "other.origin.test"   // has no rule at all
	tunnelHost  = "tunnel.origin.test"  // has a tunnel rule
	privateHost = "private.origin.test" // inject rule, resolves to 127.0.0.1, no allow_private
	plainHost   = "plain.origin.test"   // plain-HTTP inject rule with plaintext: true
	// unrelatedHost is in no policy and not in the origin's certificate;
	// it is used as a foreign SNI.
	unrelatedHost = "unrelated.example.test"
)

// Set once by TestMain, read-only afterwards.
var (
	repoRoot string // module root
	binPath  string // the credgate binary under test
	// gwCACert and gwCAKey are the interception CA written by `credgate ca init`.
	gwCACert, gwCAKey string
	gwCAPool          *x509.CertPool
	// originCACert is the PEM file of the CA that signed the origin's leaf.
	originCACert string
	originCAPool *x509.CertPool
	originLeaf   tls.Certificate
	// originCA issues further leaves for real peers (MinIO).
	originCA *testpki.Authority
)

func TestMain(m *testing.M) {
	if scenario := os.Getenv(grpcClientEnv); scenario != "" {
		// This binary started again as a gRPC client (grpc_test.go).
		os.Exit(grpcClientMain(scenario))
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "credgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setup(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	return m.Run()
}

func setup(dir string) error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("getwd: %w", err)
	}
	repoRoot = filepath.Dir(wd)

	for _, tool := range []string{"curl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (run scripts/test-tools.sh or `make test`): %w", tool, err)
		}
	}

	binPath = os.Getenv("CREDGATE_E2E_BINARY")
	if binPath == "" {
		binPath = filepath.Join(dir, "credgate")
		start := time.Now()
		// No -race: the binary is the system under test, not the test, and
		// an uninstrumented build is several times faster to make and run.
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/credgate")
		cmd.Dir = repoRoot
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/credgate: %w\n%s", err, out.Bytes())
		}
		fmt.Fprintf(os.Stderr, "e2e: built credgate in %s\n", time.Since(start).Round(time.Millisecond))
	}

	caDir := filepath.Join(dir, "gateway-ca")
	out, err := exec.Command(binPath, "ca", "init", "--out", caDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("credgate ca init: %w\n%s", err, out)
	}
	gwCACert, gwCAKey = filepath.Join(caDir, "ca.pem"), filepath.Join(caDir, "ca-key.pem")
	if gwCAPool, err = loadPool(gwCACert); err != nil {
		return fmt.Errorf("credgate ca init output: %w", err)
	}
	if st, err := os.Stat(gwCAKey); err != nil {
		return fmt.Errorf("credgate ca init output: %w", err)
	} else if st.Mode().Perm() != 0o600 {
		return fmt.Errorf("credgate ca init: %s has mode %v, want 0600", gwCAKey, st.Mode().Perm())
	}

	return makeOriginPKI(dir)
}

func loadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}

// makeOriginPKI creates the origin's own CA and a leaf for every origin
// name (not unrelatedHost) plus 127.0.0.1.
func makeOriginPKI(dir string) error {
	ca, err := testpki.NewAuthority("credgate e2e origin CA")
	if err != nil {
		return err
	}
	originCA = ca
	if originLeaf, err = ca.Leaf(apiHost, otherHost, tunnelHost, privateHost, plainHost, "127.0.0.1"); err != nil {
		return err
	}
	originCACert = filepath.Join(dir, "origin-ca.pem")
	if err := os.WriteFile(originCACert, ca.CertPEM, 0o644); err != nil {
		return err
	}
	originCAPool = ca.Pool()
	return nil
}
