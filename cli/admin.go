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
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/killswitch"
)

// adminClient talks to a gateway's admin API.
type adminClient struct {
	base      *url.URL
	tokenFile string
	timeout   time.Duration
	json      bool
	// caCert, cert and key are --cacert, --cert and --key: for an https
	// admin URL (the gateway's admin.tls).
	caCert, cert, key string
	// transport is built from them once the flags are parsed.
	transport *http.Transport
}

func newAdminCmd() *cobra.Command {
	ac := &adminClient{}
	var adminURL string
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Disable and enable rules, workloads and credentials (the kill switch)",
		Long: `Talk to a running gateway's admin API (its admin_listen) to disable a rule,
a workload or a credential during an incident, to enable it again, and to list
what is disabled. With cache.redis the change reaches every replica within a
second and survives restarts; without it, it applies to that replica only.

Changes need the admin token the gateway reads from admin.token_file or
admin.token_env: pass --token-file FILE, or set CREDGATE_ADMIN_TOKEN.

When the gateway serves its admin listener over HTTPS (admin.tls), use an
https:// URL and trust its certificate with --cacert FILE (or the system
roots); with admin.tls.client_ca, changes also need --cert and --key.

  credgate admin disable rule billing-charges --reason "INC-42 key leaked"
  credgate admin enable rule billing-charges
  credgate admin list`,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			u, err := parseAdminURL(adminURL)
			if err != nil {
				return err
			}
			ac.base = u
			tr, err := ac.newTransport()
			if err != nil {
				return err
			}
			ac.transport = tr
			return nil
		},
	}
	def := os.Getenv("CREDGATE_ADMIN_URL")
	if def == "" {
		def = "http://" + gateway.DefaultAdminListen
	}
	fl := cmd.PersistentFlags()
	fl.StringVar(&adminURL, "admin", def, "the gateway's admin URL (its admin_listen; env CREDGATE_ADMIN_URL)")
	fl.StringVar(&ac.tokenFile, "token-file", os.Getenv("CREDGATE_ADMIN_TOKEN_FILE"), "file holding the admin token (env CREDGATE_ADMIN_TOKEN_FILE; or the token itself in CREDGATE_ADMIN_TOKEN)")
	fl.DurationVar(&ac.timeout, "timeout", 10*time.Second, "how long to wait for the gateway")
	fl.BoolVar(&ac.json, "json", false, "print the API's JSON answer")
	fl.StringVar(&ac.caCert, "cacert", os.Getenv("CREDGATE_ADMIN_CACERT"), "PEM roots that verify an https admin URL's certificate (admin.tls.cert's CA), instead of the system roots (env CREDGATE_ADMIN_CACERT)")
	fl.StringVar(&ac.cert, "cert", os.Getenv("CREDGATE_ADMIN_CERT"), "client certificate (PEM) for an admin listener with admin.tls.client_ca (env CREDGATE_ADMIN_CERT)")
	fl.StringVar(&ac.key, "key", os.Getenv("CREDGATE_ADMIN_KEY"), "the client certificate's key (PEM; env CREDGATE_ADMIN_KEY)")
	cmd.AddCommand(newSwitchCmd(ac, "disable"), newSwitchCmd(ac, "enable"), newListCmd(ac))
	return cmd
}

func newSwitchCmd(ac *adminClient, action string) *cobra.Command {
	var by, reason string
	cmd := &cobra.Command{
		Use:   action + " rule|workload|source|credential NAME",
		Short: strings.ToUpper(action[:1]) + action[1:] + " a rule, a workload or a credential",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := killswitch.ParseKind(args[0])
			if err != nil {
				return fmt.Errorf("admin %s: %s", action, strings.TrimPrefix(err.Error(), "killswitch: "))
			}
			if err := killswitch.CheckName(args[1]); err != nil {
				return fmt.Errorf("admin %s: %s", action, strings.TrimPrefix(err.Error(), "killswitch: invalid switch: "))
			}
			body, _ := json.Marshal(map[string]string{"kind": string(kind), "name": args[1], "by": by, "reason": reason})
			var resp gateway.SwitchResponse
			raw, err := ac.call(cmd.Context(), http.MethodPost, "/admin/v1/"+action, body, true, &resp)
			if err != nil {
				return err
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if ac.json {
				_, _ = out.Write(raw)
			} else {
				e := resp.Switch
				switch {
				case !resp.Changed:
					fmt.Fprintf(out, "no change: %s\n", e)
				case resp.Pending:
					fmt.Fprintf(out, "%sd %s on this replica; Redis is unavailable, the other replicas get it when Redis answers\n", action, e)
				case resp.Scope == string(killswitch.ScopeFleet):
					fmt.Fprintf(out, "%sd %s on every replica%s\n", action, e, detail(action, e))
				default:
					fmt.Fprintf(out, "%sd %s on this replica%s\n", action, e, detail(action, e))
				}
			}
			for _, w := range resp.Warnings {
				fmt.Fprintln(errOut, "warning: "+w)
			}
			return nil
		},
	}
	if action == "disable" {
		cmd.Flags().StringVar(&reason, "reason", "", "why (an incident number); shown in /readyz, logs and to refused clients: no secrets")
		cmd.Flags().StringVar(&by, "by", defaultOperator(), "who disables it")
	} else {
		cmd.Flags().StringVar(&by, "by", defaultOperator(), "who enables it (logged)")
	}
	return cmd
}

func detail(action string, e killswitch.Entry) string {
	if action != "disable" {
		return ""
	}
	var parts []string
	if e.By != "" {
		parts = append(parts, "by "+e.By)
	}
	if e.Reason != "" {
		parts = append(parts, "reason: "+e.Reason)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func newListCmd(ac *adminClient) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"status"},
		Short:   "List what is disabled, and where the state comes from",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var v gateway.SwitchesView
			// The list names operators and reasons: the gateway wants
			// the token. Without one the gateway's answer says so.
			raw, err := ac.call(cmd.Context(), http.MethodGet, "/admin/v1/switches", nil, ac.hasToken(), &v)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if ac.json {
				_, _ = out.Write(raw)
				return nil
			}
			if len(v.Disabled) == 0 {
				fmt.Fprintln(out, "nothing is disabled")
			} else {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KIND\tNAME\tSINCE\tBY\tREASON")
				for _, e := range v.Disabled {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Kind, e.Name, e.Since.UTC().Format(time.RFC3339), dash(e.By), dash(e.Reason))
				}
				_ = tw.Flush()
			}
			state := "state: " + v.Backend
			if v.Backend == "redis" {
				state += " (" + v.Redis
				if v.LastSync != nil {
					state += ", last read " + v.LastSync.UTC().Format(time.RFC3339)
				}
				state += ")"
				if v.Pending > 0 {
					state += fmt.Sprintf(", %d disabled on this replica waiting for Redis", v.Pending)
				}
			} else {
				state += " (this replica only)"
			}
			fmt.Fprintln(out, state)
			return nil
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// defaultOperator is USER@HOST, for the --by default.
func defaultOperator() string {
	name := os.Getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if h, err := os.Hostname(); err == nil && name != "" {
		return name + "@" + h
	}
	return name
}

// parseAdminURL accepts http(s)://host:port or host:port.
func parseAdminURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin: --admin %q is not a URL such as http://127.0.0.1:9090 (the gateway's admin_listen)", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// newTransport is the admin API's HTTP transport: never through a proxy
// from the environment (which could be the gateway itself), and with
// --cacert, --cert and --key for an https URL.
func (ac *adminClient) newTransport() (*http.Transport, error) {
	tr := &http.Transport{Proxy: nil}
	if ac.base.Scheme != "https" {
		if ac.caCert != "" || ac.cert != "" || ac.key != "" {
			return nil, fmt.Errorf("admin: --cacert, --cert and --key are for an https admin URL; --admin is %s (use https://%s if the gateway sets admin.tls)", ac.base, ac.base.Host)
		}
		return tr, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ac.caCert != "" {
		pem, err := os.ReadFile(ac.caCert)
		if err != nil {
			return nil, fmt.Errorf("admin: --cacert: %w", err)
		}
		if tc.RootCAs, err = cabundle.AddRoots(x509.NewCertPool(), pem); err != nil {
			return nil, fmt.Errorf("admin: --cacert %s: %w", ac.caCert, err)
		}
	}
	switch {
	case ac.cert != "" && ac.key != "":
		c, err := tls.LoadX509KeyPair(ac.cert, ac.key)
		if err != nil {
			return nil, fmt.Errorf("admin: --cert/--key: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	case ac.cert != "" || ac.key != "":
		return nil, errors.New("admin: --cert and --key go together (the client certificate and its key, PEM)")
	}
	tr.TLSClientConfig = tc
	return tr, nil
}

// tlsHint says what to change for a TLS error reaching the admin API, ""
// when err is not one.
func (ac *adminClient) tlsHint(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		header   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown):
		if ac.caCert != "" {
			return fmt.Sprintf("the admin certificate does not verify against --cacert %s (it must hold the CA that signed admin.tls.cert)", ac.caCert)
		}
		return "the admin certificate is not signed by a trusted CA: pass --cacert FILE (the CA that signed admin.tls.cert) or set CREDGATE_ADMIN_CACERT"
	case errors.As(err, &hostname):
		return fmt.Sprintf("the admin certificate is not valid for %s: use --admin with a name or address the certificate holds", ac.base.Hostname())
	case errors.As(err, &invalid):
		return "the admin certificate is not valid (expired or not yet valid?)"
	case errors.As(err, &verify):
		return "the admin certificate does not verify"
	case errors.As(err, &header) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "the admin listener does not speak TLS: use an http:// --admin URL (the gateway has no admin.tls)"
	case strings.Contains(err.Error(), "remote error: tls:"):
		// The gateway's alert (a client certificate it refused) has no
		// exported type.
		if ac.cert == "" {
			return "the gateway refused the TLS handshake: with admin.tls.client_ca, pass --cert and --key"
		}
		return "the gateway refused the TLS handshake: is --cert signed by the gateway's admin.tls.client_ca?"
	}
	return ""
}

// token reads the admin token: --token-file, else CREDGATE_ADMIN_TOKEN.
func (ac *adminClient) token() (string, error) {
	if ac.tokenFile != "" {
		b, err := os.ReadFile(ac.tokenFile)
		if err != nil {
			return "", fmt.Errorf("admin: --token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("admin: --token-file %s is empty", ac.tokenFile)
		}
		return tok, nil
	}
	if tok := strings.TrimSpace(os.Getenv("CREDGATE_ADMIN_TOKEN")); tok != "" {
		return tok, nil
	}
	return "", errors.New("admin: no admin token: pass --token-file FILE or set CREDGATE_ADMIN_TOKEN (the token the gateway reads from admin.token_file or admin.token_env)")
}

// hasToken reports whether a token is given (--token-file or
// CREDGATE_ADMIN_TOKEN).
func (ac *adminClient) hasToken() bool {
	return ac.tokenFile != "" || strings.TrimSpace(os.Getenv("CREDGATE_ADMIN_TOKEN")) != ""
}

// call sends one request and decodes the JSON answer into v; an error
// answer becomes an error naming its code and reason. It returns the raw
// body for --json.
func (ac *adminClient) call(ctx context.Context, method, path string, body []byte, auth bool, v any) ([]byte, error) {
	raw, err := ac.send(ctx, method, path, body, auth)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("admin API %s%s: the answer is not what credgate sends: %w", ac.base, path, err)
	}
	return raw, nil
}

// get fetches path without the admin token (a public endpoint such as
// /admin/v1/ca.pem) and returns the body of a 200 answer.
func (ac *adminClient) get(ctx context.Context, path string) ([]byte, error) {
	return ac.send(ctx, http.MethodGet, path, nil, false)
}

// send sends one request and returns the body of a 200 answer; any other
// answer becomes an error naming its code and reason.
func (ac *adminClient) send(ctx context.Context, method, path string, body []byte, auth bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ac.timeout)
	defer cancel()
	u := *ac.base
	u.Path += path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		tok, err := ac.token()
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	tr := ac.transport
	if tr == nil {
		if tr, err = ac.newTransport(); err != nil {
			return nil, err
		}
	}
	c := &http.Client{Transport: tr}
	resp, err := c.Do(req)
	if err != nil {
		if hint := ac.tlsHint(err); hint != "" {
			return nil, fmt.Errorf("admin API %s: TLS: %s", ac.base, hint)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("admin API %s not reachable: %v (set --admin to the gateway's admin_listen)", ac.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API %s: read the answer: %w", ac.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Code, Reason string }
		if json.Unmarshal(raw, &e) != nil || e.Code == "" {
			if resp.StatusCode == http.StatusBadRequest && ac.base.Scheme == "http" && bytes.Contains(raw, []byte("HTTPS server")) {
				return nil, fmt.Errorf("admin API %s: the admin listener speaks HTTPS (admin.tls): use --admin https://%s and --cacert FILE", ac.base, ac.base.Host)
			}
			return nil, fmt.Errorf("admin API %s%s: %s (is --admin the gateway's admin_listen?)", ac.base, path, resp.Status)
		}
		hint := ""
		switch e.Code {
		case "unauthorized":
			hint = " (check --token-file or CREDGATE_ADMIN_TOKEN against the gateway's admin.token_file)"
		case "client_certificate_required":
			hint = " (pass --cert and --key, or set CREDGATE_ADMIN_CERT and CREDGATE_ADMIN_KEY)"
		}
		return nil, fmt.Errorf("admin API %s: %d %s: %s%s", ac.base, resp.StatusCode, e.Code, e.Reason, hint)
	}
	return raw, nil
}
