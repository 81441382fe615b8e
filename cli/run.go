package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/runrelay"
)

// DefaultNoProxy is credgate run's NO_PROXY: this machine, which the
// gateway would refuse anyway unless a rule names it.
const DefaultNoProxy = "localhost,127.0.0.1,::1"

// runOptions are the flags of credgate run.
type runOptions struct {
	config   string
	gateway  string
	workload string
	ttl      time.Duration
	ca       string
	noProxy  string
	printEnv bool
	format   string
	by       string
	// relay: the command's proxy is a relay of credgate run's on
	// 127.0.0.1 that adds the token (runrelay); false: the gateway
	// itself, with the token in the proxy URL.
	relay bool
	// gatewayRootsFile: more PEM roots for an https:// gateway's certificate.
	gatewayRootsFile string
	// gatewayCert and gatewayKey: the client certificate the relay
	// presents to an https:// gateway (the mtls factor).
	gatewayCert, gatewayKey string
}

func newRunCmd() *cobra.Command {
	o := &runOptions{}
	ac := &adminClient{}
	var adminURL string
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARGS...]",
		Short: "Run a command with the proxy, the gateway CA and a run token set for every common client",
		Long: `Run COMMAND with everything a client needs to go through the gateway:
HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY (and lower case; every other
*_proxy variable it inherits is pointed at the gateway too), a CA bundle of
the system roots plus the gateway CA for curl, Python, Node, Go, the AWS
SDKs, git, pip and npm,
a Java trust store, git's http.proxy, and Node's proxy support.

With --workload NAME the gateway issues a short-lived token naming that
workload (admin API, run_tokens in the gateway config), so the jwt factor
identifies the command, and it is revoked when the command exits. The
command does not get the token: its proxy is a relay credgate run serves
on 127.0.0.1 for as long as the command runs, which adds the token to
each connection it forwards to the gateway (over TLS to the gateway's
tls_listen with --gateway https://HOST:PORT, presenting --gateway-cert
there when given) and admits only clients that present the per-run secret
in its proxy URL, or, on Linux, that send no proxy credentials from a
socket the command or one of its descendants holds (Java); not other
processes of this user, nor the other containers of a Kubernetes pod.
--relay=false gives the command the gateway itself, with the token in the proxy URL, as before. The command's exit code is credgate run's
(127/126 when it is not found or cannot be executed); SIGINT, SIGTERM,
SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGALRM are passed on to it.

  credgate run -c credgate.yaml --workload agent -- python3 agent.py
  eval "$(credgate run --print-env --workload ci)"        # a shell or CI job
  credgate run --print-env --format=github >> "$GITHUB_ENV"

With --print-env there is no relay (nothing stays to serve it): the token
is in the printed proxy URL, the files stay (in the printed directory) and
the token is not revoked: it expires after its TTL.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.printEnv {
				if len(args) > 0 {
					return errors.New("run: --print-env prints the variables and runs nothing; drop the command")
				}
				return nil
			}
			if len(args) == 0 {
				return errors.New("run: name the command to run after --, e.g. credgate run -- curl https://api.example.com")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, ac, adminURL, args)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.StringVarP(&o.config, "config", "c", os.Getenv("CREDGATE_CONFIG"), "the gateway config: its listen, admin_listen and ca.cert are the defaults of --gateway, --admin and --ca (env CREDGATE_CONFIG)")
	fl.StringVar(&o.gateway, "gateway", os.Getenv("CREDGATE_GATEWAY"), "the gateway's proxy URL (default: the config's listen, else http://127.0.0.1:3128; env CREDGATE_GATEWAY)")
	fl.StringVar(&o.workload, "workload", os.Getenv("CREDGATE_WORKLOAD"), "ask the gateway for a run token naming this workload (needs run_tokens and the admin token); none: the command is identified by its other factors")
	fl.DurationVar(&o.ttl, "ttl", 0, "the run token's lifetime (default the gateway's run_tokens.ttl, 15m; at most run_tokens.max_ttl)")
	fl.StringVar(&o.ca, "ca", "", "the gateway's interception CA certificate (default: the config's ca.cert, else GET /admin/v1/ca.pem from the admin listener)")
	fl.StringVar(&o.noProxy, "no-proxy", DefaultNoProxy, "NO_PROXY for the command")
	fl.BoolVar(&o.printEnv, "print-env", false, "print the variables instead of running a command (files kept, token not revoked)")
	fl.StringVar(&o.format, "format", "shell", "with --print-env: shell (export K='V') or github (K=V lines for $GITHUB_ENV)")
	fl.BoolVar(&o.relay, "relay", true, "give the command a relay on 127.0.0.1 that adds the token (the command never holds it); false: the gateway itself, the token in the proxy URL (--print-env always)")
	fl.StringVar(&o.gatewayRootsFile, "gateway-ca", "", "PEM CA certificates that may sign an https:// gateway's certificate (tls_listen's tls.cert), beside the system roots and the gateway CA")
	fl.StringVar(&o.gatewayCert, "gateway-cert", os.Getenv("CREDGATE_GATEWAY_CERT"), "client certificate (PEM) the relay presents to an https:// gateway whose workload requires the mtls factor; re-read when it changes (env CREDGATE_GATEWAY_CERT)")
	fl.StringVar(&o.gatewayKey, "gateway-key", os.Getenv("CREDGATE_GATEWAY_KEY"), "the --gateway-cert certificate's key (PEM; env CREDGATE_GATEWAY_KEY)")
	fl.StringVar(&o.by, "by", defaultOperator(), "who asks for the token (logged by the gateway; declared, not verified)")
	fl.StringVar(&adminURL, "admin", os.Getenv("CREDGATE_ADMIN_URL"), "the gateway's admin URL (default: the config's admin_listen, else http://"+gateway.DefaultAdminListen+"; env CREDGATE_ADMIN_URL)")
	fl.StringVar(&ac.tokenFile, "token-file", os.Getenv("CREDGATE_ADMIN_TOKEN_FILE"), "file holding the admin token (env CREDGATE_ADMIN_TOKEN_FILE; or the token itself in CREDGATE_ADMIN_TOKEN)")
	fl.DurationVar(&ac.timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
	fl.StringVar(&ac.caCert, "cacert", os.Getenv("CREDGATE_ADMIN_CACERT"), "PEM roots for an https admin URL (env CREDGATE_ADMIN_CACERT)")
	fl.StringVar(&ac.cert, "cert", os.Getenv("CREDGATE_ADMIN_CERT"), "client certificate (PEM) for an admin listener with admin.tls.client_ca (env CREDGATE_ADMIN_CERT)")
	fl.StringVar(&ac.key, "key", os.Getenv("CREDGATE_ADMIN_KEY"), "the client certificate's key (PEM; env CREDGATE_ADMIN_KEY)")
	return cmd
}

// run is credgate run.
func (o *runOptions) run(cmd *cobra.Command, ac *adminClient, adminURL string, args []string) error {
	if o.format != "shell" && o.format != "github" {
		return fmt.Errorf("run: --format %q: use shell or github", o.format)
	}
	var cfg *gateway.Config
	if o.config != "" {
		c, err := gateway.LoadConfig(o.config)
		if err != nil {
			return err
		}
		cfg = c
	}
	proxy, err := o.proxyURL(cfg)
	if err != nil {
		return err
	}
	relay := o.relay && !o.printEnv
	if proxy.Scheme == "https" && !relay {
		return fmt.Errorf("run: --gateway %s is the gateway's tls_listen, which only credgate run's relay speaks to (clients take http:// proxy URLs); run the command under credgate run without --relay=false or --print-env, or name the gateway's plain listen", proxy)
	}
	if (o.gatewayCert == "") != (o.gatewayKey == "") {
		return errors.New("run: --gateway-cert and --gateway-key go together (env CREDGATE_GATEWAY_CERT, CREDGATE_GATEWAY_KEY): pass both")
	}
	if o.gatewayCert != "" && (proxy.Scheme != "https" || !relay) {
		return fmt.Errorf("run: --gateway-cert is presented by credgate run's relay to an https:// gateway (its tls_listen); --gateway %s is not one, or there is no relay (--relay=false, --print-env)", proxy)
	}
	var gatewayRoots []byte
	if o.gatewayRootsFile != "" {
		if gatewayRoots, err = cfgfile.Read(o.gatewayRootsFile); err != nil {
			return fmt.Errorf("run: --gateway-ca: %w", err)
		}
		if len(parseCerts(gatewayRoots)) == 0 {
			return fmt.Errorf("run: --gateway-ca %s holds no PEM certificate", o.gatewayRootsFile)
		}
	}
	if adminURL == "" {
		adminURL = "http://" + gateway.DefaultAdminListen
		if cfg != nil {
			adminURL = adminURLOf(cfg)
		}
	}
	if ac.base, err = parseAdminURL(adminURL); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if ac.transport, err = ac.newTransport(); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	// From here on a signal does not end credgate run by its default
	// action: before the command starts it ends the setup (the token
	// revoked if there is one, the files removed) with 128+N, after it is
	// passed on to the command.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	ctx, setupDone := setupSignals(cmd.Context(), sigs)
	defer setupDone()
	interrupted := func(err error) error {
		if s := setupDone(); s != nil {
			return signalExit(s)
		}
		return err
	}
	caPEM, err := o.gatewayCA(ctx, cfg, ac)
	if err != nil {
		return interrupted(err)
	}
	dir, err := os.MkdirTemp("", "credgate-run-")
	if err == nil {
		err = os.Chmod(dir, 0o700)
	}
	if err != nil {
		return fmt.Errorf("run: private directory: %w (set TMPDIR to a writable directory)", err)
	}
	keep := false // --print-env keeps the files once it has printed them
	defer func() {
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}()
	sys, _ := systemRoots(os.Getenv)
	if sys == nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "credgate run: warning: no system root bundle found; the command trusts the gateway CA only")
	}
	files, err := writeRunFiles(dir, sys, caPEM)
	if err != nil {
		return err
	}
	// The token last: nothing that can fail before the command starts
	// (a command not found among them) leaves one issued and not revoked.
	if !o.printEnv {
		if _, err := exec.LookPath(args[0]); err != nil {
			return notStarted(args[0], err)
		}
	}
	var tok *gateway.RunTokenResponse
	if o.workload != "" {
		if tok, err = o.issue(ctx, ac); err != nil {
			return interrupted(err)
		}
		if !relay {
			proxy.User = url.UserPassword("token", tok.Token)
		}
		if proxy.Scheme == "http" && !loopbackHost(proxy.Hostname()) {
			fmt.Fprintf(cmd.ErrOrStderr(), "credgate run: warning: the run token goes to the gateway at %s in clear text (an http:// proxy URL), on every connection the command opens; anyone on that path can take it until it expires or is revoked: name the gateway's tls_listen (--gateway https://HOST:PORT), or give workload %s cidrs (docs/agents.md)\n", proxy.Host, o.workload)
		}
	}
	if s := setupDone(); s != nil {
		if tok != nil {
			o.revoke(ac, tok, cmd.ErrOrStderr())
		}
		return signalExit(s)
	}
	closeRelay := func() {}
	var started func(pid int)
	// The command's stderr and the relay's messages: one writer, locked
	// where it is not a file (exec copies to it from a goroutine).
	stderr := cmd.ErrOrStderr()
	if _, ok := stderr.(*os.File); !ok {
		stderr = &lockedWriter{w: stderr}
	}
	env := runEnv{Proxy: proxy, NoProxy: o.noProxy, Files: files, Workload: o.workload}
	if relay {
		token := ""
		if tok != nil {
			token = tok.Token
		}
		roots := x509.NewCertPool()
		for _, c := range parseCerts(slices.Concat(sys, []byte("\n"), caPEM, []byte("\n"), gatewayRoots)) {
			roots.AddCert(c)
		}
		rl, err := runrelay.Start(cmd.Context(), runrelay.Config{Gateway: proxy, Roots: roots, Token: token, Log: stderr,
			ClientCert: o.gatewayCert, ClientKey: o.gatewayKey, Descendants: true})
		if err != nil {
			if tok != nil {
				o.revoke(ac, tok, cmd.ErrOrStderr())
			}
			return fmt.Errorf("run: %w", err)
		}
		defer rl.Close()
		env.Proxy = rl.URL()
		// Java sends no proxy credentials (docs/agents.md): on Linux the
		// relay admits it as one of the command's processes
		// (Descendants, from started's SetCommand); elsewhere it keeps
		// the plain gateway, as before, without the token.
		if !runrelay.DescendantsSupported && proxy.Scheme == "http" {
			env.JavaProxy = proxy
		}
		closeRelay = func() { _ = rl.Close() }
		started = rl.SetCommand
	}
	base, adminVars := withoutAdminCredentials(os.Environ())
	vars := env.vars(base)
	if o.printEnv {
		fmt.Fprintf(cmd.ErrOrStderr(), "credgate run: files in %s (kept; remove them when done)", dir)
		if tok != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "; the token for %s is not revoked and expires at %s", tok.Workload, tok.Expires.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(cmd.ErrOrStderr())
		keep = true
		if err := printUnset(cmd.OutOrStdout(), o.format, adminVars); err != nil {
			return err
		}
		return printEnv(cmd.OutOrStdout(), o.format, vars)
	}
	code, err := runChildSignals(cmd.Context(), sigs, args, mergeEnv(base, vars), cmd.InOrStdin(), cmd.OutOrStdout(), stderr, started)
	// The relay dies with the command: what the command left running
	// loses the gateway with it, then the token is revoked.
	closeRelay()
	if tok != nil {
		o.revoke(ac, tok, cmd.ErrOrStderr())
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitCode{code: code, reported: true}
	}
	return nil
}

// proxyURL is --gateway, else the config's listen, else the default.
func (o *runOptions) proxyURL(cfg *gateway.Config) (*url.URL, error) {
	s := o.gateway
	if s == "" {
		listen := gateway.DefaultListen
		if cfg != nil && cfg.Listen != "" {
			listen = cfg.Listen
		}
		s = "http://" + localAddr(listen)
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("run: --gateway %q is not a proxy URL such as http://127.0.0.1:3128 (the gateway's listen) or https://gw.example.com:3129 (its tls_listen)", o.gateway)
	}
	u.Path, u.User = "", nil
	return u, nil
}

// loopbackHost reports whether host (a proxy URL's, without brackets)
// is this machine: localhost or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// localAddr turns a listen address into one to connect to: an empty or
// wildcard host becomes 127.0.0.1.
func localAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// adminURLOf is the admin URL of a gateway config.
func adminURLOf(cfg *gateway.Config) string {
	scheme := "http"
	if cfg.Admin.TLS.Cert != "" {
		scheme = "https"
	}
	return scheme + "://" + localAddr(cfg.AdminListen)
}

// gatewayCA reads --ca, else the config's ca.cert, else asks the admin
// listener.
func (o *runOptions) gatewayCA(ctx context.Context, cfg *gateway.Config, ac *adminClient) ([]byte, error) {
	file := o.ca
	if file == "" && cfg != nil {
		file = cfg.CA.Cert
	}
	if file != "" {
		b, err := cfgfile.Read(file)
		if err != nil {
			return nil, fmt.Errorf("run: the gateway CA: %w (pass --ca FILE, the gateway's ca.cert)", err)
		}
		return b, nil
	}
	b, err := ac.get(ctx, "/admin/v1/ca.pem")
	if err != nil {
		return nil, fmt.Errorf("run: the gateway CA: %w (or pass --ca FILE, the gateway's ca.cert)", err)
	}
	return b, nil
}

// issue asks the admin API for a run token.
func (o *runOptions) issue(ctx context.Context, ac *adminClient) (*gateway.RunTokenResponse, error) {
	req := gateway.RunTokenRequest{Workload: o.workload, By: o.by}
	if o.ttl > 0 {
		req.TTL = o.ttl.String()
	}
	body, _ := json.Marshal(req)
	var resp gateway.RunTokenResponse
	if _, err := ac.call(ctx, http.MethodPost, "/admin/v1/run-tokens", body, true, &resp); err != nil {
		return nil, fmt.Errorf("run: token for workload %q: %w", o.workload, err)
	}
	if resp.Token == "" {
		return nil, fmt.Errorf("run: token for workload %q: the admin API answered without a token", o.workload)
	}
	return &resp, nil
}

// revoke revokes the run token; a failure is a warning (the token still
// expires at its exp).
func (o *runOptions) revoke(ac *adminClient, tok *gateway.RunTokenResponse, stderr io.Writer) {
	// A fresh context: the command's may be cancelled by the signal that
	// ended the child.
	ctx, cancel := context.WithTimeout(context.Background(), ac.timeout)
	defer cancel()
	body, _ := json.Marshal(gateway.RunTokenRevokeRequest{Token: tok.Token})
	var resp gateway.RunTokenRevokeResponse
	if _, err := ac.call(ctx, http.MethodPost, "/admin/v1/run-tokens/revoke", body, true, &resp); err != nil {
		fmt.Fprintf(stderr, "credgate run: warning: the token for %s was not revoked: %v; it expires at %s\n", tok.Workload, err, tok.Expires.UTC().Format(time.RFC3339))
	}
}

// setupSignals returns ctx cancelled at the first signal of sigs, and
// done, which ends the watch and returns that signal (nil when none came;
// later signals stay in sigs). done may be called more than once.
func setupSignals(ctx context.Context, sigs <-chan os.Signal) (context.Context, func() os.Signal) {
	ctx, cancel := context.WithCancel(ctx)
	quit, exited := make(chan struct{}), make(chan struct{})
	var got os.Signal
	go func() {
		defer close(exited)
		select {
		case got = <-sigs:
			cancel()
		case <-quit:
		}
	}()
	var once sync.Once
	return ctx, func() os.Signal {
		once.Do(func() { close(quit); <-exited; cancel() })
		return got
	}
}

// signalExit is the exit of credgate run ended by signal s before the
// command started: 128+N, as a shell's.
func signalExit(s os.Signal) error {
	code := exitError
	if n, ok := s.(syscall.Signal); ok {
		code = 128 + int(n)
	}
	return &exitCode{code: code, err: fmt.Errorf("run: %v before the command started; nothing was run", s)}
}

// Exit codes of a command that did not start, as a POSIX shell's.
const (
	exitNotExecutable = 126
	exitNotFound      = 127
)

// runChild runs args with env, passing forwardedSignals on, and returns
// its exit code (128+N when a signal N ended it). A command that does not
// start is an *exitCode of 127 (not found) or 126 (found, not
// executable), as a shell's.
func runChild(ctx context.Context, args, env []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	return runChildSignals(ctx, sigs, args, env, stdin, stdout, stderr, nil)
}

// runChildSignals is runChild passing on the signals of sigs, which the
// caller registered with signal.Notify, and calling started (when not
// nil) with the command's process ID once it has started, before
// waiting for it.
func runChildSignals(ctx context.Context, sigs <-chan os.Signal, args, env []string, stdin io.Reader, stdout, stderr io.Writer, started func(pid int)) (int, error) {
	path, err := exec.LookPath(args[0])
	if err != nil {
		return 0, notStarted(args[0], err)
	}
	c := exec.Command(path, args[1:]...)
	c.Args[0] = args[0]
	c.Env = env
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	if err := c.Start(); err != nil {
		return 0, notStarted(args[0], err)
	}
	if started != nil {
		started(c.Process.Pid)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = c.Process.Signal(s)
			case <-ctx.Done():
				_ = c.Process.Signal(syscall.SIGTERM)
				return
			case <-done:
				return
			}
		}
	}()
	err = c.Wait()
	close(done)
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0, fmt.Errorf("run: %s: %w", args[0], err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ee.ExitCode(), nil
}

// notStarted is the error of a command that could not be started: 127
// when there is no such file (or its #! interpreter is missing), 126 when
// it is there but cannot be executed (permissions, a directory, a script
// without #!).
func notStarted(name string, err error) error {
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return &exitCode{code: exitNotFound, err: fmt.Errorf("run: %s: command not found in $PATH (%w)", name, err)}
	case errors.Is(err, fs.ErrNotExist):
		return &exitCode{code: exitNotFound, err: fmt.Errorf("run: %s: no such file, or its #! interpreter is missing: %w", name, err)}
	case errors.Is(err, syscall.ENOEXEC):
		return &exitCode{code: exitNotExecutable, err: fmt.Errorf("run: %s: cannot execute: not a binary this system runs, nor a script starting with #!: %w", name, err)}
	}
	// Permissions, a directory (EISDIR), a binary in the current
	// directory that $PATH names as "." (exec.ErrDot), anything else.
	return &exitCode{code: exitNotExecutable, err: fmt.Errorf("run: %s: cannot execute: %w", name, err)}
}
