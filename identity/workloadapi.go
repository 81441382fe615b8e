package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// WorkloadAPISource keeps the gateway's own X.509-SVID and the X.509
// bundles of its trust domains as a SPIFFE Workload API (a SPIRE agent)
// streams them: a new SVID before the old one expires, new bundles when a
// CA rotates or a federated domain is added. It is safe for concurrent
// use; every read sees one consistent update.
//
// It watches the stream itself (workloadapi.Client.WatchX509Context)
// rather than through a workloadapi.X509Source, because it needs every
// update (to rebuild the mtls trust state and count rotations), all the
// bundles at once (for the listener's acceptable-CA list) and the stream's
// errors (for the start-up message and a metric).
type WorkloadAPISource struct {
	addr string
	pick spiffeid.ID // zero: the default (first) SVID
	log  *slog.Logger
	now  func() time.Time
	// onUpdate is called with the bundles of each accepted update (the
	// mtls verifier rebuilds its trust state).
	onUpdate func(*x509bundle.Set)

	client *workloadapi.Client
	stop   func() error

	state     atomic.Pointer[svidState]
	updates   atomic.Uint64
	rotations atomic.Uint64
	errs      atomic.Uint64

	first     chan struct{}
	firstOnce sync.Once
	mu        sync.Mutex // guards lastErr
	lastErr   error
}

// svidState is the SVID of one update of the Workload API, as served.
type svidState struct {
	svid *x509svid.SVID
	cert *tls.Certificate
}

// SVIDStatus describes the SVID a WorkloadAPISource holds, for readiness
// and metrics. It names identities, never key material.
type SVIDStatus struct {
	// ID is the SVID's SPIFFE ID, "" before the first update.
	ID string
	// Expires is the SVID's NotAfter, zero before the first update.
	Expires time.Time
	// Held is true while the source has an SVID that has not expired.
	Held bool
	// Updates counts the updates received from the Workload API.
	Updates uint64
	// Rotations counts the times the SVID was replaced by a new one.
	Rotations uint64
	// Errors counts failed Workload API streams and rejected updates.
	Errors uint64
}

// newWorkloadAPISource connects to the Workload API of cfg and waits, at
// most cfg.StartTimeout (and as long as ctx allows), for the first
// X.509-SVID. The error says what to check when none came.
func newWorkloadAPISource(ctx context.Context, cfg WorkloadAPIConfig, o options, onUpdate func(*x509bundle.Set)) (*WorkloadAPISource, error) {
	addr := cfg.Socket
	if addr == "" {
		addr = os.Getenv(workloadapi.SocketEnv)
		if addr == "" {
			return nil, fmt.Errorf("identity.mtls.workload_api: socket is not set and neither is %s; set socket: unix:///run/spire/agent.sock (the SPIRE agent's socket_path)", workloadapi.SocketEnv)
		}
		if err := workloadapi.ValidateAddress(addr); err != nil {
			return nil, fmt.Errorf("identity.mtls.workload_api: %s=%q: %v", workloadapi.SocketEnv, addr, err)
		}
	}
	s := &WorkloadAPISource{addr: addr, log: o.log, now: o.now, onUpdate: onUpdate, first: make(chan struct{})}
	if cfg.SPIFFEID != "" {
		id, err := spiffeid.FromString(cfg.SPIFFEID)
		if err != nil {
			return nil, fmt.Errorf("identity.mtls.workload_api.spiffe_id: %w", err)
		}
		s.pick = id
	}
	// Dialling does not block: a socket that is not there yet shows up as
	// stream errors, which are retried with back-off until the agent
	// answers or Close.
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		return nil, fmt.Errorf("identity.mtls.workload_api: connect to %s: %w", addr, err)
	}
	s.client = client
	s.stop = background(func(ctx context.Context) {
		// WatchX509Context returns (an error) only when ctx is cancelled
		// or the agent refuses the request as invalid.
		if err := client.WatchX509Context(ctx, s); ctx.Err() == nil {
			s.log.Error("SPIFFE Workload API watch stopped; the SVID and bundles no longer rotate", slog.String("socket", addr), slog.Any("error", err))
		}
	})

	wait := cfg.StartTimeout
	if wait <= 0 {
		wait = DefaultWorkloadAPIStartTimeout
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-s.first:
		st := s.state.Load()
		s.log.Info("SPIFFE Workload API: X.509-SVID received", slog.String("socket", addr),
			slog.String("spiffe_id", st.svid.ID.String()), slog.Time("expires", st.svid.Certificates[0].NotAfter))
		return s, nil
	case <-timer.C:
		err = fmt.Errorf("within start_timeout %s", wait)
	case <-ctx.Done():
		err = fmt.Errorf("before start-up was cancelled (%w)", ctx.Err())
	}
	last := s.lastError()
	_ = s.Close()
	return nil, fmt.Errorf("identity.mtls.workload_api: no X.509-SVID from the SPIFFE Workload API at %s %w: %s", addr, err, describeLast(last))
}

// describeLast turns the last stream error into advice.
func describeLast(err error) string {
	if err == nil {
		return "the agent sent nothing"
	}
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
		switch st.Code() {
		case codes.Unavailable:
			return fmt.Sprintf("cannot reach the agent (%s): is the SPIRE agent running, and is the socket path right and reachable by the gateway's user?", msg)
		case codes.PermissionDenied:
			return fmt.Sprintf("the agent issued the gateway no identity (%s): create a registration entry whose selectors match the gateway's process (unix:uid, k8s:sa, ...)", msg)
		}
	}
	return "last error: " + msg
}

// OnX509ContextUpdate implements workloadapi.X509ContextWatcher.
func (s *WorkloadAPISource) OnX509ContextUpdate(c *workloadapi.X509Context) {
	s.updates.Add(1)
	svid, err := s.choose(c.SVIDs)
	if err != nil {
		s.errs.Add(1)
		s.setLastError(err)
		s.log.Warn("SPIFFE Workload API update rejected; keeping the previous SVID", slog.String("socket", s.addr), slog.Any("error", err))
		return
	}
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	bundles := c.Bundles
	if bundles == nil {
		bundles = x509bundle.NewSet()
	}
	// The bundles first: once the new SVID is served, a CA the update
	// rotated out is no longer trusted (with the SVID first, a chain of
	// the old CA verified in between).
	if s.onUpdate != nil {
		s.onUpdate(bundles)
	}
	prev := s.state.Swap(&svidState{svid: svid, cert: cert})
	if prev != nil && !prev.svid.Certificates[0].Equal(svid.Certificates[0]) {
		s.rotations.Add(1)
		s.log.Info("SPIFFE Workload API: X.509-SVID rotated", slog.String("spiffe_id", svid.ID.String()),
			slog.Time("expires", svid.Certificates[0].NotAfter))
	}
	s.firstOnce.Do(func() { close(s.first) })
}

// OnX509ContextWatchError implements workloadapi.X509ContextWatcher. The
// client retries with back-off after it returns.
func (s *WorkloadAPISource) OnX509ContextWatchError(err error) {
	if err == nil || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return
	}
	s.errs.Add(1)
	s.setLastError(err)
	s.log.Warn("SPIFFE Workload API stream failed; retrying", slog.String("socket", s.addr), slog.Any("error", err))
}

// choose picks the gateway's SVID from an update.
func (s *WorkloadAPISource) choose(svids []*x509svid.SVID) (*x509svid.SVID, error) {
	if len(svids) == 0 {
		return nil, errors.New("the update holds no X.509-SVID")
	}
	if s.pick.IsZero() {
		return svids[0], nil
	}
	ids := make([]string, 0, len(svids))
	for _, v := range svids {
		if v.ID == s.pick {
			return v, nil
		}
		ids = append(ids, v.ID.String())
	}
	return nil, fmt.Errorf("the agent issued %s but not spiffe_id %s; fix identity.mtls.workload_api.spiffe_id or the registration entry", strings.Join(ids, ", "), s.pick)
}

func (s *WorkloadAPISource) setLastError(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

func (s *WorkloadAPISource) lastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// GetCertificate returns the current X.509-SVID as the server certificate
// of a TLS listener (tls.Config.GetCertificate): each handshake gets the
// SVID in force, so rotation needs no restart.
func (s *WorkloadAPISource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := s.state.Load()
	if st == nil {
		return nil, errors.New("identity: no X.509-SVID from the SPIFFE Workload API yet")
	}
	return st.cert, nil
}

// Status describes the SVID held now.
func (s *WorkloadAPISource) Status() SVIDStatus {
	out := SVIDStatus{Updates: s.updates.Load(), Rotations: s.rotations.Load(), Errors: s.errs.Load()}
	if st := s.state.Load(); st != nil {
		leaf := st.svid.Certificates[0]
		out.ID, out.Expires = st.svid.ID.String(), leaf.NotAfter
		out.Held = s.now().Before(leaf.NotAfter)
	}
	return out
}

// Socket is the Workload API address in use.
func (s *WorkloadAPISource) Socket() string { return s.addr }

// Close stops watching and closes the connection. It is safe to call more
// than once.
func (s *WorkloadAPISource) Close() error {
	var errs []error
	if s.stop != nil {
		errs = append(errs, s.stop())
		s.stop = nil
	}
	if s.client != nil {
		errs = append(errs, s.client.Close())
		s.client = nil
	}
	return errors.Join(errs...)
}

var _ workloadapi.X509ContextWatcher = (*WorkloadAPISource)(nil)
