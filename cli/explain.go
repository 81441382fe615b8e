package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/identity/runtoken"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/internal/canonical"
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
			ex, err := explain(cmd.Context(), l, pres, source, workloadLess, args[0], args[1])
			if err != nil {
				return err
			}
			ex.print(cmd.OutOrStdout())
			// A request observe mode lets through is still one the
			// policy refuses: exit as denied, so a script checking the
			// policy is not fooled by observe mode.
			if !ex.allowed || ex.final.WouldDeny {
				return &exitCode{code: exitDenied, reported: true}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "gateway config or policy file (YAML)")
	cmd.Flags().StringVar(&source, "source", "127.0.0.1", "client IP address the request comes from")
	cmd.Flags().BoolVar(&workloadLess, "workload-less", false, "ask for an anonymous caller with no verified factor")
	cmd.Flags().StringVar(&certFile, "cert", "", "client certificate chain (PEM) presented on the TLS listener; needs a gateway config")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the token sent in Proxy-Authorization (- for stdin); needs a gateway config")
	return cmd
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

// explanation is everything explain prints.
type explanation struct {
	workload identity.Workload
	method   string
	target   string // what was asked, normalised
	scheme   string
	connect  *policy.Decision // nil for plain http
	request  *policy.Decision // nil when the CONNECT decision ended it
	final    policy.Decision
	allowed  bool
	// identityErr is why the gateway would refuse the connection before
	// deciding anything.
	identityErr error
	// address is the address check, "" when explain does not know the
	// address (a name it would have to look up in DNS).
	address string
}

// checkAddress applies the gateway's special-purpose address check to
// the address host:port is known to have without DNS: an IP literal, or
// the gateway config's resolve map. It reports whether d survives it;
// when not, ex.final becomes the private_address refusal.
func (ex *explanation) checkAddress(l *loaded, host string, port int, d policy.Decision) bool {
	var a netip.Addr
	var from string
	if ip, err := netip.ParseAddr(host); err == nil {
		a, from = ip, "IP literal"
	} else if l.config != nil {
		if ap, ok := l.config.Pinned(host, port); ok {
			a, from = ap.Addr(), "resolve map"
		}
	}
	if !a.IsValid() {
		return true
	}
	reason, refused := gateway.CheckAddress(host, port, a)
	switch {
	case !refused:
		ex.address = a.String() + " (" + from + "): not special-purpose"
	case d.AllowPrivate:
		ex.address = a.String() + " (" + from + "): special-purpose, allowed by allow_private on destination " + d.Destination
	default:
		ex.address = a.String() + " (" + from + "): refused"
		ex.final = policy.Decision{Action: policy.Deny, Rule: d.Rule, Destination: d.Destination, Code: "private_address", Reason: reason}
		ex.allowed = false
		return false
	}
	return true
}

func explain(ctx context.Context, l *loaded, pres presentation, source string, anonymous bool, method, rawURL string) (*explanation, error) {
	pol := l.policy
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

	w, idErr, err := resolveWorkload(ctx, l, pres, source, anonymous)
	if err != nil {
		return nil, err
	}
	ex := &explanation{
		workload: w,
		method:   method,
		target:   scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path,
		scheme:   scheme,
	}
	if idErr != nil {
		// The gateway refuses the connection before any policy decision.
		code := "identity_invalid"
		switch {
		case errors.Is(idErr, identity.ErrFactorConflict):
			code = "factor_conflict"
		case errors.Is(idErr, identity.ErrUnavailable):
			code = "identity_unavailable"
		}
		ex.identityErr = idErr
		ex.final = policy.Decision{Action: policy.Deny, Code: code, Reason: idErr.Error()}
		return ex, nil
	}
	if scheme == "https" {
		d := pol.Decide(policy.Query{Workload: w, Connect: true, Host: host, Port: port})
		ex.connect = &d
		ex.final = d
		if d.Action == policy.Deny || !ex.checkAddress(l, host, port, d) {
			return ex, nil
		}
		if d.Action == policy.Tunnel {
			ex.allowed = true
			return ex, nil
		}
	}
	// The path as the gateway judges it (invariant 11): refused spellings
	// are explained as the gateway refuses them.
	cp, err := canonical.ParsePath(path)
	if err != nil {
		var pe *canonical.PathError
		problem := "is not canonical"
		if errors.As(err, &pe) {
			problem = pe.Problem
		}
		d := policy.Decision{Action: policy.Deny, Code: "bad_path", Reason: "the request path " + problem + "; the gateway answers 400"}
		ex.request, ex.final = &d, d
		return ex, nil
	}
	d := pol.Decide(policy.Query{Workload: w, Scheme: scheme, Host: host, Port: port, Method: method, Path: cp.Decoded})
	if (d.Action == policy.Inject || d.Action == policy.Forward) && cp.CheckEncodedSlash(d.EncodedSlashes) != nil {
		d = policy.Decision{Action: policy.Deny, Rule: d.Rule, Destination: d.Destination, Code: "bad_path",
			Reason: fmt.Sprintf("the request path encodes a '/' as %%2F, which destination %q does not allow (encoded_slashes: true)", d.Destination)}
	}
	ex.request = &d
	ex.final = d
	ex.allowed = d.Action == policy.Inject || d.Action == policy.Forward
	if ex.allowed {
		ex.checkAddress(l, host, port, d)
	}
	return ex, nil
}

// resolveWorkload names the caller at source the way the gateway does. With
// a gateway config it builds the configured verifiers, so a presented
// certificate or token is verified for real; idErr is the gateway's
// reason to refuse the connection, err a failure to explain at all.
func resolveWorkload(ctx context.Context, l *loaded, pres presentation, source string, anonymous bool) (w identity.Workload, idErr, err error) {
	if anonymous {
		return identity.Workload{}, nil, nil
	}
	addr, err := netip.ParseAddr(source)
	if err != nil {
		return identity.Workload{}, nil, fmt.Errorf("explain: --source %q is not an IP address", source)
	}
	ev := identity.Evidence{Source: netip.AddrPortFrom(addr, 0)}
	if pres.token != "" {
		ev.ProxyAuthorization = "Bearer " + pres.token
	}
	r := identity.NewResolver()
	if l.config != nil {
		cfg := l.config
		opts := []identity.Option{identity.WithLogger(slog.New(slog.DiscardHandler))}
		// Run tokens verify here only with a key_file: a generated key
		// lives in the running gateway. Revocations are the gateway's too.
		if rt := cfg.RunTokens; rt != nil && rt.KeyFile != "" {
			is, err := runtoken.New(*rt, runtoken.Options{})
			if err != nil {
				return identity.Workload{}, nil, fmt.Errorf("explain: %w", err)
			}
			opts = append(opts, identity.WithLocalIssuer(is))
		}
		r, err = identity.New(ctx, cfg.Identity, opts...)
		if err != nil {
			return identity.Workload{}, nil, fmt.Errorf("explain: %w", err)
		}
		defer r.Close()
		if len(pres.certs) > 0 {
			switch {
			case cfg.TLS.ClientCA != "":
				chains, verr := verifyListener(cfg.TLS.ClientCA, pres.certs)
				if verr != nil {
					return identity.Workload{Source: addr}, fmt.Errorf("the TLS listener refuses the certificate: %w", verr), nil
				}
				ev.VerifiedChains = chains
			case len(cfg.Identity.MTLS.Bundles) > 0 || cfg.Identity.MTLS.WorkloadAPI != nil:
				ev.PeerCertificates = pres.certs
			default:
				return identity.Workload{}, nil, fmt.Errorf("explain: --cert: the config verifies no client certificates (set tls.client_ca, identity.mtls.bundles or identity.mtls.workload_api)")
			}
		}
	}
	w, idErr = r.Resolve(ctx, ev, l.policy.Workloads())
	return w, idErr, nil
}

// verifyListener verifies certs as the TLS listener does with
// tls.client_ca (tls.VerifyClientCertIfGiven).
func verifyListener(caFile string, certs []*x509.Certificate) ([][]*x509.Certificate, error) {
	data, err := os.ReadFile(caFile)
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

	wl := ex.workload.DisplayName()
	if len(ex.workload.Factors) > 0 {
		var fs []string
		for _, f := range ex.workload.Factors {
			fs = append(fs, f.Kind+"="+f.Subject)
		}
		wl += " (verified: " + strings.Join(fs, ", ") + ")"
	} else {
		wl += " (no verified factor)"
	}
	row("request:", ex.method+" "+ex.target)
	row("workload:", wl)
	if ex.identityErr != nil {
		row("identity:", "refused: "+oneLine(ex.identityErr.Error()))
		row("decision:", "deny")
		row("code:", ex.final.Code)
		row("result:", "denied (HTTP 403, X-Credgate-Reason: "+ex.final.Code+")")
		tw.Flush()
		return
	}
	if ex.connect != nil {
		row("connect:", summary(*ex.connect))
	} else {
		row("connect:", "- (plain http: no CONNECT, the request is judged as it arrives)")
	}
	switch {
	case ex.request != nil:
		row("request decision:", summary(*ex.request))
	case ex.connect != nil && ex.connect.Action == policy.Tunnel && ex.allowed:
		row("request decision:", "- (tunnelled: the gateway does not see requests inside the TLS tunnel)")
	default:
		row("request decision:", "- (refused at CONNECT, before any TLS)")
	}
	if ex.address != "" {
		row("address:", ex.address)
	}
	d := ex.final
	row("decision:", d.Outcome())
	row("rule:", orDash(d.Rule))
	row("destination:", orDash(d.Destination))
	row("code:", orDash(d.Code))
	row("reason:", orDash(d.Reason))
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
			row("placeholder:", placeholderLine(ph, ex.workload, d.Inject))
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
		row("rate limit:", fmt.Sprintf("workload %s: %s, counted across its rules", ex.workload.DisplayName(), l))
	}
	switch {
	case ex.allowed && d.WouldDeny:
		row("result:", "would deny (observe mode): let through without a credential, audited as would_deny ("+d.Code+")")
	case ex.allowed:
		row("result:", "allowed")
	default:
		row("result:", "denied (HTTP 403, X-Credgate-Reason: "+orDash(d.Code)+")")
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
