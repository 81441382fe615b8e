package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// A real gRPC client (grpc-go, in a child process configured only through
// HTTPS_PROXY and SSL_CERT_FILE) calls a real gRPC server (grpc-go's
// interop TestService over TLS on 127.0.0.1) through the gateway.
//
// grpc-go reads HTTPS_PROXY through net/http's ProxyFromEnvironment, which
// reads the environment once per process: the client therefore runs in a
// child process, this test binary started again with grpcClientEnv set
// (TestMain hands it to grpcClientMain before any set-up).

// grpcClientEnv names the scenario the child process runs.
const grpcClientEnv = "CREDGATE_E2E_GRPC_CLIENT"

// grpcTargetEnv is the child's target (host:port, resolved by the gateway).
const grpcTargetEnv = "CREDGATE_E2E_GRPC_TARGET"

// grpcMaxMsg is the message size limit of both ends: above grpc-go's 4 MiB
// default, so that 4 MiB payloads pass both ways.
const grpcMaxMsg = 16 << 20

// grpcLarge is the size of the large payloads (4 MiB).
const grpcLarge = 4 << 20

// grpcPolicy: every TestService method to api.origin.test, only UnaryCall
// to other.origin.test, both with the bearer credential.
const grpcPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  grpc-all:
    hosts: [api.origin.test]
    allow_private: true
  grpc-unary:
    hosts: [other.origin.test]
    allow_private: true
credentials:
  api-token:
    provider: static
    env: CREDGATE_E2E_TOKEN
rules:
  - name: grpc-test-service
    from: local
    to: grpc-all
    methods: [POST]
    paths: [/grpc.testing.TestService/*]
    inject:
      credential: api-token
      as: bearer
  - name: grpc-unary-only
    from: local
    to: grpc-unary
    methods: [POST]
    paths: [/grpc.testing.TestService/UnaryCall]
    inject:
      credential: api-token
      as: bearer
default: deny
`

// grpcOrigin is the gRPC server behind the gateway. Its interceptors
// refuse every call whose authorization metadata is not the bearer
// credential the gateway injects.
type grpcOrigin struct {
	testgrpc.UnimplementedTestServiceServer
	addr string
	mu   sync.Mutex
	// token is the credential the gateway injects.
	token   string
	calls   map[string]int // per full method, calls that had the credential
	badAuth []string       // full methods of calls without it
	// deadlines are the time left, at the server, of calls that had a
	// deadline (the client's grpc-timeout, passed on).
	deadlines []time.Duration
	// ended receives "cancelled" or "deadline" when a call the server
	// holds ("hold") sees its context end.
	ended chan string
}

func startGRPCOrigin(t *testing.T) *grpcOrigin {
	t.Helper()
	o := &grpcOrigin{calls: map[string]int{}, ended: make(chan string, 16)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{originLeaf}})),
		grpc.MaxRecvMsgSize(grpcMaxMsg), grpc.MaxSendMsgSize(grpcMaxMsg),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := o.checkAuth(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := o.checkAuth(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	testgrpc.RegisterTestServiceServer(srv, o)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	o.addr = lis.Addr().String()
	return o
}

// checkAuth is the server's verification of the injected credential.
func (o *grpcOrigin) checkAuth(ctx context.Context, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+o.token {
		o.badAuth = append(o.badAuth, method)
		return status.Error(codes.Unauthenticated, "the gateway's credential did not arrive")
	}
	o.calls[method]++
	if d, ok := ctx.Deadline(); ok {
		o.deadlines = append(o.deadlines, time.Until(d))
	}
	return nil
}

func (o *grpcOrigin) count(method string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls["/grpc.testing.TestService/"+method]
}

// hold waits until ctx ends and reports how.
func (o *grpcOrigin) hold(ctx context.Context) {
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		o.ended <- "deadline"
	} else {
		o.ended <- "cancelled"
	}
}

func payload(n int) *testgrpc.Payload { return &testgrpc.Payload{Body: bytes.Repeat([]byte{'p'}, n)} }

// UnaryCall answers ResponseSize bytes, or the status ResponseStatus asks
// for (with header and trailer metadata); a payload "hold" is held until
// the call ends, "echo-auth" answers the authorization metadata.
func (o *grpcOrigin) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-e2e-header", "h1"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-e2e-trailer", "t1", "x-e2e-size", fmt.Sprint(len(in.GetPayload().GetBody()))))
	switch string(in.GetPayload().GetBody()) {
	case "hold":
		o.hold(ctx)
		return nil, ctx.Err()
	case "hold-quiet":
		<-ctx.Done()
		return nil, ctx.Err()
	case "echo-auth":
		md, _ := metadata.FromIncomingContext(ctx)
		return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: []byte("you sent " + strings.Join(md.Get("authorization"), ","))}}, nil
	}
	if st := in.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testgrpc.SimpleResponse{Payload: payload(int(in.GetResponseSize()))}, nil
}

// StreamingOutputCall sends one message per ResponseParameters; a payload
// "hold" is held after the first until the call ends.
func (o *grpcOrigin) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, s grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	for i, p := range in.GetResponseParameters() {
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: payload(int(p.GetSize()))}); err != nil {
			return err
		}
		if i == 0 && string(in.GetPayload().GetBody()) == "hold" {
			o.hold(s.Context())
			return s.Context().Err()
		}
		if i == 0 && string(in.GetPayload().GetBody()) == "hold-quiet" {
			<-s.Context().Done()
			return s.Context().Err()
		}
	}
	return nil
}

// StreamingInputCall answers the sum of the payload sizes.
func (o *grpcOrigin) StreamingInputCall(s grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	n := 0
	for {
		in, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return s.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(n)})
		}
		if err != nil {
			return err
		}
		n += len(in.GetPayload().GetBody())
	}
}

// FullDuplexCall answers each message with one per ResponseParameters;
// "echo-auth" answers the authorization metadata.
func (o *grpcOrigin) FullDuplexCall(s grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	for {
		in, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if string(in.GetPayload().GetBody()) == "echo-auth" {
			md, _ := metadata.FromIncomingContext(s.Context())
			if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte("you sent " + strings.Join(md.Get("authorization"), ","))}}); err != nil {
				return err
			}
			continue
		}
		for _, p := range in.GetResponseParameters() {
			if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: payload(int(p.GetSize()))}); err != nil {
				return err
			}
		}
	}
}

// ---------------------------------------------------------------------------
// The client, in a child process.

// grpcStep is one line the child prints: what one call saw.
type grpcStep struct {
	Step string `json:"step"`
	// Code and Msg are the call's gRPC status (OK and "" on success).
	Code string `json:"code"`
	Msg  string `json:"msg,omitempty"`
	// N is a count or size the step reports.
	N int `json:"n,omitempty"`
	// Body is a response payload the step reports.
	Body string `json:"body,omitempty"`
	// MD is header and trailer metadata the step reports.
	MD map[string]string `json:"md,omitempty"`
	MS int64             `json:"ms"`
}

// grpcClientMain runs the child's scenario and returns its exit status.
func grpcClientMain(scenario string) int {
	conn, err := grpc.NewClient(os.Getenv(grpcTargetEnv),
		// The system roots: SSL_CERT_FILE names the gateway's CA.
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcMaxMsg), grpc.MaxCallSendMsgSize(grpcMaxMsg)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc client:", err)
		return 2
	}
	defer conn.Close()
	c := testgrpc.NewTestServiceClient(conn)
	out := json.NewEncoder(os.Stdout)
	emit := func(step string, start time.Time, err error, s grpcStep) {
		s.Step, s.MS = step, time.Since(start).Milliseconds()
		st := status.Convert(err)
		s.Code, s.Msg = st.Code().String(), st.Message()
		_ = out.Encode(s)
	}
	run := func(step string, timeout time.Duration, f func(ctx context.Context) (grpcStep, error)) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		s, err := f(ctx)
		emit(step, start, err, s)
	}
	scenarios := map[string]func(){
		"calls":   func() { grpcCalls(c, run) },
		"methods": func() { grpcMethods(c, run) },
		"unary": func() {
			run("unary", 10*time.Second, func(ctx context.Context) (grpcStep, error) { return grpcUnary(ctx, c) })
		},
		"bidi-hold": func() { grpcBidiHold(c, emit) },
		"deadlines": func() { grpcDeadlines(c, run) },
	}
	f, ok := scenarios[scenario]
	if !ok {
		fmt.Fprintln(os.Stderr, "grpc client: no scenario", scenario)
		return 2
	}
	f()
	return 0
}

type grpcRun = func(step string, timeout time.Duration, f func(ctx context.Context) (grpcStep, error))

// grpcDeadlineCalls is how many held calls of each kind grpcDeadlines
// makes.
const grpcDeadlineCalls = 20

// grpcDeadlines makes grpcDeadlineCalls unary and as many server-stream
// calls (one message, then held) that the server holds past their
// deadlines (20 to 210ms): each must end DeadlineExceeded, whether the
// client's deadline, the gateway's hold of the grpc-timeout or the
// server's fires first. N counts those that did; Msg names the others.
func grpcDeadlines(c testgrpc.TestServiceClient, run grpcRun) {
	run("deadlines", 30*time.Second, func(ctx context.Context) (grpcStep, error) {
		var s grpcStep
		// The connection first: a 20ms deadline could pass during its
		// handshakes, before any call reached the gateway.
		if _, err := grpcUnary(ctx, c); err != nil {
			return s, err
		}
		var others []string
		for i := 0; i < grpcDeadlineCalls; i++ {
			d := time.Duration(20+10*(i%20)) * time.Millisecond
			for _, kind := range []string{"unary", "server-stream"} {
				cctx, cancel := context.WithTimeout(ctx, d)
				var err error
				if kind == "unary" {
					_, err = c.UnaryCall(cctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hold-quiet")}})
				} else {
					var st grpc.ServerStreamingClient[testgrpc.StreamingOutputCallResponse]
					st, err = c.StreamingOutputCall(cctx, &testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("hold-quiet")}, ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 1}}})
					for err == nil {
						_, err = st.Recv()
					}
				}
				cancel()
				if status.Code(err) == codes.DeadlineExceeded {
					s.N++
				} else {
					others = append(others, fmt.Sprintf("%s %v: %v", kind, d, err))
				}
			}
		}
		s.Msg = strings.Join(others, "; ")
		return s, nil
	})
}

func grpcUnary(ctx context.Context, c testgrpc.TestServiceClient) (grpcStep, error) {
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10, Payload: payload(10)})
	return grpcStep{N: len(resp.GetPayload().GetBody())}, err
}

// grpcCalls is every kind of call to a destination that allows them all.
func grpcCalls(c testgrpc.TestServiceClient, run grpcRun) {
	run("unary", 10*time.Second, func(ctx context.Context) (grpcStep, error) { return grpcUnary(ctx, c) })
	run("server-stream", 10*time.Second, func(ctx context.Context) (grpcStep, error) {
		s, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 2}, {Size: 3}, {Size: 4}, {Size: 5}}})
		if err != nil {
			return grpcStep{}, err
		}
		n := 0
		for {
			m, err := s.Recv()
			if errors.Is(err, io.EOF) {
				return grpcStep{N: n}, nil
			}
			if err != nil {
				return grpcStep{N: n}, err
			}
			n += len(m.GetPayload().GetBody())
		}
	})
	run("client-stream", 10*time.Second, func(ctx context.Context) (grpcStep, error) {
		s, err := c.StreamingInputCall(ctx)
		if err != nil {
			return grpcStep{}, err
		}
		for i := 0; i < 5; i++ {
			if err := s.Send(&testgrpc.StreamingInputCallRequest{Payload: payload(100)}); err != nil {
				return grpcStep{}, err
			}
		}
		resp, err := s.CloseAndRecv()
		return grpcStep{N: int(resp.GetAggregatedPayloadSize())}, err
	})
	run("bidi", 10*time.Second, func(ctx context.Context) (grpcStep, error) {
		s, err := c.FullDuplexCall(ctx)
		if err != nil {
			return grpcStep{}, err
		}
		n, err := pingPong(s, 5)
		return grpcStep{N: n}, err
	})
	run("status", 10*time.Second, func(ctx context.Context) (grpcStep, error) {
		var hdr, trl metadata.MD
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: payload(3), ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "précondition: 100% «failed»\nline two"}}, grpc.Header(&hdr), grpc.Trailer(&trl))
		return grpcStep{MD: map[string]string{"header": strings.Join(hdr.Get("x-e2e-header"), ","), "trailer": strings.Join(trl.Get("x-e2e-trailer"), ","), "size": strings.Join(trl.Get("x-e2e-size"), ",")}}, err
	})
	run("large", 20*time.Second, func(ctx context.Context) (grpcStep, error) {
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: grpcLarge, Payload: payload(grpcLarge)})
		if err != nil {
			return grpcStep{}, err
		}
		if b := resp.GetPayload().GetBody(); !bytes.Equal(b, bytes.Repeat([]byte{'p'}, grpcLarge)) {
			return grpcStep{N: len(b)}, errors.New("the large response payload changed on its way")
		}
		return grpcStep{N: grpcLarge}, nil
	})
	run("deadline", 10*time.Second, func(ctx context.Context) (grpcStep, error) {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hold")}})
		return grpcStep{}, err
	})
	run("cancel", 10*time.Second, func(ctx context.Context) (grpcStep, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("hold")}, ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 1}}})
		if err != nil {
			return grpcStep{}, err
		}
		if _, err := s.Recv(); err != nil {
			return grpcStep{}, err
		}
		cancel() // the server holds the call until it sees this
		_, err = s.Recv()
		return grpcStep{}, err
	})
	run("concurrent", 20*time.Second, func(ctx context.Context) (grpcStep, error) {
		const streams = 100
		var wg sync.WaitGroup
		errs := make(chan error, streams)
		for i := 0; i < streams; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := c.FullDuplexCall(ctx)
				if err == nil {
					_, err = pingPong(s, 3)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		n := 0
		for err := range errs {
			if err != nil {
				return grpcStep{N: n}, err
			}
			n++
		}
		return grpcStep{N: n}, nil
	})
	run("echo-unary", 10*time.Second, func(ctx context.Context) (grpcStep, error) {
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("echo-auth")}})
		return grpcStep{Body: string(resp.GetPayload().GetBody())}, err
	})
	run("echo-bidi", 10*time.Second, func(ctx context.Context) (grpcStep, error) {
		s, err := c.FullDuplexCall(ctx)
		if err != nil {
			return grpcStep{}, err
		}
		if err := s.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("echo-auth")}}); err != nil {
			return grpcStep{}, err
		}
		m, err := s.Recv()
		if err != nil {
			return grpcStep{}, err
		}
		_ = s.CloseSend()
		_, err = s.Recv()
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return grpcStep{Body: string(m.GetPayload().GetBody())}, err
	})
}

// pingPong sends n messages on a bidi stream, each answered with one, and
// ends it; it returns the count of answers.
func pingPong(s grpc.BidiStreamingClient[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse], n int) (int, error) {
	got := 0
	for i := 0; i < n; i++ {
		if err := s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}}}); err != nil && !errors.Is(err, io.EOF) {
			return got, err // io.EOF: the call ended; Recv says how
		}
		if _, err := s.Recv(); err != nil {
			return got, err
		}
		got++
	}
	if err := s.CloseSend(); err != nil {
		return got, err
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		return got, err
	}
	return got, nil
}

// grpcMethods calls each method once, to a destination whose rule allows
// UnaryCall alone.
func grpcMethods(c testgrpc.TestServiceClient, run grpcRun) {
	run("unary", 10*time.Second, func(ctx context.Context) (grpcStep, error) { return grpcUnary(ctx, c) })
	run("bidi", 10*time.Second, func(ctx context.Context) (grpcStep, error) {
		s, err := c.FullDuplexCall(ctx)
		if err != nil {
			return grpcStep{}, err
		}
		n, err := pingPong(s, 1)
		return grpcStep{N: n}, err
	})
	run("server-stream", 10*time.Second, func(ctx context.Context) (grpcStep, error) {
		s, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}})
		if err != nil {
			return grpcStep{}, err
		}
		_, err = s.Recv()
		return grpcStep{}, err
	})
}

// grpcBidiHold opens a bidi stream, completes one exchange, prints "open"
// and reads until the stream fails, then prints "cut".
func grpcBidiHold(c testgrpc.TestServiceClient, emit func(string, time.Time, error, grpcStep)) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	s, err := c.FullDuplexCall(ctx)
	if err == nil {
		err = s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}}})
	}
	if err == nil {
		_, err = s.Recv()
	}
	emit("open", start, err, grpcStep{})
	if err != nil {
		return
	}
	start = time.Now()
	_, err = s.Recv()
	emit("cut", start, err, grpcStep{})
}

// grpcChild is a running child client.
type grpcChild struct {
	cmd   *exec.Cmd
	lines chan grpcStep
	err   *syncBuffer
	done  chan struct{}
}

// startGRPCClient starts the child on scenario against target through e,
// with nothing but HTTPS_PROXY and SSL_CERT_FILE (the gateway's CA) to
// configure it.
func startGRPCClient(t *testing.T, e *env, scenario, target string) *grpcChild {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, self)
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR", "GRPC_PROXY_EXP", "CREDGATE_E2E_TOKEN":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, grpcClientEnv+"="+scenario, grpcTargetEnv+"="+target,
		"HTTPS_PROXY="+e.proxyURL, "SSL_CERT_FILE="+gwCACert)
	for _, kv := range cmd.Env {
		if strings.Contains(kv, e.token) {
			t.Fatal("the gRPC client's environment holds the credential")
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &grpcChild{cmd: cmd, lines: make(chan grpcStep, 64), err: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = c.err
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the gRPC client: %v", err)
	}
	go func() {
		defer close(c.done)
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var s grpcStep
			if json.Unmarshal(sc.Bytes(), &s) == nil {
				c.lines <- s
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
	})
	return c
}

// next returns the child's next step, failing the test if it ends first.
func (c *grpcChild) next(t *testing.T, step string) grpcStep {
	t.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case s, ok := <-c.lines:
		if !ok {
			t.Fatalf("the gRPC client ended before step %s: %s", step, c.err.String())
		}
		if s.Step != step {
			t.Fatalf("the gRPC client reported step %q, want %q", s.Step, step)
		}
		return s
	case <-timer.C:
		t.Fatalf("the gRPC client did not report step %s within 30s: %s", step, c.err.String())
	}
	return grpcStep{}
}

// all runs the child to its end and returns its steps by name.
func (c *grpcChild) all(t *testing.T) map[string]grpcStep {
	t.Helper()
	out := map[string]grpcStep{}
	timer := time.NewTimer(45 * time.Second)
	defer timer.Stop()
	for {
		select {
		case s, ok := <-c.lines:
			if !ok {
				return out
			}
			out[s.Step] = s
		case <-timer.C:
			t.Fatalf("the gRPC client did not end within 45s: %s", c.err.String())
		}
	}
}

// startGRPCEnv starts the gRPC server and a gateway with grpcPolicy in
// front of it (opts' Policy and Resolve are replaced).
func startGRPCEnv(t *testing.T, opts envOptions) (*env, *grpcOrigin) {
	t.Helper()
	o := startGRPCOrigin(t)
	opts.Policy = grpcPolicy
	opts.Resolve = map[string]string{apiHost + ":443": o.addr, otherHost + ":443": o.addr}
	e := startEnv(t, opts)
	o.mu.Lock()
	o.token = e.token
	o.mu.Unlock()
	return e, o
}

// TestGRPCThroughGateway: grpc-go calls grpc-go's TestService through the
// gateway: every kind of call passes with the injected credential, which
// the client never holds; status, metadata and trailers reach the client
// unchanged; deadlines and cancellation reach the server; 4 MiB messages
// pass both ways; 100 concurrent streams share one connection; a response
// echoing the credential is scrubbed.
func TestGRPCThroughGateway(t *testing.T) {
	e, o := startGRPCEnv(t, envOptions{})
	steps := startGRPCClient(t, e, "calls", apiHost+":443").all(t)
	want := map[string]grpcStep{
		"unary":         {Code: "OK", N: 10},
		"server-stream": {Code: "OK", N: 15},
		"client-stream": {Code: "OK", N: 500},
		"bidi":          {Code: "OK", N: 5},
		"large":         {Code: "OK", N: grpcLarge},
		"concurrent":    {Code: "OK", N: 100},
		"deadline":      {Code: "DeadlineExceeded"},
		"cancel":        {Code: "Canceled"},
	}
	for name, w := range want {
		got, ok := steps[name]
		if !ok {
			t.Errorf("%s: no result", name)
			continue
		}
		if got.Code != w.Code || got.N != w.N {
			t.Errorf("%s: %s %q n=%d, want %s n=%d", name, got.Code, got.Msg, got.N, w.Code, w.N)
		}
	}
	if s := steps["status"]; s.Code != "FailedPrecondition" || s.Msg != "précondition: 100% «failed»\nline two" ||
		s.MD["header"] != "h1" || s.MD["trailer"] != "t1" || s.MD["size"] != "3" {
		t.Errorf("status: %s %q %v, want FailedPrecondition with the server's message, header and trailers unchanged", s.Code, s.Msg, s.MD)
	}
	for _, name := range []string{"echo-unary", "echo-bidi"} {
		s := steps[name]
		if s.Code == "OK" && (strings.Contains(s.Body, e.token) || !strings.HasPrefix(s.Body, "you sent ")) {
			t.Errorf("%s: the response echoing the credential reached the client unscrubbed (%d bytes)", name, len(s.Body))
		}
		t.Logf("%s: %s %q, body %d bytes", name, s.Code, s.Msg, len(s.Body))
	}
	// The server verified the credential on every call; none came
	// without it.
	o.mu.Lock()
	bad := append([]string(nil), o.badAuth...)
	deadlines := append([]time.Duration(nil), o.deadlines...)
	o.mu.Unlock()
	if len(bad) != 0 {
		t.Errorf("calls without the injected credential reached the server: %v", bad)
	}
	for _, m := range []string{"UnaryCall", "StreamingOutputCall", "StreamingInputCall", "FullDuplexCall"} {
		if o.count(m) == 0 {
			t.Errorf("the server saw no %s with the credential", m)
		}
	}
	// The 500ms deadline reached the server (grpc-timeout).
	short := 0
	for _, d := range deadlines {
		if d <= 500*time.Millisecond {
			short++
		}
	}
	if short == 0 {
		t.Errorf("no call reached the server with the client's 500ms deadline (deadlines seen: %v)", deadlines)
	}
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		select {
		case s := <-o.ended:
			seen[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("the server saw %v of the two held calls end within 5s", seen)
		}
	}
	if !seen["cancelled"] {
		// The deadline call ends at the server by its own deadline or
		// by the client's cancellation at the same moment, whichever
		// comes first; the cancelled one by the cancellation.
		t.Errorf("the held calls ended at the server as %v, want one cancelled", seen)
	}
}

// TestGRPCDeadlines: held calls whose deadlines pass, unary and server
// streams (after their first message), each end DeadlineExceeded for the
// client: whichever of the client's own deadline, the gateway's hold of
// the grpc-timeout (grpc_deadline_exceeded) and grpc-go's server's (a
// CANCEL reset) fires first. Before, the server's reset reached the
// client as Unavailable upstream_error (seen in CI).
func TestGRPCDeadlines(t *testing.T) {
	e, _ := startGRPCEnv(t, envOptions{})
	s := startGRPCClient(t, e, "deadlines", apiHost+":443").next(t, "deadlines")
	if s.Code != "OK" || s.N != 2*grpcDeadlineCalls {
		t.Errorf("%s: %d of %d calls ended DeadlineExceeded; the others: %s", s.Code, s.N, 2*grpcDeadlineCalls, s.Msg)
	}
	codes := map[string]int{}
	waitFor(t, 10*time.Second, "the calls' audit lines", func() error {
		clear(codes)
		n := 0
		for _, a := range e.audit() {
			if strings.HasPrefix(a.Path, "/grpc.testing.TestService/") && a.Code != "" { // not the first, OK call
				n++
				g := "none"
				if a.GRPCStatus != nil {
					g = fmt.Sprint(*a.GRPCStatus)
				}
				codes[fmt.Sprintf("%s %d grpc_status=%s", a.Code, a.Status, g)]++
			}
		}
		// A call whose deadline passes in the client before it sent
		// the call (a 20ms one, on a busy machine) never reaches the
		// gateway: up to two such are let be.
		if n < 2*grpcDeadlineCalls-2 {
			return fmt.Errorf("%d audit lines of calls, want %d", n, 2*grpcDeadlineCalls)
		}
		return nil
	})
	t.Logf("audited as: %v", codes)
	for c := range codes {
		// The gateway's end says what the client got (4); a call the
		// client ended itself got nothing from the gateway.
		if !(strings.HasPrefix(c, codeGRPCDeadlineE2E+" ") && strings.HasSuffix(c, " grpc_status=4")) &&
			!(strings.HasPrefix(c, "client_aborted ") && strings.HasSuffix(c, " grpc_status=none")) {
			t.Errorf("a held call audited %q, want %s with grpc_status 4, or client_aborted without one", c, codeGRPCDeadlineE2E)
		}
	}
}

// codeGRPCDeadlineE2E is the gateway's code of a call whose grpc-timeout
// passed (docs/policy.md).
const codeGRPCDeadlineE2E = "grpc_deadline_exceeded"

// TestGRPCRefusals: a call the policy refuses (here a method the rule for
// its destination does not allow) is reported by grpc-go as
// PermissionDenied with the gateway's code and reason in the message,
// and audited with the refusal's status; the allowed method passes. A
// destination no rule names is refused at the CONNECT, before any call:
// grpc-go reports Unavailable naming the proxy's 403.
func TestGRPCRefusals(t *testing.T) {
	e, o := startGRPCEnv(t, envOptions{})
	steps := startGRPCClient(t, e, "methods", otherHost+":443").all(t)
	if s := steps["unary"]; s.Code != "OK" {
		t.Errorf("the allowed UnaryCall: %s %q", s.Code, s.Msg)
	}
	for name, method := range map[string]string{"bidi": "FullDuplexCall", "server-stream": "StreamingOutputCall"} {
		s := steps[name]
		want := fmt.Sprintf(`credgate path_not_allowed: rule "grpc-unary-only" lets workload "local" reach other.origin.test:443, but not POST /grpc.testing.TestService/%s`, method)
		if s.Code != "PermissionDenied" || s.Msg != want {
			t.Errorf("%s: %s %q, want PermissionDenied %q", name, s.Code, s.Msg, want)
		}
		if n := o.count(method); n != 0 {
			t.Errorf("the server saw %d %s calls", n, method)
		}
	}
	waitFor(t, 5*time.Second, "the refusals' audit lines", func() error {
		n := 0
		for _, a := range e.audit() {
			if a.Code == "path_not_allowed" && a.Status == 403 && strings.HasPrefix(a.Path, "/grpc.testing.TestService/") && a.GRPCStatus != nil && *a.GRPCStatus == 7 {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d path_not_allowed lines with status 403 and grpc_status 7, want 2", n)
		}
		return nil
	})

	s := startGRPCClient(t, e, "unary", tunnelHost+":443").next(t, "unary")
	if s.Code != "Unavailable" || !strings.Contains(s.Msg, "403") {
		t.Errorf("a destination no rule names: %s %q, want Unavailable naming the CONNECT's 403", s.Code, s.Msg)
	}
	t.Logf("CONNECT refused: %s %q", s.Code, s.Msg)
}

// TestGRPCKillSwitch: disabling the rule cuts an open bidi stream: within
// a second the client sees Unavailable "credgate disabled_in_flight: ..."
// (trailers the gateway ends the stream with; before, a reset stream,
// Internal "stream terminated by RST_STREAM"), the audit line of the
// stream says disabled_in_flight, and the next call is refused
// PermissionDenied "credgate disabled: ...".
func TestGRPCKillSwitch(t *testing.T) {
	tokFile, token := writeAdminToken(t, t.TempDir())
	e, _ := startGRPCEnv(t, envOptions{ExtraConfig: fmt.Sprintf("admin:\n  token_file: %q\n", tokFile)})
	e.secrets = append(e.secrets, token)
	c := startGRPCClient(t, e, "bidi-hold", apiHost+":443")
	if s := c.next(t, "open"); s.Code != "OK" {
		t.Fatalf("open: %s %q", s.Code, s.Msg)
	}
	t0 := time.Now()
	if out, code := adminCLI(t, e, "--token-file", tokFile, "disable", "rule", "grpc-test-service", "--reason", "INC-9"); code != 0 {
		t.Fatalf("credgate admin disable: exit %d\n%s", code, out)
	}
	t1 := time.Now()
	s := c.next(t, "cut")
	took := time.Since(t0)
	t.Logf("the open stream was cut: %s %q, %s after the CLI started (it took %s)", s.Code, s.Msg, took.Round(time.Millisecond), t1.Sub(t0).Round(time.Millisecond))
	if s.Code != "Unavailable" || !strings.HasPrefix(s.Msg, "credgate disabled_in_flight: ") || took-t1.Sub(t0) >= time.Second {
		t.Errorf("the open stream: %s %q %s after the switch, want Unavailable \"credgate disabled_in_flight: ...\" within 1s", s.Code, s.Msg, took-t1.Sub(t0))
	}
	waitFor(t, 5*time.Second, "the cut stream's audit line", func() error {
		for _, a := range e.audit() {
			if a.Path == "/grpc.testing.TestService/FullDuplexCall" && a.Code == "disabled_in_flight" && a.Rule == "grpc-test-service" {
				return nil
			}
		}
		return errors.New("no FullDuplexCall line with code disabled_in_flight")
	})
	u := startGRPCClient(t, e, "unary", apiHost+":443").next(t, "unary")
	if u.Code != "PermissionDenied" || !strings.HasPrefix(u.Msg, "credgate disabled: ") {
		t.Errorf("a call after the switch: %s %q, want PermissionDenied \"credgate disabled: ...\"", u.Code, u.Msg)
	}
}

// TestGRPCUpstreamHTTP1: under upstream.http2: never the call goes to the
// gRPC server over HTTP/1.1, which it closes: the client gets Unavailable
// at once (not a hang) with a message saying gRPC needs HTTP/2 and what
// to set.
func TestGRPCUpstreamHTTP1(t *testing.T) {
	e, _ := startGRPCEnv(t, envOptions{UpstreamConfig: "  http2: never\n"})
	s := startGRPCClient(t, e, "unary", apiHost+":443").next(t, "unary")
	if s.Code != "Unavailable" || !strings.HasPrefix(s.Msg, "credgate upstream_error: ") || !strings.Contains(s.Msg, "upstream.http2 is never") || s.MS > 5000 {
		t.Errorf("under upstream.http2: never: %s %q after %dms, want Unavailable naming upstream.http2 at once", s.Code, s.Msg, s.MS)
	}
}
