package azuretest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
)

// MaxDateSkew is how far x-ms-date may be from the server's clock.
const MaxDateSkew = 15 * time.Minute

// MinBearerVersion is the first x-ms-version with which the storage
// services accept an Entra bearer token.
const MinBearerVersion = "2017-11-09"

// StorageOptions configure a Storage fake.
type StorageOptions struct {
	// Certificate is the TLS certificate; default httptest's.
	Certificate *tls.Certificate
	// Account is the storage account name. Required.
	Account string
	// Key is the account key, base64 as the portal shows it. Required.
	Key string
	// CheckBearer, if set, accepts "Authorization: Bearer TOKEN" when it
	// returns nil (an Entra token for https://storage.azure.com).
	CheckBearer func(token string) error
	// Now is the server's clock; default time.Now.
	Now func() time.Time
}

// Storage is the fake Blob service of one account. Its methods are safe
// for concurrent use.
type Storage struct {
	// URL is https://127.0.0.1:PORT; Addr is 127.0.0.1:PORT.
	URL, Addr string

	srv  *httptest.Server
	opts StorageOptions
	key  []byte

	mu         sync.Mutex
	containers map[string]map[string]blob
	accepted   int
	refused    []string
	auths      []string // "SharedKey" or "Bearer" per accepted request
}

type blob struct {
	data        []byte
	contentType string
	etag        string
	modified    time.Time
}

// NewStorage starts a Storage fake; call Close when done. It panics on a
// key that is not base64 (a test's mistake).
func NewStorage(opts StorageOptions) *Storage {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	key, err := base64.StdEncoding.DecodeString(opts.Key)
	if err != nil || opts.Account == "" {
		panic("azuretest: StorageOptions need Account and a base64 Key")
	}
	s := &Storage{opts: opts, key: key, containers: map[string]map[string]blob{}}
	s.srv = fakekit.StartTLS(http.HandlerFunc(s.serve), opts.Certificate)
	s.URL = s.srv.URL
	s.Addr = s.srv.Listener.Addr().String()
	return s
}

// Close stops the server.
func (s *Storage) Close() { s.srv.Close() }

// Client returns an HTTP client trusting the server's certificate.
func (s *Storage) Client() *http.Client { return s.srv.Client() }

// CertPEM returns the PEM of the server's TLS certificate.
func (s *Storage) CertPEM() []byte { return certPEM(s.srv.Certificate()) }

// Accepted returns how many requests authenticated.
func (s *Storage) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Auths returns the scheme of each accepted request, in order.
func (s *Storage) Auths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.auths)
}

// Refused returns why requests were refused, in order.
func (s *Storage) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.refused)
}

// StringToSign is the Shared Key string to sign of r for account, as
// "Authorize with Shared Key" documents it for the Blob, Queue and File
// services (version 2015-02-21 and later): the verb, eleven standard
// headers (Content-Length empty when 0; Date empty, x-ms-date being
// signed instead), the canonicalized x-ms-* headers and the canonicalized
// resource. It is written apart from the injector so that the fake checks
// the injector rather than repeating it.
func StringToSign(r *http.Request, account string) string {
	h := r.Header
	length := h.Get("Content-Length")
	if length == "" && r.ContentLength > 0 {
		length = strconv.FormatInt(r.ContentLength, 10)
	}
	if length == "0" && h.Get("x-ms-version") >= "2015-02-21" {
		length = "" // versions before 2015-02-21 sign a zero length as "0"
	}
	var b strings.Builder
	for _, v := range []string{r.Method, h.Get("Content-Encoding"), h.Get("Content-Language"), length,
		h.Get("Content-MD5"), h.Get("Content-Type"), "", h.Get("If-Modified-Since"), h.Get("If-Match"),
		h.Get("If-None-Match"), h.Get("If-Unmodified-Since"), h.Get("Range")} {
		b.WriteString(v)
		b.WriteByte('\n')
	}
	var names []string
	for k := range h {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-ms-") {
			names = append(names, lk)
		}
	}
	sort.Slice(names, func(i, j int) bool { return serviceKey(names[i]) < serviceKey(names[j]) })
	for _, n := range names {
		b.WriteString(n + ":" + strings.TrimSpace(strings.Join(h.Values(n), ",")) + "\n")
	}
	b.WriteString("/" + account + r.URL.EscapedPath())
	q, _ := url.ParseQuery(r.URL.RawQuery)
	params := map[string][]string{}
	for k, v := range q {
		lk := strings.ToLower(k)
		params[lk] = append(params[lk], v...)
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := params[k]
		sort.Strings(v)
		b.WriteString("\n" + k + ":" + strings.Join(v, ","))
	}
	return b.String()
}

// serviceKey is a sort key of a lower-case x-ms-* name in the order the
// storage service canonicalizes headers (.NET's culture-aware "word
// sort", not byte order; the service's expected strings to sign in
// Azure/azure-sdk-for-python#10277 and #33951): first the name without
// '-' and '\”, its characters ranked '!#$%&*.^_`|~+', digits, letters;
// then, to break ties, per position: an ordinary character, the end,
// '\”, '-'.
func serviceKey(name string) string {
	const rank = "!#$%&*.^_`|~+0123456789abcdefghijklmnopqrstuvwxyz"
	var primary, ties []byte
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '\'':
			ties = append(ties, 'c')
		case c == '-':
			ties = append(ties, 'd')
		default:
			if k := strings.IndexByte(rank, c); k >= 0 {
				primary = append(primary, byte('A'+k))
			}
			ties = append(ties, 'a')
		}
	}
	// '\x00' ends the primary part below every rank; 'b' pads the ties
	// (the name's end) up to a length no name reaches.
	for len(ties) < 256 {
		ties = append(ties, 'b')
	}
	return string(primary) + "\x00" + string(ties)
}

// authenticate checks r's Authorization; it returns the scheme or why not.
func (s *Storage) authenticate(r *http.Request) (string, error) {
	auth := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(auth, "Bearer "); ok && s.opts.CheckBearer != nil {
		// "Authorize with Microsoft Entra ID" (Storage REST API): an OAuth
		// token is accepted from service version 2017-11-09 on.
		if v := r.Header.Get("x-ms-version"); v < MinBearerVersion {
			return "", fmt.Errorf("x-ms-version %q: a bearer token needs version %s or later", v, MinBearerVersion)
		}
		if err := s.opts.CheckBearer(tok); err != nil {
			return "", fmt.Errorf("bearer token refused: %w", err)
		}
		return "Bearer", nil
	}
	cred, ok := strings.CutPrefix(auth, "SharedKey ")
	if !ok {
		return "", fmt.Errorf("no SharedKey authorization")
	}
	acct, sig, ok := strings.Cut(cred, ":")
	if !ok || acct != s.opts.Account {
		return "", fmt.Errorf("authorization names account %q, not %q", acct, s.opts.Account)
	}
	d, err := http.ParseTime(r.Header.Get("x-ms-date"))
	if err != nil {
		return "", fmt.Errorf("x-ms-date missing or not an RFC 1123 date")
	}
	if now := s.opts.Now(); d.Before(now.Add(-MaxDateSkew)) || d.After(now.Add(MaxDateSkew)) {
		return "", fmt.Errorf("x-ms-date %s is more than 15 minutes from the server's time", d.Format(time.RFC3339))
	}
	if r.Header.Get("x-ms-version") == "" {
		return "", fmt.Errorf("x-ms-version missing")
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(StringToSign(r, s.opts.Account)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return "", fmt.Errorf("signature mismatch")
	}
	return "SharedKey", nil
}

func (s *Storage) storageError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, xmlEscape(msg))
}

func xmlEscape(v string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(v))
	return b.String()
}

func (s *Storage) serve(w http.ResponseWriter, r *http.Request) {
	scheme, err := s.authenticate(r)
	if err != nil {
		s.mu.Lock()
		s.refused = append(s.refused, err.Error())
		s.mu.Unlock()
		s.storageError(w, http.StatusForbidden, "AuthenticationFailed",
			"Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature. "+err.Error())
		return
	}
	s.mu.Lock()
	s.accepted++
	s.auths = append(s.auths, scheme)
	s.mu.Unlock()
	w.Header().Set("x-ms-version", r.Header.Get("x-ms-version"))
	w.Header().Set("x-ms-request-id", newID())
	container, name, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	q := r.URL.Query()
	switch {
	case container == "":
		s.storageError(w, http.StatusBadRequest, "InvalidUri", "no container")
	case name == "" && q.Get("restype") == "container" && r.Method == http.MethodPut:
		s.createContainer(w, container)
	case name == "" && q.Get("restype") == "container" && q.Get("comp") == "list" && r.Method == http.MethodGet:
		s.list(w, container, q.Get("prefix"))
	case name != "" && r.Method == http.MethodPut && q.Get("comp") == "":
		s.putBlob(w, r, container, name)
	case name != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.getBlob(w, r, container, name)
	case name != "" && r.Method == http.MethodDelete:
		s.deleteBlob(w, container, name)
	default:
		s.storageError(w, http.StatusNotImplemented, "NotImplemented", "the fake does not serve this operation")
	}
}

func (s *Storage) createContainer(w http.ResponseWriter, container string) {
	s.mu.Lock()
	_, exists := s.containers[container]
	if !exists {
		s.containers[container] = map[string]blob{}
	}
	s.mu.Unlock()
	if exists {
		s.storageError(w, http.StatusConflict, "ContainerAlreadyExists", "The specified container already exists.")
		return
	}
	w.Header().Set("ETag", `"0x1"`)
	w.Header().Set("Last-Modified", s.opts.Now().UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusCreated)
}

func (s *Storage) putBlob(w http.ResponseWriter, r *http.Request, container, name string) {
	if r.Header.Get("x-ms-blob-type") != "BlockBlob" {
		s.storageError(w, http.StatusBadRequest, "MissingRequiredHeader", "x-ms-blob-type BlockBlob is required")
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		s.storageError(w, http.StatusBadRequest, "InvalidInput", "body: "+err.Error())
		return
	}
	sum := md5.Sum(data)
	b := blob{data: data, contentType: r.Header.Get("x-ms-blob-content-type"), etag: fmt.Sprintf(`"0x%X"`, sum[:6]), modified: s.opts.Now().UTC()}
	if b.contentType == "" {
		b.contentType = "application/octet-stream"
	}
	s.mu.Lock()
	c, ok := s.containers[container]
	if ok {
		c[name] = b
	}
	s.mu.Unlock()
	if !ok {
		s.storageError(w, http.StatusNotFound, "ContainerNotFound", "The specified container does not exist.")
		return
	}
	w.Header().Set("ETag", b.etag)
	w.Header().Set("Last-Modified", b.modified.Format(http.TimeFormat))
	w.Header().Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
	w.Header().Set("x-ms-request-server-encrypted", "true")
	w.WriteHeader(http.StatusCreated)
}

func (s *Storage) lookup(container, name string) (blob, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.containers[container][name]
	return b, ok
}

func (s *Storage) getBlob(w http.ResponseWriter, r *http.Request, container, name string) {
	b, ok := s.lookup(container, name)
	if !ok {
		s.storageError(w, http.StatusNotFound, "BlobNotFound", "The specified blob does not exist.")
		return
	}
	h := w.Header()
	h.Set("Content-Type", b.contentType)
	h.Set("ETag", b.etag)
	h.Set("Last-Modified", b.modified.Format(http.TimeFormat))
	h.Set("x-ms-blob-type", "BlockBlob")
	h.Set("x-ms-creation-time", b.modified.Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.Itoa(len(b.data)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(b.data)
	}
}

func (s *Storage) deleteBlob(w http.ResponseWriter, container, name string) {
	s.mu.Lock()
	_, ok := s.containers[container][name]
	delete(s.containers[container], name)
	s.mu.Unlock()
	if !ok {
		s.storageError(w, http.StatusNotFound, "BlobNotFound", "The specified blob does not exist.")
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// listResult is the List Blobs answer.
type listResult struct {
	XMLName         xml.Name   `xml:"EnumerationResults"`
	ServiceEndpoint string     `xml:"ServiceEndpoint,attr"`
	ContainerName   string     `xml:"ContainerName,attr"`
	Prefix          string     `xml:"Prefix,omitempty"`
	Blobs           []listBlob `xml:"Blobs>Blob"`
	NextMarker      string     `xml:"NextMarker"`
}

type listBlob struct {
	Name       string `xml:"Name"`
	Properties struct {
		LastModified  string `xml:"Last-Modified"`
		Etag          string `xml:"Etag"`
		ContentLength int    `xml:"Content-Length"`
		ContentType   string `xml:"Content-Type"`
		BlobType      string `xml:"BlobType"`
	} `xml:"Properties"`
}

func (s *Storage) list(w http.ResponseWriter, container, prefix string) {
	s.mu.Lock()
	c, ok := s.containers[container]
	out := listResult{ServiceEndpoint: "https://" + s.opts.Account + ".blob.core.windows.net/", ContainerName: container, Prefix: prefix}
	for name, b := range c {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		lb := listBlob{Name: name}
		lb.Properties.LastModified = b.modified.Format(http.TimeFormat)
		lb.Properties.Etag = b.etag
		lb.Properties.ContentLength = len(b.data)
		lb.Properties.ContentType = b.contentType
		lb.Properties.BlobType = "BlockBlob"
		out.Blobs = append(out.Blobs, lb)
	}
	s.mu.Unlock()
	if !ok {
		s.storageError(w, http.StatusNotFound, "ContainerNotFound", "The specified container does not exist.")
		return
	}
	sort.Slice(out.Blobs, func(i, j int) bool { return out.Blobs[i].Name < out.Blobs[j].Name })
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(out)
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
