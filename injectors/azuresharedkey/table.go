package azuresharedkey

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Services and schemes (settings service and scheme).
const (
	ServiceAuto  = "auto"
	ServiceTable = "table"
	// SchemeSharedKey and SchemeSharedKeyLite are the Authorization
	// schemes.
	SchemeSharedKey     = "SharedKey"
	SchemeSharedKeyLite = "SharedKeyLite"
	// DefaultTableVersion is the x-ms-version set on a Table request when
	// the client sent none (the version the Azure Tables SDKs send).
	DefaultTableVersion = "2019-02-02"
)

// validateTable checks service and scheme.
func (s *Injector) validateTable() error {
	switch s.Service {
	case "", ServiceAuto, ServiceTable, "blob", "queue", "file", "dfs":
	default:
		return fmt.Errorf("%s: service %q is not auto, table, blob, queue, file or dfs", Name, s.Service)
	}
	switch s.Scheme {
	case "", SchemeSharedKey:
	case SchemeSharedKeyLite:
		if s.Service != ServiceTable {
			return fmt.Errorf("%s: scheme SharedKeyLite is signed for the Table service only; set service: table (Blob, Queue and File take SharedKey)", Name)
		}
	default:
		return fmt.Errorf("%s: scheme %q is not SharedKey or SharedKeyLite", Name, s.Scheme)
	}
	return nil
}

// isTable reports whether r is signed as a Table service request: by
// setting, or with service auto by its host, ACCOUNT.table.SUFFIX of the
// public or a sovereign cloud.
func (s *Injector) isTable(r *http.Request) bool {
	switch s.Service {
	case ServiceTable:
		return true
	case "", ServiceAuto:
	default:
		return false
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, suf := range storageSuffixes {
		if rest, ok := strings.CutSuffix(host, suf); ok {
			_, svc, _ := strings.Cut(rest, ".")
			return svc == ServiceTable
		}
	}
	return false
}

// signTable sets x-ms-date, x-ms-version and the Table service's
// Authorization on r: SharedKey over VERB, Content-MD5, Content-Type, the
// date and the canonicalized resource, or SharedKeyLite over the date
// and the canonicalized resource ("Authorize with Shared Key": Table
// service, and Shared Key Lite). The date is x-ms-date, which the
// gateway sets: the service takes it over Date.
func (s *Injector) signTable(r *http.Request, key []byte, account string) {
	canonicalXMS(r.Header)
	date := s.now().UTC().Format(http.TimeFormat)
	r.Header.Set(hdrDate, date)
	if s.Version != "" {
		r.Header.Set(hdrVersion, s.Version)
	} else if r.Header.Get(hdrVersion) == "" {
		r.Header.Set(hdrVersion, DefaultTableVersion)
	}
	scheme := SchemeSharedKey
	if s.Scheme == SchemeSharedKeyLite {
		scheme = SchemeSharedKeyLite
	}
	var buf [256]byte
	b := buf[:0]
	if scheme == SchemeSharedKey {
		b = append(append(b, r.Method...), '\n')
		b = append(append(b, get(r.Header, "Content-Md5")...), '\n')
		b = append(append(b, get(r.Header, "Content-Type")...), '\n')
	}
	b = append(append(b, date...), '\n')
	b = appendTableResource(b, r.URL, account)
	mac := hmac.New(sha256.New, key)
	mac.Write(b)
	var sum [sha256.Size]byte
	r.Header.Set(hdrAuthorization, scheme+" "+account+":"+base64.StdEncoding.EncodeToString(mac.Sum(sum[:0])))
}

// appendTableResource appends the Table service's canonicalized
// resource: "/" + account + the path as sent, then "?comp=" + comp's
// value (decoded; the first, when repeated) when the query has comp; no
// other query parameter.
func appendTableResource(b []byte, u *url.URL, account string) []byte {
	b = append(append(append(b, '/'), account...), u.EscapedPath()...)
	if u.RawQuery == "" {
		return b
	}
	q, _ := url.ParseQuery(u.RawQuery)
	if v := q["comp"]; len(v) > 0 {
		return append(append(b, "?comp="...), v[0]...)
	}
	return b
}
