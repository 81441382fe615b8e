package injectors

import (
	"crypto/tls"
	"net/http"

	"github.com/credgate/credgate/providers"
)

// HeadersOf returns the header names inj sets (HeaderNames), nil when it
// declares none.
func HeadersOf(inj Injector) []string {
	if hn, ok := inj.(HeaderNames); ok {
		return hn.Headers()
	}
	return nil
}

// Apply puts cred on r with inj: it removes every client copy of the
// headers inj declares, so nothing the client sent under those names
// survives, then injects. The gateway calls only this, never the optional
// interfaces.
func Apply(inj Injector, r *http.Request, cred *providers.Credential) error {
	for _, h := range HeadersOf(inj) {
		r.Header.Del(h)
	}
	return inj.Inject(r, cred)
}

// ClientCertificateOf returns the TLS client certificate inj presents for
// cred (ClientCertificate): nil and no error when inj presents none.
func ClientCertificateOf(inj Injector, cred *providers.Credential) (*tls.Certificate, error) {
	cc, ok := inj.(ClientCertificate)
	if !ok {
		return nil, nil
	}
	return cc.Certificate(cred)
}

// Replayable reports whether inj can be applied again to a request that
// already carries a rejected credential so that nothing of it remains: it
// declares every header it sets and presents no client certificate.
func Replayable(inj Injector) bool {
	_, headers := inj.(HeaderNames)
	_, cert := inj.(ClientCertificate)
	return headers && !cert
}
