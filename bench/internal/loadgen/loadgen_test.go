package loadgen_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/bench/internal/baseline"
	"github.com/credgate/credgate/bench/internal/loadgen"
	"github.com/credgate/credgate/bench/internal/origin"
	"github.com/credgate/credgate/internal/testpki"
)

const host = "api.origin.test"

// setup starts an origin and a goproxy baseline in front of it and returns
// a direct target, a proxied target and a proxied target whose proxy
// injects the wrong token.
func setup(t *testing.T) (direct, proxied, wrong *loadgen.Target) {
	t.Helper()
	ca, err := testpki.NewAuthority("test origin CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf(host)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := origin.Start(ln, origin.Config{Certificate: leaf, Token: "tok"})
	t.Cleanup(func() {
		// Nothing to drain: a cancelled context closes every connection,
		// including spare upstream ones the proxy opened and never used.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = o.Close(ctx)
	})
	direct = &loadgen.Target{Name: "direct", Addr: o.Addr().String(), Host: host, Port: 443, Path: "/", Roots: ca.Pool(),
		Header: http.Header{"Authorization": {"Bearer tok"}}}
	proxy := func(value string) *loadgen.Target {
		pca, err := testpki.NewAuthority("test proxy CA")
		if err != nil {
			t.Fatal(err)
		}
		pair, err := pca.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		pln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- baseline.Serve(ctx, pln, baseline.Config{
				CA: pair, UpstreamRoots: ca.Pool(),
				Resolve: map[string]string{host + ":443": o.Addr().String()},
				Header:  "Authorization", Value: value,
			})
		}()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("baseline: %v", err)
			}
		})
		return &loadgen.Target{Name: "goproxy", Proxy: pln.Addr().String(), Host: host, Port: 443, Path: "/", Roots: pca.Pool()}
	}
	return direct, proxy("Bearer tok"), proxy("Bearer nope")
}

func TestTargets(t *testing.T) {
	direct, proxied, wrong := setup(t)
	ctx := context.Background()
	for _, tc := range []*loadgen.Target{direct, proxied} {
		if err := loadgen.Check(ctx, tc); err != nil {
			t.Errorf("Check(%s): %v", tc.Name, err)
		}
	}
	err := loadgen.Check(ctx, wrong)
	se, ok := loadgen.IsStatus(err)
	if !ok || se.Code != http.StatusUnauthorized {
		t.Errorf("Check(wrong token) = %v, want status 401", err)
	}

	conns, err := loadgen.OpenIdle(ctx, proxied, 20, 4)
	if err != nil {
		t.Fatalf("OpenIdle: %v", err)
	}
	for i, c := range conns {
		if err := c.Do(); err != nil {
			t.Errorf("request %d on idle connection: %v", i, err)
		}
	}
	loadgen.CloseAll(conns)
}

func TestClosedLoop(t *testing.T) {
	direct, proxied, wrong := setup(t)
	ctx := context.Background()
	for _, tc := range []struct {
		target  *loadgen.Target
		newConn bool
		errors  bool
	}{
		{target: direct},
		{target: proxied, newConn: true},
		{target: wrong, errors: true},
	} {
		r := loadgen.ClosedLoop(ctx, tc.target, 4, 200*time.Millisecond, 500*time.Millisecond, tc.newConn)
		if tc.errors {
			if r.Requests != 0 {
				t.Errorf("%s: %d requests, %d errors; want no successful request", tc.target.Name, r.Requests, r.Errors)
			}
			continue
		}
		if r.Errors != 0 || r.Requests == 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("%s newConn=%v: %+v", tc.target.Name, tc.newConn, r)
		}
	}
}

func TestOpenLoop(t *testing.T) {
	_, proxied, _ := setup(t)
	started := false
	r, err := loadgen.OpenLoop(context.Background(), proxied, 200, 4, 50*time.Millisecond, 250*time.Millisecond, func() { started = true })
	if err != nil {
		t.Fatal(err)
	}
	// 200 rps for 250 ms is 50 requests; all of them are sent whatever
	// the target's speed.
	if diff := cmp.Diff(50, r.Requests+r.Errors); diff != "" {
		t.Errorf("requests sent (-want +got):\n%s", diff)
	}
	if r.Errors != 0 || !started {
		t.Errorf("errors %d (first %q), started %v", r.Errors, r.FirstError, started)
	}
}

func TestClosedLoopResumesSessions(t *testing.T) {
	direct, _, _ := setup(t)
	ctx := context.Background()
	full := loadgen.ClosedLoop(ctx, direct, 2, 100*time.Millisecond, 300*time.Millisecond, true)
	if full.Requests == 0 || full.Resumed != 0 {
		t.Errorf("without sessions: %d requests, %d resumed; want some, none resumed", full.Requests, full.Resumed)
	}
	res := loadgen.ClosedLoop(ctx, direct.WithSessions(8), 2, 100*time.Millisecond, 300*time.Millisecond, true)
	if res.Requests == 0 || res.Resumed != res.Requests || res.Errors != 0 {
		t.Errorf("with sessions: %d requests, %d resumed, %d errors; want every measured one resumed", res.Requests, res.Resumed, res.Errors)
	}
}
