// Package httpclient builds the HTTP transports credgate uses for its own
// outbound calls to credential and identity sources: OAuth2 token
// endpoints, Vault, AWS STS, JWKS and OpenID discovery documents, posture
// feeds and the Kubernetes API server.
//
// It exists so that there is one copy of that plumbing, and so that every
// such client ignores the proxy environment (HTTPS_PROXY, HTTP_PROXY,
// ALL_PROXY, NO_PROXY and their lower-case forms). A gateway's own
// environment often points HTTPS_PROXY at the gateway itself or at a
// corporate proxy; sending client secrets, Vault tokens, signed STS calls
// or service-account tokens there would hand them to a third party (an
// outside review found the OAuth2 client doing exactly that). Provider
// traffic goes straight to the configured endpoint, whatever the
// environment says.
//
// It also holds the one rule for plain-http endpoint URLs: CheckURL
// refuses http:// unless the host is loopback.
package httpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/internal/cfgfile"
)

// NewTransport returns a new transport with the defaults of
// http.DefaultTransport except that it never uses a proxy and requires
// TLS 1.2 or later. Callers may set TLSClientConfig.RootCAs and
// connection-pool limits; they must not set Proxy.
func NewTransport() *http.Transport {
	tr := &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
	Configure(tr)
	return tr
}

// MaxIdlePerHost is the number of idle connections a client from
// NewClient keeps per host: a token endpoint sees a handful of
// concurrent refreshes, more than net/http's default of 2.
const MaxIdlePerHost = 4

// Options are the settings of a client made by NewClient.
type Options struct {
	// Timeout bounds each request: connecting, the TLS handshake and the
	// whole exchange. Zero keeps NewTransport's dial and handshake limits
	// and sets no overall limit.
	Timeout time.Duration
	// CACertFile is a PEM file of CA certificates trusted instead of the
	// system roots (a provider's ca_cert setting); empty: system roots.
	CACertFile string
}

// NewClient returns the client a provider uses for its token endpoint: a
// NewTransport transport (no proxy, TLS 1.2 or later) bounded by
// o.Timeout, trusting o.CACertFile when set, that never follows a
// redirect. A token endpoint that redirects is misconfigured, and
// following it would send the client's secret or signed assertion to
// another place; the caller sees the 3xx response instead. The errors of
// its exchanges (the round trip's and those of reading a response body)
// carry nothing of what the request sent (SentRedactedError): an endpoint
// can get its own answer quoted in them. The error
// starts with "ca_cert: " and names the file; callers prefix their own
// name (fmt.Errorf("salesforce: %w", err)).
func NewClient(o Options) (*http.Client, error) {
	tr := NewTransport()
	if o.Timeout > 0 {
		tr.DialContext = (&net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = o.Timeout
	}
	tr.MaxIdleConnsPerHost = MaxIdlePerHost
	if o.CACertFile != "" {
		pool, err := ReadRoots(o.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("ca_cert: %w; set ca_cert to a readable PEM file of CA certificates, or remove it to trust the system roots", err)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport:     redacting{tr},
		Timeout:       o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// Configure hardens a transport built elsewhere (the AWS SDK builds its
// own): no proxy, whatever the environment says, and TLS 1.2 or later.
// NewTransport calls it; use it directly only where a library owns the
// transport's construction.
func Configure(tr *http.Transport) {
	tr.Proxy = nil
	tr.OnProxyConnectResponse = nil
	tr.GetProxyConnectHeader = nil
	tr.ProxyConnectHeader = nil
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else if tr.TLSClientConfig.MinVersion < tls.VersionTLS12 {
		tr.TLSClientConfig.MinVersion = tls.VersionTLS12
	}
}

// ReadRoots reads a PEM file of CA certificates through cfgfile (a named
// pipe, a device or a file over cfgfile.MaxBytes is refused, never read).
// The error names the file (an *fs.PathError when it cannot be read) but
// says nothing of its contents; callers prefix the setting's name.
func ReadRoots(file string) (*x509.CertPool, error) {
	data, err := cfgfile.Read(file)
	if err != nil {
		return nil, err
	}
	pool, err := cabundle.AddRoots(x509.NewCertPool(), data)
	if err != nil {
		return nil, fmt.Errorf("CA file %s: %w", file, err)
	}
	return pool, nil
}

// CheckURL accepts an absolute https URL, or an http URL whose host is
// loopback (127.0.0.0/8, ::1 or localhost): plain http anywhere else
// would send secrets, or accept keys and credentials, that anyone on the
// path can read or forge. It refuses a URL carrying a user name or
// password. Errors start with the quoted URL (without user information,
// query or fragment, which may hold secrets), so that callers prefix the
// setting's name: fmt.Errorf("token_url %w", err).
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q is not an absolute http(s) URL such as https://host/path", Display(raw))
	}
	if u.User != nil {
		return fmt.Errorf("%q must not carry credentials (a user name or password); configure them in their own settings", Display(raw))
	}
	if u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) {
		return fmt.Errorf("%q uses plain http to a host that is not loopback; use https (plain http is allowed only for 127.0.0.0/8, ::1 and localhost)", Display(raw))
	}
	return nil
}

// IsLoopbackHost reports whether host (without port or brackets) is
// "localhost" or a loopback IP address. No name is resolved.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback() && ip.Zone() == ""
}

// Display is the URL raw for a log line or error message: without user
// information, query and fragment, which may hold secrets. It is the one
// copy of that rule for every endpoint URL credgate names.
func Display(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	start := 0
	if j := strings.Index(raw, "://"); j >= 0 {
		start = j + 3
	}
	end := len(raw)
	if k := strings.IndexByte(raw[start:], '/'); k >= 0 {
		end = start + k
	}
	if i := strings.LastIndexByte(raw[start:end], '@'); i >= 0 {
		raw = raw[:start] + raw[start+i+1:]
	}
	return raw
}

// DoError reads an error of http.Client.Do for a message: cause is the
// error without the *url.Error around it (which repeats the method and
// the URL, and a URL may carry what a message must not), and timeout
// reports whether the exchange ran out of time (the request's deadline,
// the client's Timeout, or a network timeout), which callers tell apart
// from an endpoint that cannot be reached.
func DoError(err error) (cause error, timeout bool) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	return err, errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
