package azuretest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/fakekit"
)

// TableOptions configure a Table fake.
type TableOptions struct {
	// Certificate is the TLS certificate; default httptest's.
	Certificate *tls.Certificate
	// Account is the storage account name. Required.
	Account string
	// Key is the account key, base64 as the portal shows it. Required.
	Key string
	// Now is the server's clock; default time.Now.
	Now func() time.Time
}

// Table is the fake Table service of one account: Create Table, Query
// Tables, Insert Entity, Get Entity, Query Entities, Delete Entity, Get
// and Set Table ACL (?comp=acl), and Get Table Service Properties
// (?restype=service&comp=properties). Every request must carry
// Authorization "SharedKey ACCOUNT:SIG" or "SharedKeyLite ACCOUNT:SIG",
// recomputed over TableStringToSign or TableStringToSignLite with the
// account key, and a date (x-ms-date, else Date) within 15 minutes. Its
// methods are safe for concurrent use.
type Table struct {
	// URL is https://127.0.0.1:PORT; Addr is 127.0.0.1:PORT.
	URL, Addr string

	srv  *httptest.Server
	opts TableOptions
	key  []byte

	mu       sync.Mutex
	tables   map[string]map[string]json.RawMessage // table -> "pk\x00rk" -> entity
	acls     map[string][]byte
	accepted int
	schemes  []string
	refused  []string
}

// NewTable starts a Table fake; call Close when done. It panics on a key
// that is not base64 (a test's mistake).
func NewTable(opts TableOptions) *Table {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	key, err := base64.StdEncoding.DecodeString(opts.Key)
	if err != nil || opts.Account == "" {
		panic("azuretest: TableOptions need Account and a base64 Key")
	}
	s := &Table{opts: opts, key: key, tables: map[string]map[string]json.RawMessage{}, acls: map[string][]byte{}}
	s.srv = fakekit.StartTLS(http.HandlerFunc(s.serve), opts.Certificate)
	s.URL = s.srv.URL
	s.Addr = s.srv.Listener.Addr().String()
	return s
}

// Close stops the server.
func (s *Table) Close() { s.srv.Close() }

// Client returns an HTTP client trusting the server's certificate.
func (s *Table) Client() *http.Client { return s.srv.Client() }

// Accepted returns how many requests authenticated.
func (s *Table) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Schemes returns the Authorization scheme of each accepted request.
func (s *Table) Schemes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.schemes)
}

// Refused returns why requests were refused, in order.
func (s *Table) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.refused)
}

// tableDate is the date a Table request signs: x-ms-date when present,
// else Date.
func tableDate(r *http.Request) string {
	if d := r.Header.Get("x-ms-date"); d != "" {
		return d
	}
	return r.Header.Get("Date")
}

// TableCanonicalizedResource is the Table service's canonicalized
// resource ("Authorize with Shared Key", Shared Key for the Table
// service; the same for Shared Key Lite): "/" + account + the encoded
// path, and "?comp=VALUE" when the query names comp — no other
// parameter. Written apart from the injector so that the fake checks it.
func TableCanonicalizedResource(r *http.Request, account string) string {
	res := "/" + account + r.URL.EscapedPath()
	q, _ := url.ParseQuery(r.URL.RawQuery)
	if c, ok := q["comp"]; ok && len(c) > 0 {
		res += "?comp=" + c[0]
	}
	return res
}

// TableStringToSign is the Shared Key string to sign of a Table service
// request: VERB, Content-MD5, Content-Type, the date and the
// canonicalized resource, joined by newlines (no canonicalized headers,
// unlike Blob, Queue and File).
func TableStringToSign(r *http.Request, account string) string {
	return strings.Join([]string{r.Method, r.Header.Get("Content-MD5"), r.Header.Get("Content-Type"), tableDate(r),
		TableCanonicalizedResource(r, account)}, "\n")
}

// TableStringToSignLite is the Shared Key Lite string to sign of a Table
// service request: the date and the canonicalized resource.
func TableStringToSignLite(r *http.Request, account string) string {
	return tableDate(r) + "\n" + TableCanonicalizedResource(r, account)
}

// authenticate checks r's Authorization; it returns the scheme or why
// not.
func (s *Table) authenticate(r *http.Request) (string, error) {
	if n := len(r.Header.Values("Authorization")); n != 1 {
		return "", fmt.Errorf("%d Authorization headers, want one", n)
	}
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	var toSign string
	switch scheme {
	case "SharedKey":
		toSign = TableStringToSign(r, s.opts.Account)
	case "SharedKeyLite":
		toSign = TableStringToSignLite(r, s.opts.Account)
	default:
		return "", fmt.Errorf("authorization scheme %q is not SharedKey or SharedKeyLite", scheme)
	}
	acct, sig, ok := strings.Cut(cred, ":")
	if !ok || acct != s.opts.Account {
		return "", fmt.Errorf("authorization names account %q, not %q", acct, s.opts.Account)
	}
	d, err := http.ParseTime(tableDate(r))
	if err != nil {
		return "", fmt.Errorf("x-ms-date (or Date) missing or not an RFC 1123 date")
	}
	if now := s.opts.Now(); d.Before(now.Add(-MaxDateSkew)) || d.After(now.Add(MaxDateSkew)) {
		return "", fmt.Errorf("date %s is more than 15 minutes from the server's time", d.Format(time.RFC3339))
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(toSign))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(want), []byte(sig)) {
		return "", fmt.Errorf("signature mismatch (%s)", scheme)
	}
	return scheme, nil
}

func (s *Table) tableError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json;odata=minimalmetadata")
	w.Header().Set("x-ms-error-code", code)
	writeJSON(w, status, map[string]any{"odata.error": map[string]any{"code": code, "message": map[string]string{"lang": "en-US", "value": msg}}})
}

// entityRe is TABLE(PartitionKey='PK',RowKey='RK'); tableRe is TABLE or
// TABLE().
var (
	entityRe = regexp.MustCompile(`^/([A-Za-z][A-Za-z0-9]{2,62})\(PartitionKey='([^']*)',RowKey='([^']*)'\)$`)
	tableRe  = regexp.MustCompile(`^/([A-Za-z][A-Za-z0-9]{2,62})(\(\))?$`)
)

func (s *Table) serve(w http.ResponseWriter, r *http.Request) {
	scheme, err := s.authenticate(r)
	if err != nil {
		s.mu.Lock()
		s.refused = append(s.refused, err.Error())
		s.mu.Unlock()
		s.tableError(w, http.StatusForbidden, "AuthenticationFailed",
			"Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature. "+err.Error())
		return
	}
	s.mu.Lock()
	s.accepted++
	s.schemes = append(s.schemes, scheme)
	s.mu.Unlock()
	w.Header().Set("x-ms-request-id", newID())
	w.Header().Set("x-ms-version", r.Header.Get("x-ms-version"))
	q := r.URL.Query()
	path := r.URL.Path
	switch {
	case path == "/" && q.Get("restype") == "service" && q.Get("comp") == "properties" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/xml")
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties><Logging><Version>1.0</Version><Delete>false</Delete><Read>false</Read><Write>false</Write><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></Logging></StorageServiceProperties>`)
	case path == "/Tables" && r.Method == http.MethodPost:
		s.createTable(w, r)
	case path == "/Tables" && r.Method == http.MethodGet:
		s.mu.Lock()
		names := make([]map[string]string, 0, len(s.tables))
		for n := range s.tables {
			names = append(names, map[string]string{"TableName": n})
		}
		s.mu.Unlock()
		sort.Slice(names, func(i, j int) bool { return names[i]["TableName"] < names[j]["TableName"] })
		writeJSON(w, http.StatusOK, map[string]any{"value": names})
	case q.Get("comp") == "acl" && tableRe.MatchString(path):
		s.acl(w, r, tableRe.FindStringSubmatch(path)[1])
	case entityRe.MatchString(path):
		m := entityRe.FindStringSubmatch(path)
		s.entity(w, r, m[1], m[2]+"\x00"+m[3])
	case tableRe.MatchString(path) && r.Method == http.MethodPost:
		s.insert(w, r, tableRe.FindStringSubmatch(path)[1])
	case tableRe.MatchString(path) && r.Method == http.MethodGet:
		s.query(w, tableRe.FindStringSubmatch(path)[1])
	default:
		s.tableError(w, http.StatusNotImplemented, "NotImplemented", "the fake does not serve this operation")
	}
}

func readJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

func (s *Table) createTable(w http.ResponseWriter, r *http.Request) {
	var body struct{ TableName string }
	if err := readJSON(r, &body); err != nil || !tableRe.MatchString("/"+body.TableName) {
		s.tableError(w, http.StatusBadRequest, "InvalidInput", "TableName missing or invalid")
		return
	}
	s.mu.Lock()
	_, exists := s.tables[body.TableName]
	if !exists {
		s.tables[body.TableName] = map[string]json.RawMessage{}
	}
	s.mu.Unlock()
	if exists {
		s.tableError(w, http.StatusConflict, "TableAlreadyExists", "The table specified already exists.")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"TableName": body.TableName})
}

func (s *Table) insert(w http.ResponseWriter, r *http.Request, table string) {
	var raw json.RawMessage
	var keys struct{ PartitionKey, RowKey *string }
	if err := readJSON(r, &raw); err != nil || json.Unmarshal(raw, &keys) != nil || keys.PartitionKey == nil || keys.RowKey == nil {
		s.tableError(w, http.StatusBadRequest, "InvalidInput", "PartitionKey and RowKey are required")
		return
	}
	s.mu.Lock()
	t, ok := s.tables[table]
	_, dup := t[*keys.PartitionKey+"\x00"+*keys.RowKey]
	if ok && !dup {
		t[*keys.PartitionKey+"\x00"+*keys.RowKey] = raw
	}
	s.mu.Unlock()
	switch {
	case !ok:
		s.tableError(w, http.StatusNotFound, "TableNotFound", "The table specified does not exist.")
	case dup:
		s.tableError(w, http.StatusConflict, "EntityAlreadyExists", "The specified entity already exists.")
	default:
		w.Header().Set("ETag", `W/"datetime'`+url.QueryEscape(s.opts.Now().UTC().Format(time.RFC3339Nano))+`'"`)
		w.Header().Set("Content-Type", "application/json;odata=minimalmetadata")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(raw)
	}
}

func (s *Table) entity(w http.ResponseWriter, r *http.Request, table, key string) {
	s.mu.Lock()
	t, ok := s.tables[table]
	e, found := t[key]
	if found && r.Method == http.MethodDelete {
		delete(t, key)
	}
	s.mu.Unlock()
	switch {
	case !ok:
		s.tableError(w, http.StatusNotFound, "TableNotFound", "The table specified does not exist.")
	case !found:
		s.tableError(w, http.StatusNotFound, "ResourceNotFound", "The specified resource does not exist.")
	case r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/json;odata=minimalmetadata")
		_, _ = w.Write(e)
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		s.tableError(w, http.StatusNotImplemented, "NotImplemented", "the fake does not serve this operation")
	}
}

func (s *Table) query(w http.ResponseWriter, table string) {
	s.mu.Lock()
	t, ok := s.tables[table]
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]json.RawMessage, 0, len(keys))
	for _, k := range keys {
		out = append(out, t[k])
	}
	s.mu.Unlock()
	if !ok {
		s.tableError(w, http.StatusNotFound, "TableNotFound", "The table specified does not exist.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
}

func (s *Table) acl(w http.ResponseWriter, r *http.Request, table string) {
	s.mu.Lock()
	_, ok := s.tables[table]
	s.mu.Unlock()
	if !ok {
		s.tableError(w, http.StatusNotFound, "TableNotFound", "The table specified does not exist.")
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.mu.Lock()
		body := s.acls[table]
		s.mu.Unlock()
		if body == nil {
			body = []byte(`<?xml version="1.0" encoding="utf-8"?><SignedIdentifiers />`)
		}
		w.Header().Set("Content-Type", "application/xml")
		_, _ = w.Write(body)
	case http.MethodPut:
		data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			s.tableError(w, http.StatusBadRequest, "InvalidInput", "body")
			return
		}
		s.mu.Lock()
		s.acls[table] = data
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		s.tableError(w, http.StatusNotImplemented, "NotImplemented", "the fake does not serve this operation")
	}
}
