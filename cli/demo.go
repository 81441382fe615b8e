package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/internal/demo"
	"github.com/credgate/credgate/secret"
)

func newDemoCmd() *cobra.Command {
	var (
		once       bool
		listen     string
		originOnly bool
		originAddr string
		originCA   string
	)
	cmd := &cobra.Command{
		Use:   "demo [--once] [--listen ADDR] | demo --origin-only [--origin ADDR] [--origin-ca FILE]",
		Short: "Run the gateway in front of a local echo \"SaaS\", with nothing installed",
		Long: `Run a complete credgate on embedded defaults: a generated interception CA, a
static credential in a file, a policy, and a local HTTPS echo origin named
` + demo.Host + ` that answers with what it received (credentials masked).
Everything lives in a temporary directory that is removed on exit.

Without --once the gateway listens on 127.0.0.1:3128 (or --listen), prints
the commands to try, and runs until interrupted.

With --once it picks a free port, sends one request through the gateway as a
client that holds no credential, prints what the origin received, and exits
0 only if the origin got the credential the gateway injected.

With --origin-only it runs no gateway: only the echo origin, on
127.0.0.1:8443 (or --origin), with a new CA whose certificate it writes to
origin-ca.pem (or --origin-ca). The Quickstart points its own gateway at it
to work offline (see README.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if originOnly {
				if once || listen != "" {
					return errors.New("demo: --origin-only runs no gateway; drop --once and --listen")
				}
				return runOrigin(cmd.Context(), cmd.OutOrStdout(), originAddr, originCA)
			}
			if listen == "" {
				listen = "127.0.0.1:3128"
				if once {
					listen = "127.0.0.1:0"
				}
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), listen, once)
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "send one request through the gateway, report, and exit (0 = credential injected)")
	cmd.Flags().StringVar(&listen, "listen", "", "proxy listen address (default 127.0.0.1:3128; a free port with --once)")
	cmd.Flags().BoolVar(&originOnly, "origin-only", false, "run only the local echo origin "+demo.Host+" (for the Quickstart), no gateway")
	cmd.Flags().StringVar(&originAddr, "origin", "127.0.0.1:8443", "with --origin-only: the origin's listen address")
	cmd.Flags().StringVar(&originCA, "origin-ca", "origin-ca.pem", "with --origin-only: where to write the origin's CA certificate (for upstream.ca_bundle)")
	return cmd
}

func runDemo(ctx context.Context, stdout, stderr io.Writer, listen string, once bool) (err error) {
	env, err := demo.Setup(ctx, demo.Options{Listen: listen})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := env.Close(cctx); cerr != nil && err == nil {
			err = cerr
		}
	}()

	cfg, err := gateway.LoadConfig(env.ConfigPath)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	logger, err := newLogger(stderr, "warn")
	if err != nil {
		return err
	}
	if !once {
		return serve(ctx, cfg, gateway.Options{Logger: logger, Audit: &lockedWriter{w: stdout}}, func(gw *gateway.Gateway) {
			printDemoHelp(stdout, env, gw)
		})
	}

	// --once: run the gateway until the one request is done.
	auditBuf := new(bytes.Buffer)
	audit := &lockedWriter{w: auditBuf}
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer routeLibraryLog(gateway.LibraryLogTo(logger, slog.LevelWarn))()
	gw, err := gateway.New(gctx, cfg, gateway.Options{Logger: logger, Audit: audit})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	log.SetOutput(gw.LibraryLog(slog.LevelWarn))
	errc := make(chan error, 1)
	go func() { errc <- gw.Run(gctx) }()
	select {
	case <-gw.Ready():
	case err := <-errc:
		return fmt.Errorf("demo: gateway: %w", err)
	}

	proxyURL := "http://" + gw.ProxyAddr().String()
	target := "https://" + demo.Host + "/v1/hello"
	fmt.Fprintf(stdout, "credgate demo: gateway %s, origin %s at %s, files in %s\n",
		proxyURL, demo.Host, env.Origin.Addr(), env.Dir)
	fmt.Fprintf(stdout, "client (holds no credential): GET %s via %s\n", target, proxyURL)

	status, body, reqErr := demoRequest(ctx, proxyURL, env.CACert, target)
	var echoBody []byte
	if reqErr == nil {
		// An endpoint that echoes the credential: the gateway scrubs it.
		_, echoBody, reqErr = demoRequest(ctx, proxyURL, env.CACert, "https://"+demo.Host+"/v1/echo")
	}

	cancel()
	if rerr := <-errc; rerr != nil && reqErr == nil {
		reqErr = fmt.Errorf("gateway: %w", rerr)
	}
	if reqErr != nil {
		return &exitCode{code: exitError, err: fmt.Errorf("demo: %w", reqErr)}
	}
	fmt.Fprintf(stdout, "gateway answered: %s\n", status)
	fmt.Fprintf(stdout, "origin received:\n%s", body)
	// The gateway has stopped: nothing writes to auditBuf any more.
	if auditBuf.Len() > 0 {
		fmt.Fprintf(stdout, "audit: %s", auditBuf.Bytes())
	}
	last := env.Origin.Last()
	if last == nil || !last.CredentialInjected {
		fmt.Fprintln(stdout, "FAIL: the origin did not receive the injected credential")
		return &exitCode{code: exitError, reported: true}
	}
	fmt.Fprintf(stdout, "ok: the origin received %s, injected by the gateway; the client never held it\n",
		last.Headers["Authorization"])
	fmt.Fprintf(stdout, "client (holds no credential): GET https://%s/v1/echo, an endpoint that echoes the credential back:\n%s", demo.Host, echoBody)
	token, err := os.ReadFile(env.CredentialFile)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if t := strings.TrimSpace(string(token)); t == "" || bytes.Contains(echoBody, []byte(t)) || !bytes.Contains(echoBody, []byte(secret.Redacted)) {
		fmt.Fprintln(stdout, "FAIL: the echoed credential reached the client unscrubbed")
		return &exitCode{code: exitError, reported: true}
	}
	fmt.Fprintf(stdout, "ok: the gateway scrubbed the echoed credential (%s) before the client saw it\n", secret.Redacted)
	return nil
}

// runOrigin serves only the echo origin until ctx is done or SIGINT or
// SIGTERM arrives.
func runOrigin(ctx context.Context, stdout io.Writer, addr, caFile string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := demo.StartOrigin(addr, caFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `credgate demo --origin-only: %[1]s is served at %[2]s (a local echo "SaaS"; Ctrl-C stops it)
its CA certificate: %[3]s (new on every start)

A gateway reaches it with, in its config:
  upstream: {ca_bundle: %[3]s}
  resolve: {"%[1]s:443": "%[2]s"}
and, in its policy, a destination with hosts: [%[1]s] and allow_private: true.
`, demo.Host, o.Addr(), caFile)
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return o.Close(cctx)
}

// demoRequest sends one GET through the gateway the way an application
// does: a proxy URL and the gateway CA, and no credential.
func demoRequest(ctx context.Context, proxyURL, caFile, target string) (status string, body []byte, err error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return "", nil, err
	}
	roots, err := cabundle.AddRoots(x509.NewCertPool(), pem)
	if err != nil {
		return "", nil, fmt.Errorf("the gateway CA %s: %w", caFile, err)
	}
	pu, err := url.Parse(proxyURL)
	if err != nil {
		return "", nil, err
	}
	tr := &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		// A deny or an error from the gateway: show it as it came.
		return resp.Status, body, nil
	}
	var e demo.Echo
	if err := json.Unmarshal(body, &e); err != nil {
		return "", nil, errors.New("origin answered something other than its echo JSON")
	}
	return resp.Status, body, nil
}

func printDemoHelp(w io.Writer, env *demo.Env, gw *gateway.Gateway) {
	proxy := "http://" + gw.ProxyAddr().String()
	url := "https://" + demo.Host + "/v1/hello"
	fmt.Fprintf(w, `credgate demo is running.

  gateway     %[1]s  (admin: http://%[2]s/metrics)
  origin      https://%[3]s -> %[4]s  (a local echo "SaaS"; not in DNS, the gateway resolves it)
  files       %[5]s  (removed on exit)
  policy      workload "local" (127.0.0.0/8) may GET/POST %[3]s/v1/*; the gateway injects a bearer token

Try it (the client holds no credential; the origin echoes what it received, masked):

  curl --proxy %[1]s --cacert %[6]s %[7]s

An endpoint that echoes the credential back shows it scrubbed ([REDACTED]):

  curl --proxy %[1]s --cacert %[6]s https://%[3]s/v1/echo

A path no rule allows is refused with 403 and a reason:

  curl -i --proxy %[1]s --cacert %[6]s https://%[3]s/admin

Applications use the usual environment variables:

  HTTPS_PROXY=%[1]s SSL_CERT_FILE=%[6]s python3 -c 'import urllib.request; print(urllib.request.urlopen("%[7]s").read().decode())'
  HTTPS_PROXY=%[1]s CURL_CA_BUNDLE=%[6]s curl -s %[7]s

A Go program (net/http) honours HTTPS_PROXY and SSL_CERT_FILE the same way;
Node needs NODE_USE_ENV_PROXY=1 and NODE_EXTRA_CA_CERTS (docs/clients.md).

Audit lines follow, one per request. Press Ctrl-C to stop.
`, proxy, gw.AdminAddr(), demo.Host, env.Origin.Addr(), env.Dir, env.CACert, url)
}

// lockedWriter serialises writes from several goroutines (the demo's
// gateway; credgate run's command and relay).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
