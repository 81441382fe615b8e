// Package batch reads the sub-requests of request-in-request endpoints:
// Microsoft Graph's JSON batching and OData's $batch (JSON or
// multipart/mixed), Salesforce's composite resources and Google's batch
// endpoints. A service runs each sub-request of such a batch as a request
// of its own, with the credential the batch carries, so the gateway judges
// each one as it judges a top-level request before it lets the batch
// through (docs/security.md, "Request-in-request endpoints").
//
// The package knows which endpoints are batch endpoints (Lookup) and how
// to list what each sub-request asks for (Parse): its method, its request
// target as the service resolves it (origin-form, raw: the caller
// canonicalises it with the same code as a top-level request) and its
// header fields. It judges nothing itself and depends on no stage.
// Everything it reads is bounded: the body by the caller (MaxBody), the
// number of sub-requests by the endpoint (Endpoint.Max), the nesting of
// OData change sets to one level.
package batch

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode"
)

// Format is how a batch endpoint spells its sub-requests.
type Format string

// The formats Parse reads.
const (
	// Graph is Microsoft Graph's JSON batching: {"requests":[{"id",
	// "method","url","headers"}]}, each url relative to the version root
	// ("/users/x" under /v1.0/$batch is /v1.0/users/x).
	Graph Format = "graph"
	// ODataJSON is OData 4.01's JSON batch format, Graph's shape with
	// urls resolved against the batch request's URL (RFC 3986); a url
	// starting with '/' is judged both as host-relative and relative to
	// the service root, since services differ.
	ODataJSON Format = "odata-json"
	// MultipartHTTP is multipart/mixed whose parts are application/http
	// requests: Google's batch endpoints and OData's multipart $batch
	// (with one level of change sets).
	MultipartHTTP Format = "multipart-http"
	// SalesforceComposite is /composite: {"compositeRequest":[{"method",
	// "url","httpHeaders"}]}, urls host-relative (/services/data/...).
	SalesforceComposite Format = "salesforce-composite"
	// SalesforceBatch is /composite/batch: {"batchRequests":[{"method",
	// "url"}]}, urls relative to /services/data/ ("v60.0/sobjects/...").
	SalesforceBatch Format = "salesforce-batch"
	// SalesforceGraph is /composite/graph: {"graphs":[{"graphId",
	// "compositeRequest":[...]}]}.
	SalesforceGraph Format = "salesforce-graph"
	// SalesforceConnect is Connect REST API's /connect/batch:
	// {"batchRequests":[{"method","url","richInput"}],"haltOnError"},
	// each method an enumeration value ("Get", "HttpPost") and each url
	// /services/data/vNN.N/... or /vNN.N/... (under /services/data).
	SalesforceConnect Format = "salesforce-connect"
	// SalesforceRecords is /composite/sobjects and /composite/tree: the
	// records of a body name the objects acted on, not request targets;
	// Parse refuses them (ErrNotJudgeable).
	SalesforceRecords Format = "salesforce-records"
)

// Bounds of what Parse reads.
const (
	// MaxBody is the largest batch body, after any content coding is
	// decoded, that the gateway reads to judge: a larger one is refused.
	MaxBody = 1 << 20
	// maxParts bounds the parts of a multipart body, and the sub-requests
	// of any format, whatever its endpoint's Max.
	maxParts = 1000
	// maxPartHeader bounds one part's header block and one embedded
	// request's header block.
	maxPartHeader = 16 << 10
)

// Endpoint is a batch endpoint a request was sent to (Lookup).
type Endpoint struct {
	// Format is how its sub-requests are spelled.
	Format Format
	// Service names the endpoint in refusals: "Microsoft Graph $batch".
	Service string
	// Max is the most sub-requests it takes (the service's own limit);
	// more are refused.
	Max int
}

// graphHosts are the hosts of Microsoft Graph: the global service and the
// national clouds (US Government L4 and L5, China operated by 21Vianet).
var graphHosts = map[string]bool{
	"graph.microsoft.com":             true,
	"graph.microsoft.us":              true,
	"dod-graph.microsoft.us":          true,
	"microsoftgraph.chinacloudapi.cn": true,
	"canary.graph.microsoft.com":      true,
}

// Lookup returns the batch endpoint a request to host (lower case) with
// the decoded canonical path names, if it names one. contentType is the
// request's Content-Type, which picks the form of an OData $batch.
// Paths are compared without regard to case and to a trailing '/', as
// services route them:
//
//   - on Microsoft Graph's hosts (graphHosts), a path whose last segment
//     is $batch: Graph;
//   - on any host, a path whose last segment is $batch (OData's batch
//     resource): ODataJSON, or MultipartHTTP when the body is multipart;
//   - on any host (a Salesforce org's instance may be any of the hosts
//     the salesforce provider's instance_hosts admits),
//     /services/data/VERSION/[tooling/]composite and its batch, graph,
//     sobjects and tree resources, and /services/data/VERSION/connect/batch;
//   - on googleapis.com and its subdomains, /batch and paths under it:
//     MultipartHTTP.
func Lookup(host, path, contentType string) (Endpoint, bool) {
	// Every request asks (twice: admit and serve), so the path is read
	// in place: its first segments and its last, compared as
	// strings.ToLower would spell them (lowerIs), without a copy or a
	// slice of segments.
	var head [6]string // the first segments; n counts them all
	n, last := 0, ""
	for rest := strings.TrimPrefix(strings.TrimSuffix(path, "/"), "/"); ; {
		seg, tail, more := strings.Cut(rest, "/")
		if n < len(head) {
			head[n] = seg
		}
		n, last = n+1, seg
		if !more {
			break
		}
		rest = tail
	}
	switch {
	case lowerIs(last, "$batch") && graphHosts[host]:
		return Endpoint{Format: Graph, Service: "Microsoft Graph $batch", Max: 20}, true
	case lowerIs(last, "$batch") && isMultipart(contentType):
		return Endpoint{Format: MultipartHTTP, Service: "OData $batch", Max: maxParts}, true
	case lowerIs(last, "$batch"):
		return Endpoint{Format: ODataJSON, Service: "OData $batch", Max: maxParts}, true
	case host == "googleapis.com" || strings.HasSuffix(host, ".googleapis.com"):
		if lowerIs(head[0], "batch") {
			return Endpoint{Format: MultipartHTTP, Service: "Google batch", Max: 1000}, true
		}
	}
	if n >= 4 && lowerIs(head[0], "services") && lowerIs(head[1], "data") {
		// rest holds the first segments after the version, size counts
		// them all.
		rest, size := head[3:], n-3
		if size == 2 && lowerIs(rest[0], "connect") && lowerIs(rest[1], "batch") {
			return Endpoint{Format: SalesforceConnect, Service: "Salesforce Connect batch", Max: 25}, true
		}
		if lowerIs(rest[0], "tooling") {
			rest, size = rest[1:], size-1
		}
		if size == 0 || !lowerIs(rest[0], "composite") {
			return Endpoint{}, false
		}
		switch {
		case size == 1:
			return Endpoint{Format: SalesforceComposite, Service: "Salesforce composite", Max: 25}, true
		case size == 2 && lowerIs(rest[1], "batch"):
			return Endpoint{Format: SalesforceBatch, Service: "Salesforce composite batch", Max: 25}, true
		case size == 2 && lowerIs(rest[1], "graph"):
			return Endpoint{Format: SalesforceGraph, Service: "Salesforce composite graph", Max: 500}, true
		case lowerIs(rest[1], "sobjects"):
			return Endpoint{Format: SalesforceRecords, Service: "Salesforce composite sobjects", Max: 0}, true
		case lowerIs(rest[1], "tree"):
			return Endpoint{Format: SalesforceRecords, Service: "Salesforce composite tree", Max: 0}, true
		}
	}
	return Endpoint{}, false
}

// lowerIs reports whether strings.ToLower(s) == want, for want in lower
// case ASCII, without making the lowered copy: each rune of s must lower
// (unicode.ToLower, as strings.ToLower maps it) to want's byte at the
// same place. An invalid byte lowers to utf8.RuneError, never ASCII.
func lowerIs(s, want string) bool {
	i := 0
	for _, r := range s {
		if i == len(want) || unicode.ToLower(r) != rune(want[i]) {
			return false
		}
		i++
	}
	return i == len(want)
}

func isMultipart(ct string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "multipart/")
}

// Sub is one sub-request of a batch.
type Sub struct {
	// Index is its position in the batch, from 0 (in document order; the
	// sub-requests of a change set or a Salesforce graph are numbered on
	// from those before them).
	Index int
	// Method is its method as spelled.
	Method string
	// Targets are its request target, origin-form (path and query, raw),
	// as the service resolves it: more than one when services read its
	// url differently (ODataJSON), and each must be admitted.
	Targets []string
	// Header is its header fields (nil when it has none).
	Header http.Header
}

// Sentinel errors Parse wraps, for the caller's refusal code.
var (
	// ErrMalformed: the body does not parse as the endpoint's format.
	ErrMalformed = errors.New("batch: the body is not a batch of the endpoint's format")
	// ErrTooMany: more sub-requests than the endpoint takes.
	ErrTooMany = errors.New("batch: too many sub-requests")
	// ErrOtherHost: a sub-request's url names another host than the
	// batch's.
	ErrOtherHost = errors.New("batch: a sub-request names another host")
	// ErrReference: a sub-request's url holds a reference to an earlier
	// one's result (Salesforce @{...}, OData $N), which the service
	// substitutes after the gateway judged the url.
	ErrReference = errors.New("batch: a sub-request's url holds a reference")
	// ErrNotJudgeable: the endpoint's sub-requests are records, not
	// requests (Salesforce /composite/sobjects and /composite/tree).
	ErrNotJudgeable = errors.New("batch: the endpoint's operations cannot be judged one by one")
)

// Error is a Parse error that names the sub-request (Index, -1 for the
// batch as a whole) and what is wrong with it, never a value of its body.
type Error struct {
	Index   int
	Problem string
	Err     error
}

func (e *Error) Error() string { return e.Problem }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

func fail(i int, err error, problem string) error {
	return &Error{Index: i, Problem: problem, Err: err}
}

// Request is the batch request Parse reads.
type Request struct {
	// Host is the batch's destination host (lower case), Port its port
	// and Scheme its scheme: an absolute url naming another is refused.
	Host   string
	Port   int
	Scheme string
	// RawPath is the batch request's path as sent (canonical), the base
	// relative urls are resolved against.
	RawPath string
	// ContentType is its Content-Type.
	ContentType string
	// Body is its body, decoded, at most MaxBody bytes.
	Body []byte
}

// Parse lists the sub-requests of req, a request to endpoint ep. It never
// panics on any input, and allocates in proportion to the body.
func Parse(ep Endpoint, req Request) ([]Sub, error) {
	var subs []Sub
	var err error
	switch ep.Format {
	case Graph, ODataJSON:
		subs, err = parseJSONRequests(ep.Format, req)
	case SalesforceComposite, SalesforceBatch, SalesforceGraph, SalesforceConnect:
		subs, err = parseSalesforce(ep.Format, req)
	case MultipartHTTP:
		subs, err = parseMultipart(req)
	case SalesforceRecords:
		return nil, fail(-1, ErrNotJudgeable, "its records name the objects it creates, updates or deletes, not request targets, so they cannot be judged as requests")
	default:
		return nil, fail(-1, ErrMalformed, "unknown batch format "+string(ep.Format))
	}
	if err != nil {
		return nil, err
	}
	for _, s := range subs {
		for _, h := range s.Header["Host"] {
			if !sameAuthority(req, h) {
				return nil, fail(s.Index, ErrOtherHost, "its Host field names another host than the batch's")
			}
		}
	}
	if ep.Max > 0 && len(subs) > ep.Max {
		return nil, fail(-1, ErrTooMany, "it has more sub-requests than the "+ep.Service+" endpoint takes")
	}
	return subs, nil
}

// dir is the directory of a raw path: everything up to its last '/'.
func dir(raw string) string {
	if i := strings.LastIndexByte(raw, '/'); i >= 0 {
		return raw[:i+1]
	}
	return "/"
}

// absolute splits a url with a scheme or an authority ("https://h/p",
// "//h/p") into its authority and the origin-form rest; ok is false for a
// url without either.
func absolute(u string) (authority, rest string, ok bool) {
	s := u
	if i := strings.Index(s, "://"); i > 0 && !strings.ContainsAny(s[:i], "/?#") {
		s = s[i+1:]
	} else if i := strings.IndexByte(s, ':'); i > 0 && !strings.ContainsAny(s[:i], "/?#") {
		// A scheme without "//" ("mailto:x", "https:/x"): no authority the
		// gateway can check; refused by the caller as another host.
		return s[:i], "", true
	}
	if !strings.HasPrefix(s, "//") {
		return "", "", false
	}
	s = s[2:]
	j := strings.IndexAny(s, "/?#")
	if j < 0 {
		return s, "/", true
	}
	rest = s[j:]
	if rest[0] != '/' {
		rest = "/" + rest
	}
	return s[:j], rest, true
}

// sameAuthority reports whether authority names req's host and port.
func sameAuthority(req Request, authority string) bool {
	h := strings.ToLower(authority)
	if strings.Contains(h, "@") {
		return false
	}
	def := "443"
	if req.Scheme == "http" {
		def = "80"
	}
	port := def
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h, port = h[:i], h[i+1:]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	h = strings.TrimSuffix(h, ".")
	want := def
	if req.Port != 0 {
		want = strconv.Itoa(req.Port)
	}
	return h == req.Host && port == want
}

// resolve returns the targets of a sub-request url under format f of a
// batch at req.RawPath, or an error naming sub-request i.
func resolve(f Format, req Request, i int, u string) ([]string, error) {
	if u == "" {
		return nil, fail(i, ErrMalformed, "it has no url")
	}
	if q := strings.IndexByte(u, '?'); q >= 0 && f != MultipartHTTP {
		// A JSON url's query may hold spaces (Graph's own examples:
		// $filter=importance eq 'high'), which the service reads as
		// spaces: judged as %20, what a request line would carry. A
		// space in the path is refused below.
		u = u[:q] + strings.ReplaceAll(u[q:], " ", "%20")
	}
	for k := 0; k < len(u); k++ {
		if c := u[k]; c <= ' ' || c == 0x7f {
			return nil, fail(i, ErrMalformed, "its url holds a space or control character")
		}
	}
	if strings.Contains(u, "@{") || strings.HasPrefix(u, "$") || refersTo(u) {
		return nil, fail(i, ErrReference, "its url refers to the result of another sub-request (@{...} or $N), which the service substitutes after the gateway judged the url")
	}
	if auth, rest, ok := absolute(u); ok {
		if rest == "" || !sameAuthority(req, auth) {
			return nil, fail(i, ErrOtherHost, "its url names another host than the batch's")
		}
		return []string{rest}, nil
	}
	base := dir(req.RawPath)
	switch f {
	case Graph:
		// Graph resolves every url against the version root, with or
		// without its leading '/'.
		return []string{base + strings.TrimPrefix(u, "/")}, nil
	case ODataJSON:
		if strings.HasPrefix(u, "/") {
			return []string{u, base + strings.TrimPrefix(u, "/")}, nil
		}
		return []string{base + u}, nil
	case SalesforceConnect:
		// The two forms the resource documents; anything else is not
		// guessed at.
		switch l := strings.ToLower(u); {
		case strings.HasPrefix(l, "/services/"):
			return []string{u}, nil
		case len(l) > 2 && l[1] == 'v' && l[2] >= '0' && l[2] <= '9':
			return []string{"/services/data" + u}, nil
		}
		return nil, fail(i, ErrMalformed, "its url starts with neither /services/data/vNN.N/ nor /vNN.N/, the forms the Connect batch resource takes")
	case SalesforceBatch:
		if strings.HasPrefix(strings.ToLower(u), "/services/") {
			return []string{u}, nil
		}
		t := []string{"/services/data/" + strings.TrimPrefix(u, "/")}
		if strings.HasPrefix(u, "/") {
			t = append(t, u)
		}
		return t, nil
	default: // SalesforceComposite, SalesforceGraph, MultipartHTTP
		if strings.HasPrefix(u, "/") {
			return []string{u}, nil
		}
		return []string{base + u}, nil
	}
}

// refersTo reports whether u has a segment "$N" (an OData Content-ID
// reference), N a number.
func refersTo(u string) bool {
	for seg := range strings.SplitSeq(strings.SplitN(u, "?", 2)[0], "/") {
		if len(seg) > 1 && seg[0] == '$' && seg[1] >= '0' && seg[1] <= '9' {
			return true
		}
	}
	return false
}

// Formats are the formats a policy may name for an endpoint the table
// does not know (a rule's inject batch setting): those Parse judges one
// request at a time.
func Formats() []Format {
	return []Format{Graph, ODataJSON, MultipartHTTP, SalesforceComposite, SalesforceBatch, SalesforceGraph, SalesforceConnect}
}
