package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/policy"
)

func newExplainCmd() *cobra.Command {
	var (
		configPath   string
		source       string
		workloadLess bool
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
caller (no verified factor). Only the source factor can be simulated here;
rules that require other factors (mtls, jwt) do not match.

Exit 0 when the request would be allowed (inject, forward or tunnel), 3 when
it would be denied, 1 on errors.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" {
				return fmt.Errorf("explain: -c FILE is required")
			}
			if workloadLess && cmd.Flags().Changed("source") {
				return fmt.Errorf("explain: --source and --workload-less exclude each other")
			}
			l, err := load(cmd.Context(), configPath)
			if err != nil {
				return err
			}
			defer l.policy.Close()
			ex, err := explain(cmd.Context(), l.policy, source, workloadLess, args[0], args[1])
			if err != nil {
				return err
			}
			ex.print(cmd.OutOrStdout())
			if !ex.allowed {
				return &exitCode{code: exitDenied, reported: true}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "gateway config or policy file (YAML)")
	cmd.Flags().StringVar(&source, "source", "127.0.0.1", "client IP address the request comes from")
	cmd.Flags().BoolVar(&workloadLess, "workload-less", false, "ask for an anonymous caller with no verified factor")
	return cmd
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
}

func explain(ctx context.Context, pol *policy.Policy, source string, anonymous bool, method, rawURL string) (*explanation, error) {
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

	w, err := resolveWorkload(ctx, pol, source, anonymous)
	if err != nil {
		return nil, err
	}
	ex := &explanation{
		workload: w,
		method:   method,
		target:   scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path,
		scheme:   scheme,
	}
	if scheme == "https" {
		d := pol.Decide(policy.Query{Workload: w, Connect: true, Host: host, Port: port})
		ex.connect = &d
		ex.final = d
		switch d.Action {
		case policy.Deny:
			return ex, nil
		case policy.Tunnel:
			ex.allowed = true
			return ex, nil
		}
	}
	d := pol.Decide(policy.Query{Workload: w, Scheme: scheme, Host: host, Port: port, Method: method, Path: path})
	ex.request = &d
	ex.final = d
	ex.allowed = d.Action == policy.Inject || d.Action == policy.Forward
	return ex, nil
}

// resolveWorkload names the caller at source the way the gateway does, with
// only the source factor available.
func resolveWorkload(ctx context.Context, pol *policy.Policy, source string, anonymous bool) (identity.Workload, error) {
	if anonymous {
		return identity.Workload{}, nil
	}
	addr, err := netip.ParseAddr(source)
	if err != nil {
		return identity.Workload{}, fmt.Errorf("explain: --source %q is not an IP address", source)
	}
	w, err := identity.NewResolver().Resolve(ctx, identity.Evidence{Source: netip.AddrPortFrom(addr, 0)}, pol.Workloads())
	if err != nil {
		return identity.Workload{}, fmt.Errorf("explain: %w", err)
	}
	return w, nil
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
	if ex.connect != nil {
		row("connect:", summary(*ex.connect))
	} else {
		row("connect:", "- (plain http: no CONNECT, the request is judged as it arrives)")
	}
	switch {
	case ex.request != nil:
		row("request decision:", summary(*ex.request))
	case ex.connect != nil && ex.connect.Action == policy.Tunnel:
		row("request decision:", "- (tunnelled: the gateway does not see requests inside the TLS tunnel)")
	default:
		row("request decision:", "- (refused at CONNECT, before any TLS)")
	}
	d := ex.final
	row("decision:", d.Action.String())
	row("rule:", orDash(d.Rule))
	row("destination:", orDash(d.Destination))
	row("code:", orDash(d.Code))
	row("reason:", orDash(d.Reason))
	if d.Inject != nil {
		row("credential:", d.Inject.Credential+" (fetched per request through the cache; value never shown)")
		inj := d.Inject.As
		if q, ok := d.Inject.Injector.(*injectors.Query); ok {
			inj += " (sets query parameter " + q.Param + "; client values replaced)"
		} else if hn, ok := d.Inject.Injector.(injectors.HeaderNames); ok && len(hn.Headers()) > 0 {
			inj += " (sets " + strings.Join(hn.Headers(), ", ") + "; client values replaced)"
		}
		row("injector:", inj)
	}
	if ex.allowed {
		row("result:", "allowed")
	} else {
		row("result:", "denied (HTTP 403, X-Credgate-Reason: "+orDash(d.Code)+")")
	}
	tw.Flush()
}

func summary(d policy.Decision) string {
	s := d.Action.String()
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
