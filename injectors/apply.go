package injectors

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/credgate/credgate/identity"
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

// Apply puts cred on r with inj for no particular caller; see ApplyFor.
// An injector whose values depend on the caller (WorkloadInjector) fails
// its templates then, and r is left untouched.
func Apply(inj Injector, r *http.Request, cred *providers.Credential) error {
	return ApplyFor(inj, r, cred, identity.Workload{})
}

// ApplyFor puts cred on r with inj for the caller wl: it removes every
// client copy of the headers inj declares, so nothing the client sent
// under those names survives, then injects (InjectFor when inj is a
// WorkloadInjector). For a declared name with '_' it also removes the
// client's fields that CGI-style servers read as the same name ('-' and
// '_' alike, any case: Api-Key for api_key). The gateway calls only this,
// never the optional interfaces. An injector that changed the request's
// method, scheme, host, Host field or userinfo fails with
// ErrDestinationChanged: the policy chose those, and the credential goes
// only where its rule says.
func ApplyFor(inj Injector, r *http.Request, cred *providers.Credential, wl identity.Workload) error {
	for _, h := range HeadersOf(inj) {
		r.Header.Del(h)
		if strings.IndexByte(h, '_') >= 0 {
			for k := range r.Header {
				if sameCGIName(k, h) {
					delete(r.Header, k)
				}
			}
		}
	}
	before := destinationOf(r)
	var err error
	if wi, ok := inj.(WorkloadInjector); ok {
		err = wi.InjectFor(r, cred, wl)
	} else {
		err = inj.Inject(r, cred)
	}
	if err == nil && destinationOf(r) != before {
		return fmt.Errorf("%w (%T): an injector may set headers, the query and a placeholder's path segment, nothing that chooses where the credential goes", ErrDestinationChanged, inj)
	}
	return err
}

// destination is what of a request the policy decided and no injector
// may change.
type destination struct {
	method, scheme, host, opaque, hostField string
	user                                    *url.Userinfo
	userText                                string
}

func destinationOf(r *http.Request) destination {
	d := destination{method: r.Method, hostField: r.Host}
	if u := r.URL; u != nil {
		d.scheme, d.host, d.opaque, d.user = u.Scheme, u.Host, u.Opaque, u.User
		if u.User != nil {
			d.userText = u.User.String()
		}
	}
	return d
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

// sameCGIName reports whether CGI-style servers (CGI, WSGI, Rack, PHP),
// which upper-case a field name and turn '-' into '_' (HTTP_API_KEY),
// read the header field names a and b as the same name.
func sameCGIName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if cgiByte(a[i]) != cgiByte(b[i]) {
			return false
		}
	}
	return true
}

func cgiByte(c byte) byte {
	switch {
	case c == '-':
		return '_'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 'A'
	}
	return c
}
