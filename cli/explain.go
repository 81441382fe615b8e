package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/identity/runtoken"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/batch"
	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/killswitch"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
)

func newExplainCmd() *cobra.Command {
	var (
		configPath   string
		source       string
		workloadLess bool
		certFile     string
		tokenFile    string
		headers      []string
		data, binary string
	)
	cmd := &cobra.Command{
		Use:   "explain -c FILE [--source IP | --workload-less] METHOD URL",
		Short: "Show what the policy decides for one request, and why",
		Long: `Show what the gateway would decide for METHOD URL from a client at --source
(default 127.0.0.1): the workload the source address resolves to, the CONNECT
decision (https URLs), the request decision, the rule, destination, code and
reason, and which credential and injector would apply. No credential is
fetched and no value is printed.

FILE is a gateway config or a policy. --workload-less asks for an anonymous
caller (no verified factor).

With a gateway config, the other factors can be presented too and are
verified exactly as the gateway would: --cert FILE is a client certificate
(PEM, leaf first, then intermediates) as the TLS listener would receive it,
verified against tls.client_ca or identity.mtls.bundles; --token-file FILE
holds a token as sent in Proxy-Authorization (JWT or Kubernetes
TokenReview; "-" reads it from standard input). The output says which
factors verified and which workload they resolved to; the token itself is
never printed.

--data-binary DATA (or @FILE, @- for standard input) is the request body,
as curl takes it; -d/--data too, with curl's rule that @FILE loses its CR
and LF bytes. A request an inject rule admits to a batch endpoint (Graph or
OData $batch, a Salesforce composite resource or Connect batch, Google's
/batch) has its body judged as the gateway judges it: each sub-request's
verdict is printed, and the batch is refused for the first one refused.

Exit 0 when the request would be allowed (inject, forward or tunnel), 3 when
it would be denied, 1 on errors.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" {
				return fmt.Errorf("explain: -c FILE is required")
			}
			if workloadLess && (cmd.Flags().Changed("source") || certFile != "" || tokenFile != "") {
				return fmt.Errorf("explain: --workload-less and --source, --cert or --token-file exclude each other")
			}
			l, err := load(cmd.Context(), configPath)
			if err != nil {
				return err
			}
			defer l.policy.Close()
			pres, err := presented(cmd.InOrStdin(), l, certFile, tokenFile)
			if err != nil {
				return err
			}
			header, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			body, err := readBody(cmd.InOrStdin(), data, binary, tokenFile == "-")
			if err != nil {
				return err
			}
			ex, err := explain(cmd.Context(), l, pres, source, workloadLess, args[0], args[1], header, body)
			if err != nil {
				return err
			}
			ex.print(cmd.OutOrStdout())
			// A request observe mode lets through is still one the
			// policy refuses: exit as denied, so a script checking the
			// policy is not fooled by observe mode.
			if !ex.Allowed || ex.Decision.WouldDeny {
				return &exitCode{code: exitDenied, reported: true}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "gateway config or policy file (YAML)")
	cmd.Flags().StringVar(&source, "source", "127.0.0.1", "client IP address the request comes from")
	cmd.Flags().BoolVar(&workloadLess, "workload-less", false, "ask for an anonymous caller with no verified factor")
	cmd.Flags().StringVar(&certFile, "cert", "", "client certificate chain (PEM) presented on the TLS listener; needs a gateway config")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "a request header field, \"Name: value\" (repeatable), as the client sends it: when: conditions, method overrides and placeholders see it")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the token sent in Proxy-Authorization (- for stdin); needs a gateway config")
	cmd.Flags().StringVar(&binary, "data-binary", "", "the request body, exactly as sent: DATA, @FILE or @- (stdin), as curl --data-binary; a batch's sub-requests are judged")
	cmd.Flags().StringVarP(&data, "data", "d", "", "the request body as curl -d sends it: DATA, or @FILE / @- with its CR and LF bytes removed")
	return cmd
}

// readBody reads the body of --data (curl -d: @FILE loses its CR and LF
// bytes) or --data-binary (exactly as given): DATA, @FILE or @- (stdin,
// which --token-file - may not share). At most batch.MaxBody+1 bytes are
// read from a file: a larger body is refused by the gateway whatever
// follows. nil when neither is set.
func readBody(stdin io.Reader, data, binary string, stdinTaken bool) ([]byte, error) {
	if data != "" && binary != "" {
		return nil, fmt.Errorf("explain: --data and --data-binary exclude each other (give the body once)")
	}
	arg, strip := binary, false
	if data != "" {
		arg, strip = data, true
	}
	name, fromFile := strings.CutPrefix(arg, "@")
	if !fromFile {
		if arg == "" {
			return nil, nil
		}
		return []byte(arg), nil
	}
	var r io.Reader
	switch {
	case name == "-" && stdinTaken:
		return nil, fmt.Errorf("explain: the body and --token-file cannot both be read from standard input")
	case name == "-":
		r = stdin
	default:
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("explain: body: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, batch.MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("explain: body %s: %w", arg, err)
	}
	if strip {
		b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r"), nil), []byte("\n"), nil)
	}
	return b, nil
}

// parseHeaders reads --header values, "Name: value" as curl -H takes them.
func parseHeaders(hs []string) (http.Header, error) {
	h := http.Header{}
	for _, f := range hs {
		name, value, ok := strings.Cut(f, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || !httpguts.ValidHeaderFieldName(name) {
			return nil, fmt.Errorf("explain: --header %q: want \"Name: value\", with a valid field name", f)
		}
		if strings.EqualFold(name, "Host") {
			return nil, fmt.Errorf("explain: --header %q: the URL names the host; the gateway takes the authority from the CONNECT target or the absolute URI, not from a Host field", f)
		}
		value = strings.TrimSpace(value)
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil, fmt.Errorf("explain: --header %q: the value holds a control character", f)
		}
		h.Add(name, value)
	}
	return h, nil
}

// presentation is what a simulated client presents beside its address.
type presentation struct {
	certs []*x509.Certificate
	token string
}

// presented reads --cert and --token-file.
func presented(stdin io.Reader, l *loaded, certFile, tokenFile string) (presentation, error) {
	var p presentation
	if certFile == "" && tokenFile == "" {
		return p, nil
	}
	if l.config == nil {
		return p, fmt.Errorf("explain: --cert and --token-file need the gateway config (-c credgate.yaml), which holds the identity settings")
	}
	if certFile != "" {
		data, err := os.ReadFile(certFile)
		if err != nil {
			return p, fmt.Errorf("explain: --cert: %w", err)
		}
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return p, fmt.Errorf("explain: --cert %s: %w", certFile, err)
			}
			p.certs = append(p.certs, c)
		}
		if len(p.certs) == 0 {
			return p, fmt.Errorf("explain: --cert %s holds no PEM certificate", certFile)
		}
	}
	if tokenFile != "" {
		var data []byte
		var err error
		if tokenFile == "-" {
			data, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
		} else {
			data, err = os.ReadFile(tokenFile)
		}
		if err != nil {
			return p, fmt.Errorf("explain: --token-file: %w", err)
		}
		p.token = strings.TrimSpace(string(data))
		if p.token == "" {
			return p, fmt.Errorf("explain: --token-file %s is empty", tokenFile)
		}
	}
	return p, nil
}

// explanation is everything explain prints: the gateway's Explanation
// of the request and the request as asked.
type explanation struct {
	*gateway.Explanation
	method string
	target string // what was asked, normalised
	scheme string
	// switches says which kill switch state was consulted ("" when no
	// gateway config was given).
	switches string
}

// explain decides METHOD URL as the gateway would, with the gateway's
// own decision sequence (gateway.Judge.Explain): explain only presents
// the request and prints the answer.
func explain(ctx context.Context, l *loaded, pres presentation, source string, anonymous bool, method, rawURL string, header http.Header, body []byte) (*explanation, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("explain: URL: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return nil, fmt.Errorf("explain: URL %q: scheme must be https or http", rawURL)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return nil, fmt.Errorf("explain: URL %q has no host", rawURL)
	}
	port := 443
	if scheme == "http" {
		port = 80
	}
	if p := u.Port(); p != "" {
		port, err = strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("explain: URL %q: bad port %q", rawURL, p)
		}
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	method = strings.ToUpper(method)

	ev, ids, done, err := resolver(ctx, l, pres, source, anonymous)
	if err != nil {
		return nil, err
	}
	defer done()
	j := gateway.Judge{Policy: l.policy, Identity: ids, Config: l.config}
	var switches string
	if l.config != nil {
		j.Switches, switches, err = switchState(l.config)
		if err != nil {
			return nil, err
		}
		if j.Issuer, err = l.config.Issuer(); err != nil {
			return nil, fmt.Errorf("explain: %w", err)
		}
	}
	gx, err := j.Explain(ctx, gateway.Probe{Evidence: ev, Method: method, URL: rawURL, Header: header, Body: body})
	if err != nil {
		return nil, err
	}
	return &explanation{Explanation: gx, method: method, scheme: scheme, switches: switches,
		target: scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path}, nil
}

// switchState reads the kill switch state a gateway of cfg starts with:
// admin.state_file, which is the state in force on a gateway without
// cache.redis. With Redis the fleet's state is in Redis, which explain
// does not contact: the file is then what this replica last saw.
func switchState(cfg *gateway.Config) (*killswitch.Snapshot, string, error) {
	if cfg.Admin.StateFile == "" {
		if len(cfg.Cache.Redis.Addrs) > 0 {
			return nil, "not consulted: the switches are in Redis (cache.redis), which explain does not contact; credgate admin list shows them", nil
		}
		return nil, "not known: without admin.state_file or cache.redis a switch lives only in the running gateway's memory; credgate admin list shows them", nil
	}
	snap, err := killswitch.ReadStateFile(cfg.Admin.StateFile)
	if err != nil {
		return nil, "", fmt.Errorf("explain: admin.state_file: %w", err)
	}
	what := fmt.Sprintf("%d in force in admin.state_file %s", snap.Len(), cfg.Admin.StateFile)
	if len(cfg.Cache.Redis.Addrs) > 0 {
		what += " (as this replica last saw them: the fleet's state is in Redis, which explain does not contact)"
	}
	return snap, what, nil
}

// anonymous is the resolver of --workload-less: a caller with no verified
// factor.
type anonymous struct{}

func (anonymous) Resolve(context.Context, identity.Evidence, []identity.Spec) (identity.Workload, error) {
	return identity.Workload{}, nil
}

// resolver is the evidence of a caller at source presenting pres, and
// the identity resolver that verifies it the way the gateway does. With a
// gateway config it builds the configured verifiers, so a presented
// certificate or token is verified for real. done releases the resolver.
func resolver(ctx context.Context, l *loaded, pres presentation, source string, anon bool) (ev identity.Evidence, r gatewayResolver, done func(), err error) {
	done = func() {}
	if anon {
		return ev, anonymous{}, done, nil
	}
	addr, err := netip.ParseAddr(source)
	if err != nil {
		return ev, nil, done, fmt.Errorf("explain: --source %q is not an IP address", source)
	}
	ev = identity.Evidence{Source: netip.AddrPortFrom(addr, 0)}
	if pres.token != "" {
		ev.ProxyAuthorization = "Bearer " + pres.token
	}
	if l.config == nil {
		return ev, identity.NewResolver(), done, nil
	}
	cfg := l.config
	opts := []identity.Option{identity.WithLogger(slog.New(slog.DiscardHandler))}
	// Run tokens verify here only with a key_file: a generated key
	// lives in the running gateway. Revocations are the gateway's too.
	if rt := cfg.RunTokens; rt != nil && rt.KeyFile != "" {
		is, err := runtoken.New(*rt, runtoken.Options{})
		if err != nil {
			return ev, nil, done, fmt.Errorf("explain: %w", err)
		}
		opts = append(opts, identity.WithLocalIssuer(is))
	}
	res, err := identity.New(ctx, cfg.Identity, opts...)
	if err != nil {
		return ev, nil, done, fmt.Errorf("explain: %w", err)
	}
	done = func() { res.Close() }
	if len(pres.certs) > 0 {
		switch {
		case cfg.TLS.ClientCA != "":
			chains, verr := verifyListener(cfg.TLS.ClientCA, pres.certs)
			if verr != nil {
				return ev, refusingResolver{fmt.Errorf("the TLS listener refuses the certificate: %w", verr)}, done, nil
			}
			ev.VerifiedChains = chains
		case len(cfg.Identity.MTLS.Bundles) > 0 || cfg.Identity.MTLS.WorkloadAPI != nil:
			ev.PeerCertificates = pres.certs
		default:
			done()
			return ev, nil, func() {}, fmt.Errorf("explain: --cert: the config verifies no client certificates (set tls.client_ca, identity.mtls.bundles or identity.mtls.workload_api)")
		}
	}
	return ev, res, done, nil
}

// gatewayResolver is what gateway.Judge verifies identity with.
type gatewayResolver interface {
	Resolve(ctx context.Context, ev identity.Evidence, specs []identity.Spec) (identity.Workload, error)
}

// refusingResolver answers every caller with err: a client certificate
// the TLS listener refuses (the gateway's handshake fails; explain shows
// it as the identity refusal).
type refusingResolver struct{ err error }

func (r refusingResolver) Resolve(_ context.Context, ev identity.Evidence, _ []identity.Spec) (identity.Workload, error) {
	return identity.Workload{Source: ev.Source.Addr()}, r.err
}

// verifyListener verifies certs as the TLS listener does with
// tls.client_ca (tls.VerifyClientCertIfGiven).
func verifyListener(caFile string, certs []*x509.Certificate) ([][]*x509.Certificate, error) {
	data, err := cfgfile.Read(caFile)
	if err != nil {
		return nil, err
	}
	// The gateway's parser (serverTLS), so that explain refuses what
	// the listener refuses.
	roots, err := cabundle.Pool(data)
	if err != nil {
		return nil, fmt.Errorf("tls.client_ca: %s: %w", caFile, err)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	return certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

func (ex *explanation) print(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }

	wl := ex.Workload.DisplayName()
	if len(ex.Workload.Factors) > 0 {
		var fs []string
		for _, f := range ex.Workload.Factors {
			fs = append(fs, f.Kind+"="+f.Subject)
		}
		wl += " (verified: " + strings.Join(fs, ", ") + ")"
	} else {
		wl += " (no verified factor)"
	}
	d := ex.Decision
	denied := "denied (HTTP " + strconv.Itoa(ex.Status) + ", X-Credgate-Reason: " + orDash(d.Code) + ")"
	row("request:", ex.method+" "+ex.target)
	if ex.Stage == "target" {
		row("workload:", "- (not verified: the request is refused before identity)")
	} else {
		row("workload:", wl)
	}
	if ex.IdentityErr != nil {
		row("identity:", "refused: "+oneLine(ex.IdentityErr.Error()))
		row("decision:", "deny")
		row("code:", d.Code)
		row("reason:", d.Reason)
		row("result:", denied)
		tw.Flush()
		return
	}
	switch {
	case ex.Connect != nil:
		row("connect:", summary(*ex.Connect))
	case ex.scheme == "https":
		row("connect:", "- (the CONNECT target is refused before any decision)")
	default:
		row("connect:", "- (plain http: no CONNECT, the request is judged as it arrives)")
	}
	switch {
	case ex.Request != nil:
		row("request decision:", summary(*ex.Request))
	case ex.Connect != nil && ex.Connect.Action == policy.Tunnel && ex.Allowed:
		row("request decision:", "- (tunnelled: the gateway does not see requests inside the TLS tunnel)")
	case ex.Stage == "request":
		row("request decision:", "- (refused before the policy decides: the method, path or header fields)")
	default:
		row("request decision:", "- (refused at CONNECT, before any TLS)")
	}
	if ex.Address != "" {
		row("address:", ex.Address)
	}
	if ex.switches != "" {
		row("kill switch:", ex.switches)
	}
	row("decision:", d.Outcome())
	row("rule:", orDash(d.Rule))
	row("destination:", orDash(d.Destination))
	row("code:", orDash(d.Code))
	row("reason:", orDash(d.Reason))
	if ex.Switch != "" {
		row("switch:", ex.Switch)
	}
	if b := ex.Batch; b != nil {
		switch {
		case b.Judged > 0:
			row("batch:", fmt.Sprintf("%s, %d sub-requests, each judged as a request of its own and counted as one by the rate limits", b.Service, b.Judged))
		case len(b.Subs) == 0 && ex.Stage != "batch":
			row("batch:", b.Service+": no body given (--data-binary @FILE), so no sub-request was judged; the gateway judges each before it fetches the credential")
		default:
			row("batch:", b.Service)
		}
		for _, v := range b.Subs {
			verdict := "admitted by rule " + v.Rule
			switch {
			case v.WouldDeny:
				verdict = "would deny (observe mode): " + v.Refused
			case v.Refused != "":
				verdict = "refused: " + v.Refused
			}
			row(fmt.Sprintf("  sub-request %d:", v.Index), v.Method+" "+v.Target+": "+verdict)
		}
	}
	if d.Inject != nil {
		row("credential:", d.Inject.Credential+" (fetched per request through the cache; value never shown)")
		prov := orDash(d.Inject.ProviderName)
		if m, ok := providers.Lookup(d.Inject.ProviderName); ok && m.Doc != "" {
			prov += " (" + m.Doc + ")"
		}
		row("provider:", prov)
		inj := d.Inject.As
		if q, ok := d.Inject.Injector.(*injectors.Query); ok {
			inj += " (sets query parameter " + q.Param + "; client values replaced)"
		} else if hs := injectors.HeadersOf(d.Inject.Injector); len(hs) > 0 {
			inj += " (sets " + strings.Join(hs, ", ") + "; client values replaced)"
		}
		row("injector:", inj)
		if ph := d.Inject.Placeholder; ph != nil {
			row("placeholder:", placeholderLine(ph, ex.Workload, d.Inject))
		}
		switch {
		case d.Scrub.Off:
			row("responses:", "not scrubbed (scrub: {enabled: false}): an upstream echo of the credential reaches the client")
		default:
			row("responses:", "secret values echoed in headers, bodies and trailers are scrubbed (encoded bodies: "+string(d.Scrub.Encoded)+")")
		}
		if d.Custody != nil {
			row("custody:", d.Custody.String()+": kept on the gateway, the client gets placeholders")
		}
		if !d.Scrub.Off || d.Custody != nil {
			row("ranges:", rangesLine(d.Ranges))
		}
	}
	if l := d.RuleLimit; l != nil {
		row("rate limit:", fmt.Sprintf("rule %s: %s, counted per workload", d.Rule, l))
	}
	if l := d.WorkloadLimit; l != nil {
		row("rate limit:", fmt.Sprintf("workload %s: %s, counted across its rules", ex.Workload.DisplayName(), l))
	}
	switch {
	case ex.Allowed && d.WouldDeny:
		row("result:", "would deny (observe mode): let through without a credential, audited as would_deny ("+d.Code+")")
	case ex.Allowed:
		row("result:", "allowed")
	default:
		row("result:", denied)
	}
	tw.Flush()
}

func summary(d policy.Decision) string {
	s := d.Outcome()
	if d.Rule != "" {
		s += " by rule " + d.Rule
	}
	if d.Code != "" {
		s += " [" + d.Code + "]"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// placeholderLine describes the placeholder the caller sends for a
// credential: the string itself (it is not a secret: it resolves only
// for this rule's destination and this workload), how it is made, and
// whether the rule requires it.
func placeholderLine(ph *policy.Placeholder, wl identity.Workload, plan *policy.InjectPlan) string {
	s := ph.For(wl)
	if ph.PerWorkload {
		s += " (generated for workload " + wl.DisplayName() + ")"
	}
	places := make([]string, len(plan.SubstituteIn))
	for i, p := range plan.SubstituteIn {
		places[i] = p.String()
	}
	s += " stands for field " + ph.Field + "; replaced only in " + strings.Join(places, ", ")
	if plan.SubstituteInDefault {
		s += " (the default: the rule sets no substitute_in)"
	}
	s += ", refused (placeholder_misuse) anywhere else"
	if plan.RequirePlaceholder {
		s += "; required (require_placeholder)"
	}
	return s
}

// rangesLine says a rule's ranges setting in the words of explain.
func rangesLine(r policy.Ranges) string {
	switch r {
	case policy.RangesPass:
		return "pass (Range requests go through; each 206 piece is scrubbed on its own, so a secret the upstream stored can be read in pieces)"
	case policy.RangesRefuse:
		return "refuse (a request with Range is refused: 403 range_refused)"
	}
	return "whole (the gateway removes Range and If-Range, so responses are scrubbed whole; a 206 is refused)"
}
