package gateway

import (
	"crypto/tls"
	"net"
	"net/http"
)

// AdminTLS serves admin_listen over HTTPS (docs/config.md#admin). It is
// off unless Cert and Key are set.
type AdminTLS struct {
	// Cert and Key are the admin listener's server certificate and key
	// (PEM), re-read every ReloadInterval when they change.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ClientCA, when set, holds PEM roots against which a client
	// certificate is verified when one is presented; every call that
	// needs the admin token (POST /admin/v1/disable and /enable, GET
	// /admin/v1/switches, the run-token API and /readyz's detail) then
	// needs one too. /healthz, /readyz's status, /metrics and the public
	// keys and CA (ca.pem, run-tokens/jwks.json) do not, so that kubelet
	// probes and Prometheus keep working without one.
	ClientCA string `yaml:"client_ca"`
	// ReloadInterval is how often Cert, Key and ClientCA are checked for
	// changes (default 30s).
	ReloadInterval Duration `yaml:"reload_interval"`
}

// Enabled reports whether the admin listener speaks TLS.
func (a AdminTLS) Enabled() bool { return a.Cert != "" && a.Key != "" }

// check reports what is missing in admin.tls through bad.
func (a AdminTLS) check(bad func(msg string, key ...string)) {
	switch {
	case a.Cert != "" && a.Key == "":
		bad("admin.tls: cert is set but key is not; the admin listener needs both (its server certificate and key, PEM)", "tls", "cert")
	case a.Key != "" && a.Cert == "":
		bad("admin.tls: key is set but cert is not; the admin listener needs both (its server certificate and key, PEM)", "tls", "key")
	case a.Cert == "" && (a.ClientCA != "" || a.ReloadInterval != 0):
		bad("admin.tls: set cert and key (the admin listener's server certificate) to serve the admin listener over HTTPS, or remove admin.tls", "tls")
	}
}

// adminTLS is the admin listener's TLS configuration, rebuilt from the
// files whenever admin.tls.cert, key or client_ca change (a cert-manager
// renewal): each handshake gets the current one.
func (g *Gateway) adminTLS(c AdminTLS) (*tls.Config, error) {
	if c.ClientCA != "" {
		g.adminRoots = &clientRoots{}
	}
	return g.reloadingServerTLS("admin listener certificate", "admin.tls", c.Cert, c.Key, c.ClientCA, c.ReloadInterval, false, g.adminRoots)
}

// loopback reports whether a listener's address is a loopback one (a
// wildcard address is not).
func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// adminClientCert reports whether an admin API call that changes state
// came with the client certificate admin.tls.client_ca asks for: always
// true without client_ca. The handshake already refused a certificate
// that does not verify; one whose CA has left client_ca since the
// connection's handshake no longer counts.
func (g *Gateway) adminClientCert(r *http.Request) bool {
	if g.cfg.Admin.TLS.ClientCA == "" {
		return true
	}
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && g.adminRoots.trusts(r.TLS.VerifiedChains)
}
