// Package azuresharedkey is the "azure-sharedkey" injector: it signs
// requests to Azure Storage (Blob, Queue, File, Data Lake, Table) with the
// storage account's key, as "Authorize with Shared Key" documents it.
// Applications keep their Azure SDKs and tools, configured with no key
// (azblob.NewClientWithNoCredential) or a placeholder key; the gateway
// throws the client's signature away and signs again.
//
// # Settings
//
//	as: azure-sharedkey
//	account: acmereports        # optional: default the credential's account_name, else the host's first label
//	key_field: account_key      # optional: the credential field holding the base64 account key (default account_key, then token)
//	version: 2025-05-05         # optional: x-ms-version to force; default the client's, else DefaultVersion
//	service: auto               # optional: auto (by host), table, or blob/queue/file/dfs (one signing)
//	scheme: SharedKey           # optional: SharedKey, or SharedKeyLite (Table service only)
//
// # What is signed
//
//	Authorization: SharedKey ACCOUNT:base64(HMAC-SHA256(base64-decoded key, StringToSign))
//
// where StringToSign is the verb, Content-Encoding, Content-Language,
// Content-Length (empty when 0), Content-MD5, Content-Type, Date (empty:
// x-ms-date is signed instead), If-Modified-Since, If-Match,
// If-None-Match, If-Unmodified-Since and Range, each followed by a
// newline, then the canonicalized headers (every x-ms-* header, name
// lower-cased, sorted in the service's order (compareHeaderNames: not
// byte order), "name:value\n") and the canonicalized resource
// (/ACCOUNT/PATH as on the wire, then per query parameter, names
// lower-cased and sorted, "\nname:value[,value...]" with values decoded
// and sorted). The injector sets x-ms-date to the current time and
// x-ms-version when the client sent none (or always, with version).
//
// The Table service signs otherwise (table.go): VERB, Content-MD5,
// Content-Type, the date (x-ms-date) and a canonicalized resource that
// keeps only the comp query parameter; Shared Key Lite for Table signs
// the date and that resource alone. A request to ACCOUNT.table.core.
// windows.net (or a sovereign cloud's) is signed so with service auto.
//
// The body is never read: Shared Key covers Content-Length and
// Content-MD5 but not the bytes, so uploads stream through untouched.
//
// The client's Authorization and x-ms-date are removed (Headers lists
// them). A SAS URL (sig= in the query) is refused with 400
// (injectors.ErrUnsupportedRequest): a client presenting its own
// signature has a credential of its own and should not route the request
// through a rule that signs.
package azuresharedkey

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// Name is the injector's registered name.
const Name = "azure-sharedkey"

func init() {
	injectors.Register(injectors.Module{
		Name: Name,
		Doc:  "Azure Storage Shared Key re-signing (Blob, Queue, File, Data Lake; Table with Shared Key or Shared Key Lite), bodies streamed unread",
		SettingDocs: map[string]string{
			"account":   "the storage account name (default: the credential's account_name, else the host's first label)",
			"key_field": "credential field holding the base64 account key (default account_key, then token)",
			"version":   "x-ms-version to force (default: the client's, else " + DefaultVersion + ", " + DefaultTableVersion + " for the Table service)",
			"service":   "auto (default: the Table service's signing for ACCOUNT.table.core.windows.net, else Blob/Queue/File's), table, or blob, queue, file, dfs",
			"scheme":    "SharedKey (default) or SharedKeyLite (Table service only; needs service: table)",
		},
		New: func() injectors.Injector { return new(Injector) },
	})
}

// Defaults and names.
const (
	// DefaultVersion is the x-ms-version set when the client sent none.
	DefaultVersion = "2025-05-05"
	// FieldAccountKey is the default credential field of the account key.
	FieldAccountKey = "account_key"
	// FieldAccountName is the credential field that may name the account.
	FieldAccountName = "account_name"
	// minVersion is the first service version whose StringToSign has an
	// empty Content-Length for 0 and that this injector signs for.
	minVersion = "2015-02-21"

	hdrAuthorization = "Authorization"
	hdrDate          = "X-Ms-Date"
	hdrVersion       = "X-Ms-Version"
)

// storageSuffixes are the Azure Storage domains of the public and
// sovereign clouds, from which the account name is the first label.
var storageSuffixes = []string{".core.windows.net", ".core.usgovcloudapi.net", ".core.chinacloudapi.cn"}

var (
	accountRe = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	versionRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

// Injector is the "azure-sharedkey" injector. See the package
// documentation.
type Injector struct {
	// Account is the storage account name. Default: the credential's
	// account_name field, else the first label of an Azure Storage host.
	Account string `yaml:"account"`
	// KeyField is the credential field holding the base64 account key.
	// Default account_key, then token.
	KeyField string `yaml:"key_field"`
	// Version, if set, is the x-ms-version sent, replacing the client's.
	Version string `yaml:"version"`
	// Service selects the string to sign: auto (default: by host), table,
	// or blob, queue, file, dfs (which sign alike).
	Service string `yaml:"service"`
	// Scheme is SharedKey (default) or SharedKeyLite (Table only).
	Scheme string `yaml:"scheme"`

	now func() time.Time // the signing clock; tests set it
}

// Provision applies the defaults.
func (s *Injector) Provision() error {
	if s.now == nil {
		s.now = time.Now
	}
	return nil
}

// Validate checks the settings.
func (s *Injector) Validate() error {
	if s.Account != "" && !accountRe.MatchString(s.Account) {
		return fmt.Errorf("%s: account %q is not a storage account name (3 to 24 lower-case letters and digits)", Name, s.Account)
	}
	if s.Version != "" && (!versionRe.MatchString(s.Version) || s.Version < minVersion) {
		return fmt.Errorf("%s: version %q is not a storage service version such as %s (%s or later)", Name, s.Version, DefaultVersion, minVersion)
	}
	return s.validateTable()
}

// Headers implements injectors.HeaderNames: the client's signature and
// date, which the gateway removes before Inject (and x-ms-version when
// version forces it).
func (s *Injector) Headers() []string {
	if s.Version != "" {
		return []string{hdrAuthorization, hdrDate, hdrVersion}
	}
	return []string{hdrAuthorization, hdrDate}
}

// account returns the account name for r.
func (s *Injector) account(r *http.Request, cred *providers.Credential) (string, error) {
	if s.Account != "" {
		return s.Account, nil
	}
	if v, ok := cred.Field(FieldAccountName); ok {
		if a := v.Reveal(); accountRe.MatchString(a) {
			return a, nil
		}
		return "", fmt.Errorf("%s: the credential's account_name is not a storage account name: %w", Name, injectors.ErrInvalidValue)
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
		if strings.HasSuffix(host, suf) {
			if a, _, _ := strings.Cut(host, "."); accountRe.MatchString(a) {
				return a, nil
			}
		}
	}
	return "", fmt.Errorf("%s: host %s is not ACCOUNT.SERVICE.core.windows.net (or a sovereign cloud's): set account in the rule: %w", Name, host, injectors.ErrRequest)
}

// Inject signs r. Everything that can fail (the key, the account, a SAS
// URL) is checked before r is changed; the body is not touched.
func (s *Injector) Inject(r *http.Request, cred *providers.Credential) error {
	if raw := r.URL.RawQuery; strings.Contains(raw, "sig=") || strings.Contains(raw, "%") {
		if q, _ := url.ParseQuery(raw); q.Has("sig") {
			return fmt.Errorf("%s: a SAS URL (sig in the query) is not re-signed; send the request without a SAS through this rule: %w", Name, injectors.ErrUnsupportedRequest)
		}
	}
	field := s.KeyField
	if field == "" {
		field = FieldAccountKey
	}
	v, ok := cred.Field(field)
	if !ok && s.KeyField == "" {
		v, ok = cred.Field(providers.FieldToken)
	}
	if !ok {
		return fmt.Errorf("%s: credential has no %q field holding the account key: %w", Name, field, injectors.ErrMissingField)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v.Reveal()))
	if err != nil || len(key) == 0 {
		return fmt.Errorf("%s: the account key in field %q is not base64; give key1 or key2 from the storage account's Access keys page as shown: %w", Name, field, injectors.ErrInvalidValue)
	}
	account, err := s.account(r, cred)
	if err != nil {
		return err
	}
	if s.isTable(r) {
		s.signTable(r, key, account)
		return nil
	}
	// Everything checked: rewrite.
	canonicalXMS(r.Header)
	r.Header.Set(hdrDate, s.now().UTC().Format(http.TimeFormat))
	if s.Version != "" {
		r.Header.Set(hdrVersion, s.Version)
	} else if r.Header.Get(hdrVersion) == "" {
		r.Header.Set(hdrVersion, DefaultVersion)
	}
	var buf [512]byte
	mac := hmac.New(sha256.New, key)
	mac.Write(appendStringToSign(buf[:0], r, account))
	var sum [sha256.Size]byte
	r.Header.Set(hdrAuthorization, "SharedKey "+account+":"+base64.StdEncoding.EncodeToString(mac.Sum(sum[:0])))
	return nil
}

// canonicalXMS moves x-ms-* headers set under a non-canonical key (an
// SDK writing the map directly) to their canonical key, so that a client
// copy is replaced, not doubled, and each name is signed once.
func canonicalXMS(h http.Header) {
	for k, v := range h {
		if len(k) > 5 && strings.EqualFold(k[:5], "x-ms-") {
			if ck := http.CanonicalHeaderKey(k); ck != k {
				delete(h, k)
				if ck == hdrDate {
					continue
				}
				h[ck] = append(h[ck], v...)
			}
		}
	}
}

// get is h.Get for a key already in canonical form, without
// canonicalizing it again (a dozen lookups per request).
func get(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// appendStringToSign appends r's StringToSign for account to b.
func appendStringToSign(b []byte, r *http.Request, account string) []byte {
	h := r.Header
	line := func(v string) { b = append(append(b, v...), '\n') }
	line(r.Method)
	line(get(h, "Content-Encoding"))
	line(get(h, "Content-Language"))
	switch {
	case r.ContentLength > 0:
		b = append(strconv.AppendInt(b, r.ContentLength, 10), '\n')
	case r.ContentLength == 0 && get(h, hdrVersion) < minVersion:
		line("0") // versions before 2015-02-21 sign a zero length
	default:
		line("") // 0, or unknown (sent chunked, without Content-Length)
	}
	line(get(h, "Content-Md5"))
	line(get(h, "Content-Type"))
	line("") // Date: x-ms-date is signed instead
	line(get(h, "If-Modified-Since"))
	line(get(h, "If-Match"))
	line(get(h, "If-None-Match"))
	line(get(h, "If-Unmodified-Since"))
	line(get(h, "Range"))

	var arr [16]string
	names := arr[:0]
	for k := range h {
		if len(k) > 5 && strings.EqualFold(k[:5], "x-ms-") {
			names = append(names, k)
		}
	}
	slices.SortFunc(names, compareHeaderNames)
	for _, k := range names {
		for _, c := range []byte(k) {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
		}
		b = append(b, ':')
		for i, v := range h[k] {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, strings.TrimSpace(v)...)
		}
		b = append(b, '\n')
	}

	b = append(append(append(b, '/'), account...), r.URL.EscapedPath()...)
	if r.URL.RawQuery == "" {
		return b
	}
	q, _ := url.ParseQuery(r.URL.RawQuery)
	params := make(map[string][]string, len(q))
	for k, v := range q {
		lk := strings.ToLower(k)
		params[lk] = append(params[lk], v...)
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := params[k]
		slices.Sort(v)
		b = append(append(append(b, '\n'), k...), ':')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, x...)
		}
	}
	return b
}

// SignatureOnly marks the injector as putting no reusable secret on the
// request: the account key only signs, and the account name it sends is
// public (it is the storage host's first label). Its rules pass Range
// and x-ms-range requests by default (policy ranges:), so the SDKs'
// ranged blob downloads work.
func (*Injector) SignatureOnly() {}

// primaryOrder lists the characters that count in the first comparison
// of two x-ms-* header names, in the order Azure Storage ranks them; '-'
// and the apostrophe count only to break ties, and letters compare
// without case.
const primaryOrder = "!#$%&*.^_`|~+0123456789abcdefghijklmnopqrstuvwxyz"

// primaryWeight is 1 + the index in primaryOrder (upper-case letters
// weigh as lower-case ones), 0 for characters the first comparison skips.
var primaryWeight = func() (w [256]uint8) {
	for i := 0; i < len(primaryOrder); i++ {
		c := primaryOrder[i]
		w[c] = uint8(i + 1)
		if 'a' <= c && c <= 'z' {
			w[c-'a'+'A'] = uint8(i + 1)
		}
	}
	return w
}()

// compareHeaderNames orders x-ms-* header names as Azure Storage does
// when it canonicalizes them, which is not byte order: the service sorts
// with .NET's culture-aware comparison ("word sort"), as the Azure SDKs
// mirror (azblob's weight tables; the service's expected string-to-sign in
// Azure/azure-sdk-for-python#10277 and #33951). '_' sorts before digits
// (x-ms-meta-i_ before x-ms-meta-i0), '+' after '~', and '-' and '\”
// are skipped, then decide ties: at the first position where the names
// differ in them, an ordinary character comes first, then the name's
// end, then '\”, then '-'.
func compareHeaderNames(a, b string) int {
	i, j := 0, 0
	for {
		for i < len(a) && primaryWeight[a[i]] == 0 {
			i++
		}
		for j < len(b) && primaryWeight[b[j]] == 0 {
			j++
		}
		if i == len(a) || j == len(b) {
			if i != len(a) || j != len(b) {
				return cmp.Compare(len(a)-i, len(b)-j) // the one that ran out first
			}
			break
		}
		if wa, wb := primaryWeight[a[i]], primaryWeight[b[j]]; wa != wb {
			return cmp.Compare(wa, wb)
		}
		i, j = i+1, j+1
	}
	for k := 0; k < len(a) || k < len(b); k++ {
		if ra, rb := tieRank(a, k), tieRank(b, k); ra != rb {
			return cmp.Compare(ra, rb)
		}
	}
	return strings.Compare(a, b)
}

// tieRank ranks s's byte at k for compareHeaderNames' tie-break.
func tieRank(s string, k int) int {
	switch {
	case k >= len(s):
		return 1
	case s[k] == '\'':
		return 2
	case s[k] == '-':
		return 3
	}
	return 0
}

// Interface guards.
var (
	_ injectors.SignatureOnly = (*Injector)(nil)
	_ injectors.Injector      = (*Injector)(nil)
	_ injectors.HeaderNames   = (*Injector)(nil)
	_ injectors.Provisioner   = (*Injector)(nil)
	_ injectors.Validator     = (*Injector)(nil)
)
