// Package spiffetest is a fake SPIFFE Workload API for unit tests: a gRPC
// server on a unix socket that streams the X.509-SVIDs and bundles a test
// sets, and that answers PermissionDenied, like a SPIRE agent without a
// registration entry for the caller, until the test sets some. The
// end-to-end tests use a real SPIRE server and agent instead
// (e2e/spire_test.go); nothing in the gateway imports this package.
package spiffetest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// WorkloadAPI is a running fake Workload API.
type WorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	// Addr is the socket address for clients: unix:///.../agent.sock.
	Addr string

	srv *grpc.Server

	mu      sync.Mutex
	resp    *workload.X509SVIDResponse // nil: no identity for the caller
	changed chan struct{}              // closed and replaced on every Set
	streams int
}

// Start serves a fake Workload API on a unix socket in a new temporary
// directory; Cleanup stops it.
func Start(t testing.TB) *WorkloadAPI {
	t.Helper()
	// Unix socket paths are limited to about 100 bytes: not t.TempDir(),
	// whose name includes the test's.
	dir, err := os.MkdirTemp("", "wlapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("spiffetest: listen: %v", err)
	}
	w := &WorkloadAPI{Addr: "unix://" + sock, srv: grpc.NewServer(), changed: make(chan struct{})}
	workload.RegisterSpiffeWorkloadAPIServer(w.srv, w)
	go func() { _ = w.srv.Serve(ln) }()
	t.Cleanup(w.srv.Stop)
	return w
}

// Set makes the API issue svids (leaf first, with their keys) and
// trust the bundles, keyed by trust domain name: the bundle of each SVID's
// own trust domain goes with it, the others are sent as federated
// bundles. Open streams receive the update at once. Set(nil, nil) goes
// back to PermissionDenied for new streams.
func (w *WorkloadAPI) Set(svids []tls.Certificate, bundles map[string][]*x509.Certificate) error {
	var resp *workload.X509SVIDResponse
	if len(svids) > 0 {
		resp = &workload.X509SVIDResponse{FederatedBundles: map[string][]byte{}}
		own := map[string]bool{}
		for _, c := range svids {
			leaf, err := x509.ParseCertificate(c.Certificate[0])
			if err != nil {
				return fmt.Errorf("spiffetest: parse SVID: %w", err)
			}
			if len(leaf.URIs) != 1 {
				return errors.New("spiffetest: an SVID needs exactly one URI SAN")
			}
			id, err := spiffeid.FromURI(leaf.URIs[0])
			if err != nil {
				return fmt.Errorf("spiffetest: SVID: %w", err)
			}
			key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
			if err != nil {
				return fmt.Errorf("spiffetest: SVID key: %w", err)
			}
			var chain []byte
			for _, der := range c.Certificate {
				chain = append(chain, der...)
			}
			td := id.TrustDomain().Name()
			own[td] = true
			resp.Svids = append(resp.Svids, &workload.X509SVID{
				SpiffeId: id.String(), X509Svid: chain, X509SvidKey: key, Bundle: concat(bundles[td]),
			})
		}
		for td, certs := range bundles {
			if !own[td] {
				resp.FederatedBundles["spiffe://"+td] = concat(certs)
			}
		}
	}
	w.mu.Lock()
	w.resp = resp
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
	return nil
}

// Streams counts the FetchX509SVID streams opened so far.
func (w *WorkloadAPI) Streams() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.streams
}

func concat(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

// FetchX509SVID implements the Workload API: the current response, then
// one per Set, until the client leaves.
func (w *WorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	if md, _ := metadata.FromIncomingContext(stream.Context()); len(md.Get("workload.spiffe.io")) == 0 {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	w.mu.Lock()
	w.streams++
	w.mu.Unlock()
	for {
		w.mu.Lock()
		resp, changed := w.resp, w.changed
		w.mu.Unlock()
		if resp == nil {
			return status.Error(codes.PermissionDenied, "no identity issued")
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}
