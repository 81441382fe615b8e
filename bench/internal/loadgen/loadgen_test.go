package loadgen_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
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
	direct, o := startOrigin(t)
	return direct, startBaseline(t, o, "Bearer tok", false), startBaseline(t, o, "Bearer nope", false)
}

// startOrigin starts an origin that wants "Bearer tok" and returns a
// direct target for it and the origin's address and CA.
func startOrigin(t *testing.T) (*loadgen.Target, originInfo) {
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
	direct := &loadgen.Target{Name: "direct", Addr: o.Addr().String(), Host: host, Port: 443, Path: "/", Roots: ca.Pool(),
		Header: http.Header{"Authorization": {"Bearer tok"}}}
	return direct, originInfo{addr: o.Addr().String(), ca: ca}
}

type originInfo struct {
	addr string
	ca   *testpki.Authority
}

// startBaseline starts a goproxy baseline in front of o that injects
// "Authorization: value", serving h2 clients over HTTP/2 if clientH2.
func startBaseline(t *testing.T, o originInfo, value string, clientH2 bool) *loadgen.Target {
	t.Helper()
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
			CA: pair, UpstreamRoots: o.ca.Pool(),
			Resolve: map[string]string{host + ":443": o.addr},
			Header:  "Authorization", Value: value,
			ClientHTTP2: clientH2,
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

// TestPostBody: a target with a Body POSTs it to the origin's upload
// path, which answers 200 only when the whole body arrived, on the same
// keep-alive connection request after request, directly and through a
// proxy; a body longer than its declared length would desynchronise the
// connection, and the second Do would fail.
func TestPostBody(t *testing.T) {
	direct, proxied, _ := setup(t)
	for _, base := range []*loadgen.Target{direct, proxied} {
		tg := *base
		tg.Path, tg.Body = origin.UploadPath, []byte(`{"a":"`+strings.Repeat("x", 1000)+`"}`)
		c, err := loadgen.Dial(context.Background(), &tg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := c.Do(); err != nil {
				t.Fatalf("%s: request %d: %v", tg.Name, i, err)
			}
		}
		c.Close()
		if r := loadgen.ClosedLoop(context.Background(), &tg, 2, 100*time.Millisecond, 300*time.Millisecond, false); r.Errors != 0 || r.Requests == 0 {
			t.Errorf("%s closed loop: %+v", tg.Name, r)
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

// One HTTP/2 client's streams share one connection, directly and through
// a goproxy that speaks h2 to clients; a goproxy that does not is
// ErrNotH2, not a quiet HTTP/1.1 run.
func TestH2ClosedLoop(t *testing.T) {
	direct, o := startOrigin(t)
	h2proxy := startBaseline(t, o, "Bearer tok", true)
	h1proxy := startBaseline(t, o, "Bearer tok", false)
	ctx := context.Background()
	for _, target := range []*loadgen.Target{direct, h2proxy} {
		// The warm-up lets goproxy open its HTTP/1.1 upstream connections
		// (one per concurrent stream) before the window counts.
		r, err := loadgen.H2ClosedLoop(ctx, target, 8, 500*time.Millisecond, time.Second)
		if err != nil {
			t.Fatalf("%s: %v", target.Name, err)
		}
		if r.Errors != 0 || r.Requests == 0 || r.Conns != 1 {
			t.Errorf("%s: %d requests, %d errors (first %q), %d connections; want some, none, 1", target.Name, r.Requests, r.Errors, r.FirstError, r.Conns)
		}
	}
	if _, err := loadgen.H2ClosedLoop(ctx, h1proxy, 2, 0, 50*time.Millisecond); !errors.Is(err, loadgen.ErrNotH2) {
		t.Errorf("through a proxy without h2: %v, want ErrNotH2", err)
	}
	wrong := startBaseline(t, o, "Bearer nope", true)
	if _, err := loadgen.H2ClosedLoop(ctx, wrong, 2, 0, 50*time.Millisecond); err == nil {
		t.Error("wrong token: no error")
	} else if se, ok := loadgen.IsStatus(err); !ok || se.Code != http.StatusUnauthorized {
		t.Errorf("wrong token: %v, want status 401", err)
	}
}

// Uploads and downloads stream whole bodies of the size asked, directly
// and through a proxy, and a short download is an error.
func TestTransfers(t *testing.T) {
	direct, proxied, _ := setup(t)
	ctx := context.Background()
	const n = 3<<20 + 17
	for _, target := range []*loadgen.Target{direct, proxied} {
		up, err := loadgen.Upload(ctx, target, origin.UploadPath, origin.Pattern{}, n)
		if err != nil {
			t.Fatalf("upload via %s: %v", target.Name, err)
		}
		down, err := loadgen.Download(ctx, target, origin.DownloadPath+"?bytes=3145745", n)
		if err != nil {
			t.Fatalf("download via %s: %v", target.Name, err)
		}
		for _, x := range []loadgen.Transfer{up, down} {
			if x.Bytes != n || x.Elapsed <= 0 || x.BytesPerSecond() <= 0 {
				t.Errorf("via %s: %+v", target.Name, x)
			}
		}
	}
	if _, err := loadgen.Download(ctx, direct, origin.DownloadPath+"?bytes=100", 101); err == nil {
		t.Error("a body one byte short: no error")
	}
	if _, err := loadgen.Upload(ctx, direct, origin.UploadPath, io.LimitReader(origin.Pattern{}, 10), 20); err == nil {
		t.Error("a body reader that ends early: no error")
	}
}

// Every client sends on its own schedule: 10 clients at 20 rps for
// 250 ms send 50 requests in the window, each on its own connection.
func TestPerClient(t *testing.T) {
	_, proxied, _ := setup(t)
	ctx := context.Background()
	conns, err := loadgen.OpenIdle(ctx, proxied, 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer loadgen.CloseAll(conns)
	// One client's connection is broken: it gets a new one.
	_ = conns[3].Close()
	_ = conns[3].Do()
	r := loadgen.PerClient(ctx, proxied, conns, 20, 100*time.Millisecond, 250*time.Millisecond)
	if diff := cmp.Diff(50, r.Requests+r.Errors); diff != "" {
		t.Errorf("requests sent (-want +got):\n%s", diff)
	}
	if r.Errors != 0 || r.ExtraDials > 1 {
		t.Errorf("errors %d (first %q), extra dials %d", r.Errors, r.FirstError, r.ExtraDials)
	}
	for i, c := range conns {
		if c == nil || !c.Usable() {
			t.Errorf("connection %d not usable after the run", i)
		}
	}
}
