//go:build linux

// Command credgate-bench measures credgate against the direct call and a
// bare goproxy MITM proxy on the same machine, in one run, and prints the
// figures issue 2 asks for; and credgate with its Redis backend (and a
// rate limit that never refuses) against credgate in memory, the figure
// issue 7 asks for. `make bench` runs it through bench/run.sh.
//
//	credgate-bench [run] [flags]   start the origin, the baseline and credgate; measure; report
//	credgate-bench soak [flags]    run credgate for a long time under a mixed load; table and verdicts (make soak)
//	credgate-bench origin ...      the local HTTPS origin (started by run)
//	credgate-bench baseline ...    the bare goproxy baseline (started by run)
//	credgate-bench floor ...       the least work any header-injecting MITM proxy does (started by run; a bound, not a proxy)
//
// Everything listens on 127.0.0.1 and stops by itself; see bench/README.md.
//
// It runs on Linux only (every file says so): it pins the load generator
// with sched_setaffinity and taskset, reads /proc, kills its peers with
// Pdeathsig and drops binaries from the page cache with fadvise, and the
// figures it reports are Linux's (docs/performance.md).
package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/credgate/credgate/bench/internal/baseline"
	"github.com/credgate/credgate/bench/internal/floor"
	"github.com/credgate/credgate/bench/internal/origin"
	"github.com/credgate/credgate/internal/testpki"
)

const (
	// originHost is the name every client asks for. It does not resolve;
	// the direct client dials the origin's address, the proxies map it
	// through their resolve maps.
	originHost = "api.origin.test"
	// tokenEnv carries the bearer token to the origin (which checks it),
	// the baseline and credgate (which inject it).
	tokenEnv = "CREDGATE_BENCH_TOKEN"
)

func main() {
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = cmdRun(args)
	case "origin":
		err = cmdOrigin(args)
	case "baseline":
		err = cmdBaseline(args)
	case "floor":
		err = cmdFloor(args)
	case "soak":
		err = cmdSoak(args)
	default:
		fmt.Fprintf(os.Stderr, "usage: credgate-bench [run|soak|origin|baseline|floor] [flags]\n")
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "credgate-bench %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func cmdOrigin(args []string) error {
	fs := flag.NewFlagSet("origin", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	caCert := fs.String("ca-cert", "", "CA certificate that signs the origin's leaf")
	caKey := fs.String("ca-key", "", "CA key")
	http1 := fs.Bool("http1", false, "offer HTTP/1.1 only (no h2)")
	introspectURL := fs.String("introspect-url", "", "OAuth2 introspection endpoint (RFC 7662) that checks the bearer tokens of requests under -introspect-prefix; the origin authenticates as -introspect-client with the secret in $"+introspectSecretEnv)
	introspectPrefix := fs.String("introspect-prefix", "/oauth2/", "path prefix whose tokens -introspect-url checks")
	introspectClient := fs.String("introspect-client", "origin", "client id of the origin at -introspect-url")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var in *origin.Introspection
	if *introspectURL != "" {
		in = &origin.Introspection{Prefix: *introspectPrefix, URL: *introspectURL, ClientID: *introspectClient, ClientSecret: os.Getenv(introspectSecretEnv)}
	}
	ca, err := testpki.LoadAuthority(*caCert, *caKey)
	if err != nil {
		return err
	}
	leaf, err := ca.Leaf(originHost)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := origin.Start(ln, origin.Config{Certificate: leaf, Token: os.Getenv(tokenEnv), HTTP1Only: *http1, Introspection: in})
	select {
	case <-s.Done():
		return s.Wait()
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return s.Close(sctx)
}

// mitmFlags are the flags the baseline and the floor share: where to
// listen, the interception CA, the upstream's CA and where the one
// destination is.
type mitmFlags struct {
	listen, caCert, caKey, upstreamCA, resolve, header *string
}

func newMITMFlags(fs *flag.FlagSet) mitmFlags {
	return mitmFlags{
		listen:     fs.String("listen", "127.0.0.1:0", "address to listen on"),
		caCert:     fs.String("ca-cert", "", "interception CA certificate"),
		caKey:      fs.String("ca-key", "", "interception CA key"),
		upstreamCA: fs.String("upstream-ca", "", "PEM bundle that verifies the upstream"),
		resolve:    fs.String("resolve", "", "host:port=addr, like curl --resolve"),
		header:     fs.String("header", "Authorization", "header to inject; its value is \"Bearer $"+tokenEnv+"\""),
	}
}

// load reads the CA and the upstream's roots and splits -resolve.
func (f mitmFlags) load() (ca *testpki.Authority, roots *x509.CertPool, resolve map[string]string, err error) {
	if ca, err = testpki.LoadAuthority(*f.caCert, *f.caKey); err != nil {
		return nil, nil, nil, err
	}
	if roots, err = testpki.ReadPool(*f.upstreamCA); err != nil {
		return nil, nil, nil, err
	}
	from, to, ok := strings.Cut(*f.resolve, "=")
	if !ok {
		return nil, nil, nil, fmt.Errorf("-resolve %q: want host:port=addr", *f.resolve)
	}
	return ca, roots, map[string]string{from: to}, nil
}

func cmdBaseline(args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	mf := newMITMFlags(fs)
	h2 := fs.Bool("upstream-h2", false, "let the upstream transport negotiate HTTP/2")
	clientH2 := fs.Bool("client-h2", false, "serve intercepted clients that offer h2 over HTTP/2 (goproxy's AllowHTTP2)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ca, roots, resolve, err := mf.load()
	if err != nil {
		return err
	}
	caPair, err := ca.TLSCertificate()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *mf.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return baseline.Serve(ctx, ln, baseline.Config{
		CA:            caPair,
		UpstreamRoots: roots,
		Resolve:       resolve,
		Header:        *mf.header,
		Value:         "Bearer " + os.Getenv(tokenEnv),
		UpstreamHTTP2: *h2,
		ClientHTTP2:   *clientH2,
		Log:           os.Stderr,
	})
}

// cmdFloor runs bench/internal/floor: CONNECT, TLS both ways and the
// header inserted into each read, nothing else. It is a bound on what any
// intercepting proxy can serve here, not a proxy (see the package doc).
func cmdFloor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	mf := newMITMFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ca, roots, resolve, err := mf.load()
	if err != nil {
		return err
	}
	p, err := floor.New(floor.Config{
		CA:            ca,
		UpstreamRoots: roots,
		Resolve:       resolve,
		Header:        *mf.header + ": Bearer " + os.Getenv(tokenEnv),
	})
	if err != nil {
		return err
	}
	// No TCP keep-alive probes on accepted connections either.
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", *mf.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return p.Serve(ctx, ln)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// childEnv is the environment for child processes: this one's, without
// proxy settings (nothing here may go through another proxy), plus the
// token.
func childEnv(token string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", tokenEnv:
			continue
		}
		env = append(env, kv)
	}
	return append(env, tokenEnv+"="+token)
}
