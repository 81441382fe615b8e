// Package miniotest starts a real MinIO server (S3 and STS, verifying
// SigV4 and aws-chunked signatures), the binary scripts/minio-tools.sh
// builds, on 127.0.0.1 with TLS, and adds the regular user that calls STS
// AssumeRole: the gateway's own AWS identity. It exists so that the
// end-to-end tests and the soak's fault mode (bench/cmd/credgate-bench)
// start MinIO the same way.
package miniotest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/minio/madmin-go/v3"
	credentialsv4 "github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/credgate/credgate/internal/freeport"
	"github.com/credgate/credgate/internal/testpki"
)

// BuildHint is the command that builds the server.
const BuildHint = "bash scripts/minio-tools.sh"

// Region is the region MinIO signs and checks signatures for.
const Region = "us-east-1"

// Options configure Start.
type Options struct {
	// Dir holds the server's certificate and data. Required.
	Dir string
	// CA issues the server's certificate, for Host and 127.0.0.1. Required.
	CA *testpki.Authority
	// Host is the name clients use for the server besides 127.0.0.1.
	Host string
	// Env is the server's environment; the MINIO_* settings are added.
	Env []string
	// Output receives the server's output; nil discards it.
	Output io.Writer
}

// Server is one MinIO process.
type Server struct {
	// Port is the S3 (and STS) port on 127.0.0.1.
	Port int
	// RootUser and RootPassword are the administrator's keys.
	RootUser, RootPassword string
	// User and Secret are a regular user, created with the madmin admin
	// API and allowed every S3 action: the identity that calls STS
	// AssumeRole (MinIO's STS issues keys for that user's policy).
	User, Secret string
	// Bin is the binary and Version its module version.
	Bin, Version string

	cancel context.CancelFunc
	done   chan struct{}
	tls    *http.Transport
}

// Binary returns the MinIO binary scripts/minio-tools.sh builds
// ($CREDGATE_TOOLS_BIN or ~/.cache/credgate/bin), or an error saying how
// to build it.
func Binary() (string, error) {
	dir := os.Getenv("CREDGATE_TOOLS_BIN")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("minio: find the tools directory: %w", err)
		}
		dir = filepath.Join(home, ".cache", "credgate", "bin")
	}
	bin := filepath.Join(dir, "minio")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("minio: %s missing: run %s: %w", bin, BuildHint, err)
	}
	return bin, nil
}

// Start runs MinIO on a free 127.0.0.1 port with a certificate from
// opts.CA, waits until it is ready (at most a minute), and creates the
// regular user. Close stops it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	certs := filepath.Join(opts.Dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return nil, fmt.Errorf("minio: %w", err)
	}
	names := []string{"127.0.0.1"}
	if opts.Host != "" {
		names = append([]string{opts.Host}, names...)
	}
	leaf, err := opts.CA.Leaf(names...)
	if err != nil {
		return nil, fmt.Errorf("minio: certificate: %w", err)
	}
	certPEM, keyPEM, err := testpki.PEM(leaf)
	if err != nil {
		return nil, fmt.Errorf("minio: certificate: %w", err)
	}
	for name, b := range map[string][]byte{"public.crt": certPEM, "private.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(certs, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("minio: %w", err)
		}
	}
	s := &Server{RootUser: "credgate-root", RootPassword: randomHex(16), Bin: bin, Version: Version(bin), done: make(chan struct{}),
		tls: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: opts.CA.Pool(), MinVersion: tls.VersionTLS12}}}
	if s.Port, err = freeport.Port(); err != nil {
		return nil, err
	}
	console, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	out := opts.Output
	if out == nil {
		out = io.Discard
	}
	pctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	cmd := exec.CommandContext(pctx, bin, "server", "--quiet", "--address", s.Addr(),
		"--console-address", "127.0.0.1:"+strconv.Itoa(console), "--certs-dir", certs, filepath.Join(opts.Dir, "data"))
	cmd.Env = append(slices.Clone(opts.Env), "MINIO_ROOT_USER="+s.RootUser, "MINIO_ROOT_PASSWORD="+s.RootPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("minio: start %s: %w", bin, err)
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx, time.Minute); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.addUser(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Addr is the server's 127.0.0.1:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the server's https URL on 127.0.0.1.
func (s *Server) URL() string { return "https://" + s.Addr() }

// Done is closed when the process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// Close stops the server and waits for it to exit.
func (s *Server) Close() {
	s.cancel()
	<-s.done
	s.tls.CloseIdleConnections()
}

func (s *Server) waitReady(ctx context.Context, within time.Duration) error {
	c := &http.Client{Transport: s.tls, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for {
		select {
		case <-s.done:
			return errors.New("minio: the server exited before it was ready (its output says why)")
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/minio/health/ready", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("minio: /minio/health/ready not within %s: %v", within, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// addUser creates the regular user with the admin API and a policy
// allowing every S3 action.
func (s *Server) addUser(ctx context.Context) error {
	adm, err := madmin.NewWithOptions(s.Addr(), &madmin.Options{
		Creds:     credentialsv4.NewStaticV4(s.RootUser, s.RootPassword, ""),
		Secure:    true,
		Transport: s.tls,
	})
	if err != nil {
		return fmt.Errorf("minio: admin client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.User, s.Secret = "credgate-gateway", randomHex(16)
	if err := adm.AddUser(ctx, s.User, s.Secret); err != nil {
		return fmt.Errorf("minio: madmin AddUser: %w", err)
	}
	policy := []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}`)
	if err := adm.AddCannedPolicy(ctx, "credgate-gateway-s3", policy); err != nil {
		return fmt.Errorf("minio: madmin AddCannedPolicy: %w", err)
	}
	if _, err := adm.AttachPolicy(ctx, madmin.PolicyAssociationReq{Policies: []string{"credgate-gateway-s3"}, User: s.User}); err != nil {
		return fmt.Errorf("minio: madmin AttachPolicy: %w", err)
	}
	return nil
}

// RootS3 is an S3 client with the administrator's keys, direct to the
// server (path style, no proxy).
func (s *Server) RootS3() *s3.Client {
	return s3.New(s3.Options{Region: Region, BaseEndpoint: aws.String(s.URL()), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.RootUser, s.RootPassword, ""),
		HTTPClient:  &http.Client{Transport: s.tls}})
}

// MakeBucket creates a bucket with the administrator's keys.
func (s *Server) MakeBucket(ctx context.Context, name string) error {
	if _, err := s.RootS3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("minio: create bucket %s: %w", name, err)
	}
	return nil
}

// Version is the module version a Go binary was built from, or "(version
// unknown)".
func Version(bin string) string {
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		return "(version unknown)"
	}
	for l := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "mod" {
			return f[2]
		}
	}
	return "(version unknown)"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
