package injectors

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/headerset"
	"github.com/credgate/credgate/internal/panics"
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
// never the optional interfaces.
//
// ApplyFor then checks what inj did (checkInjected), so that a plugin's
// bug cannot send what the policy did not decide: a change to the
// method, scheme, host, Host field, userinfo or path (beyond the
// placeholder segment of a PathPlaceholder) fails with
// ErrDestinationChanged; a header that is reserved for the proxy,
// invalid, repeated or too large fails with ErrHeaderRefused;
// a panic in inj fails with ErrInjectorPanicked. On any error the
// gateway answers 502 inject_failed and forwards nothing.
func ApplyFor(inj Injector, r *http.Request, cred *providers.Credential, wl identity.Workload) (err error) {
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
	var fbuf [32]snapField
	var vbuf [48]string
	snap := takeSnapshot(r.Header, fbuf[:0], vbuf[:0])
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			err = fmt.Errorf("%w (%T): %s; at %s", ErrInjectorPanicked, inj, panics.Describe(p), panics.Where(1))
		}
	}()
	if wi, ok := inj.(WorkloadInjector); ok {
		err = wi.InjectFor(r, cred, wl)
	} else {
		err = inj.Inject(r, cred)
	}
	if err != nil {
		return err
	}
	return checkInjected(inj, r, before, snap)
}

// MaxInjectedHeaderBytes bounds the header fields one injection sets
// (names and values together): far above any token, signature or key,
// far below what would make the upstream refuse the request head.
const MaxInjectedHeaderBytes = 64 << 10

// checkInjected checks what inj changed on r: the destination and the
// path against before, the header fields against snap (the request's
// fields after the declared names were removed). An injector may rewrite
// a client field it reads (sigv4's X-Amz-Content-Sha256, azure's
// x-ms-* spellings) or add a default (x-ms-version): only what it puts
// on the wire is checked, not whether it declared the name.
func checkInjected(inj Injector, r *http.Request, before destination, snap headerSnapshot) error {
	after := destinationOf(r)
	if after.path != before.path || after.rawPath != before.rawPath {
		if err := checkPath(inj, before, after); err != nil {
			return err
		}
		after.path, after.rawPath = before.path, before.rawPath
	}
	if after != before {
		return fmt.Errorf("%w (%T): an injector may set headers, the query and a placeholder's path segment, nothing that chooses where the credential goes", ErrDestinationChanged, inj)
	}
	size := 0
	for k, vv := range r.Header {
		if snap.unchanged(k, vv) {
			continue
		}
		c := http.CanonicalHeaderKey(k)
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("%w (%T): %q is not a valid header name", ErrHeaderRefused, inj, k)
		}
		if c == "Content-Length" && len(vv) == 1 && vv[0] == strconv.FormatInt(r.ContentLength, 10) {
			continue // SetBody corrected the client's field to the new body
		}
		if headerset.Reserved(c) || strings.HasPrefix(c, "X-Credgate-") {
			return fmt.Errorf("%w (%T): %s is reserved for the proxy (framing, hop-by-hop or gateway-scoped) and is never injected", ErrHeaderRefused, inj, c)
		}
		if len(vv) != 1 {
			return fmt.Errorf("%w (%T): %s has %d values, want one (Set, never Add)", ErrHeaderRefused, inj, c, len(vv))
		}
		if !httpguts.ValidHeaderFieldValue(vv[0]) {
			return fmt.Errorf("%w (%T): the value of %s contains a line break, NUL or other control character", ErrHeaderRefused, inj, c)
		}
		if size += len(k) + len(vv[0]); size > MaxInjectedHeaderBytes {
			return fmt.Errorf("%w (%T): the headers it set exceed %d bytes (%s and before)", ErrHeaderRefused, inj, MaxInjectedHeaderBytes, c)
		}
	}
	return nil
}

// checkPath allows one change of the path: an injector that declares a
// placeholder segment (PathPlaceholder) replaced such segments, each with
// one plain segment. The number of segments and every other segment stay
// as the policy matched them.
func checkPath(inj Injector, before, after destination) error {
	pp, ok := inj.(PathPlaceholder)
	if !ok {
		return fmt.Errorf("%w (%T): it changed the path the policy matched; only an injector that declares a placeholder segment (injectors.PathPlaceholder) may write into the path", ErrDestinationChanged, inj)
	}
	ph := pp.PathPlaceholder()
	b := strings.Split((&url.URL{Path: before.path, RawPath: before.rawPath}).EscapedPath(), "/")
	a := strings.Split((&url.URL{Path: after.path, RawPath: after.rawPath}).EscapedPath(), "/")
	if len(a) != len(b) {
		return fmt.Errorf("%w (%T): it changed the number of path segments the policy matched", ErrDestinationChanged, inj)
	}
	for i := range b {
		if a[i] == b[i] {
			continue
		}
		ext, ok := strings.CutPrefix(b[i], ph)
		if !ok || ph == "" || (ext != "" && (ext[0] != '.' || !plainSegment(ext[1:]))) {
			return fmt.Errorf("%w (%T): it changed path segment %d, which is not its placeholder %q", ErrDestinationChanged, inj, i, ph)
		}
		v, ok := strings.CutSuffix(a[i], ext)
		if !ok || !plainSegment(v) || v == "." || v == ".." {
			return fmt.Errorf("%w (%T): it wrote into path segment %d a value that is not one plain segment (letters, digits, '-', '.', '_', '~')", ErrDestinationChanged, inj, i)
		}
	}
	return nil
}

// plainSegment reports whether s is a non-empty run of RFC 3986
// unreserved characters: one segment, decoded and encoded alike, that
// every server routes the same way.
func plainSegment(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// headerSnapshot is a request's header fields as they were before the
// injector ran: each name with its values copied (an injector may change
// a value in place), in buffers the caller gives (on its stack for the
// usual request).
type headerSnapshot struct {
	fields []snapField
	vals   []string
}

type snapField struct {
	name       string // canonical
	start, end int    // in vals
}

// takeSnapshot returns h's fields, appended to fields and vals.
func takeSnapshot(h http.Header, fields []snapField, vals []string) headerSnapshot {
	for k, vv := range h {
		start := len(vals)
		vals = append(vals, vv...)
		fields = append(fields, snapField{name: http.CanonicalHeaderKey(k), start: start, end: len(vals)})
	}
	return headerSnapshot{fields: fields, vals: vals}
}

// unchanged reports whether name had exactly vv before. Names are
// compared canonically: moving a value from a non-canonical key to the
// canonical one changes nothing on the wire.
func (s headerSnapshot) unchanged(name string, vv []string) bool {
	name = http.CanonicalHeaderKey(name)
	for _, f := range s.fields {
		if f.name == name {
			return slices.Equal(s.vals[f.start:f.end], vv)
		}
	}
	return false
}

// destination is what of a request the policy decided and no injector
// may change.
type destination struct {
	method, scheme, host, opaque, hostField string
	path, rawPath                           string
	user                                    *url.Userinfo
	userText                                string
}

func destinationOf(r *http.Request) destination {
	d := destination{method: r.Method, hostField: r.Host}
	if u := r.URL; u != nil {
		d.scheme, d.host, d.opaque, d.user = u.Scheme, u.Host, u.Opaque, u.User
		d.path, d.rawPath = u.Path, u.RawPath
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
