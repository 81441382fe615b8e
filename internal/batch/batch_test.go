package batch

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLookup: the table of batch endpoints, in the spellings services
// route alike (case, a trailing '/'), and paths that are not batches.
func TestLookup(t *testing.T) {
	for _, c := range []struct {
		host, path, ct string
		want           Format
	}{
		{"graph.microsoft.com", "/v1.0/$batch", "application/json", Graph},
		{"graph.microsoft.com", "/beta/$BATCH/", "", Graph},
		{"graph.microsoft.us", "/v1.0/$batch", "", Graph},
		{"microsoftgraph.chinacloudapi.cn", "/v1.0/$batch", "", Graph},
		{"org.crm.dynamics.com", "/api/data/v9.2/$batch", "application/json", ODataJSON},
		{"org.crm.dynamics.com", "/api/data/v9.2/$batch", "multipart/mixed; boundary=x", MultipartHTTP},
		{"acme.my.salesforce.com", "/services/data/v60.0/composite", "", SalesforceComposite},
		{"custom.example", "/services/data/v60.0/Composite/Batch", "", SalesforceBatch},
		{"acme.my.salesforce.com", "/services/data/v60.0/tooling/composite/graph", "", SalesforceGraph},
		{"acme.my.salesforce.com", "/services/data/v60.0/composite/sobjects/Account", "", SalesforceRecords},
		{"acme.my.salesforce.com", "/services/data/v60.0/composite/tree/Account", "", SalesforceRecords},
		{"acme.my.salesforce.com", "/services/data/v60.0/connect/batch", "application/json", SalesforceConnect},
		{"acme.my.salesforce.com", "/services/data/v60.0/Connect/Batch/", "", SalesforceConnect},
		{"acme.my.salesforce.com", "/services/data/v60.0/connect/batch/x", "", ""},
		{"acme.my.salesforce.com", "/services/data/v60.0/chatter/feed-elements/batch", "", ""},
		{"acme.my.salesforce.com", "/services/data/v60.0/jobs/ingest", "", ""},
		{"www.googleapis.com", "/batch/drive/v3", "", MultipartHTTP},
		{"storage.googleapis.com", "/BATCH/storage/v1", "", MultipartHTTP},
		{"www.googleapis.com", "/drive/v3/files", "", ""},
		{"api.example", "/batch/x", "", ""},
		{"acme.my.salesforce.com", "/services/data/v60.0/sobjects/Account", "", ""},
		{"graph.microsoft.com", "/v1.0/users", "", ""},
	} {
		ep, ok := Lookup(c.host, c.path, c.ct)
		if ep.Format != c.want || ok != (c.want != "") {
			t.Errorf("Lookup(%s, %s) = %q %v, want %q", c.host, c.path, ep.Format, ok, c.want)
		}
	}
}

// TestParseTargets: how each format's urls resolve, the readings judged
// for an ambiguous one, and the sentinel of each refusal.
func TestParseTargets(t *testing.T) {
	req := func(path, ct, body string) Request {
		return Request{Host: "h.test", Port: 443, Scheme: "https", RawPath: path, ContentType: ct, Body: []byte(body)}
	}
	for _, c := range []struct {
		name string
		ep   Endpoint
		r    Request
		want [][]string
		err  error
	}{
		{"graph", Endpoint{Format: Graph, Max: 20}, req("/v1.0/$batch", "", `{"requests":[{"id":"1","method":"GET","url":"/users/a?$select=id"},{"id":"2","method":"GET","url":"me"}]}`),
			[][]string{{"/v1.0/users/a?$select=id"}, {"/v1.0/me"}}, nil},
		{"graph query spaces", Endpoint{Format: Graph, Max: 20}, req("/v1.0/$batch", "", `{"requests":[{"id":"1","method":"GET","url":"/me/messages?$filter=importance eq 'high'&$select=from"}]}`),
			[][]string{{"/v1.0/me/messages?$filter=importance%20eq%20'high'&$select=from"}}, nil},
		{"path space", Endpoint{Format: Graph}, req("/v1.0/$batch", "", `{"requests":[{"method":"GET","url":"/users/a b"}]}`), nil, ErrMalformed},
		{"odata both readings", Endpoint{Format: ODataJSON}, req("/svc/$batch", "", `{"requests":[{"method":"GET","url":"/svc/People"},{"method":"GET","url":"People"}]}`),
			[][]string{{"/svc/People", "/svc/svc/People"}, {"/svc/People"}}, nil},
		{"sf batch", Endpoint{Format: SalesforceBatch}, req("/services/data/v60.0/composite/batch", "", `{"batchRequests":[{"method":"GET","url":"v60.0/limits"}]}`),
			[][]string{{"/services/data/v60.0/limits"}}, nil},
		// Connect REST API's documented Batch Input: methods "Get" (and
		// "HttpGet"), urls /services/data/vNN.N/... or /vNN.N/...
		{"sf connect", Endpoint{Format: SalesforceConnect, Max: 25}, req("/services/data/v60.0/connect/batch", "application/json",
			`{"batchRequests":[{"method":"Get","url":"/v60.0/chatter/feeds/news/me/feed-elements"},{"method":"HttpPost","url":"/services/data/v60.0/chatter/feed-elements","richInput":{"subjectId":"me"}}],"haltOnError":false}`),
			[][]string{{"/services/data/v60.0/chatter/feeds/news/me/feed-elements"}, {"/services/data/v60.0/chatter/feed-elements"}}, nil},
		{"sf connect method", Endpoint{Format: SalesforceConnect}, req("/services/data/v60.0/connect/batch", "", `{"batchRequests":[{"method":"Fetch","url":"/v60.0/x"}]}`), nil, ErrMalformed},
		{"sf connect relative url", Endpoint{Format: SalesforceConnect}, req("/services/data/v60.0/connect/batch", "", `{"batchRequests":[{"method":"Get","url":"chatter/users/me"}]}`), nil, ErrMalformed},
		{"sf connect other root", Endpoint{Format: SalesforceConnect}, req("/services/data/v60.0/connect/batch", "", `{"batchRequests":[{"method":"Get","url":"/apexrest/x"}]}`), nil, ErrMalformed},
		{"sf connect reference", Endpoint{Format: SalesforceConnect}, req("/services/data/v60.0/connect/batch", "", `{"batchRequests":[{"method":"Get","url":"/v60.0/chatter/users/@{r.id}"}]}`), nil, ErrReference},
		{"sf connect multipart", Endpoint{Format: SalesforceConnect}, req("/services/data/v60.0/connect/batch", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"json\"\r\n\r\n{}\r\n--b--\r\n"), nil, ErrMalformed},
		{"multipart", Endpoint{Format: MultipartHTTP}, req("/batch/drive/v3", "multipart/mixed; boundary=b", "--b\r\nContent-Type: application/http\r\n\r\nGET /drive/v3/files\r\n\r\n--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: application/http\r\n\r\nDELETE https://h.test/x HTTP/1.1\r\n\r\n--c--\r\n--b--\r\n"),
			[][]string{{"/drive/v3/files"}, {"/x"}}, nil},
		{"too many", Endpoint{Format: Graph, Max: 1}, req("/v1.0/$batch", "", `{"requests":[{"method":"GET","url":"a"},{"method":"GET","url":"b"}]}`), nil, ErrTooMany},
		{"other host", Endpoint{Format: Graph}, req("/v1.0/$batch", "", `{"requests":[{"method":"GET","url":"//evil.test/x"}]}`), nil, ErrOtherHost},
		{"other port", Endpoint{Format: Graph}, req("/v1.0/$batch", "", `{"requests":[{"method":"GET","url":"https://h.test:8443/x"}]}`), nil, ErrOtherHost},
		{"userinfo", Endpoint{Format: Graph}, req("/v1.0/$batch", "", `{"requests":[{"method":"GET","url":"https://h.test@evil.test/x"}]}`), nil, ErrOtherHost},
		{"odata reference", Endpoint{Format: ODataJSON}, req("/svc/$batch", "", `{"requests":[{"method":"GET","url":"$1/Orders"}]}`), nil, ErrReference},
		{"trailing data", Endpoint{Format: Graph}, req("/v1.0/$batch", "", `{"requests":[{"method":"GET","url":"a"}]}{"requests":[]}`), nil, ErrMalformed},
		{"boundary in a part", Endpoint{Format: MultipartHTTP}, req("/batch/drive/v3", "multipart/mixed; boundary=b", "--b\r\nContent-Type: application/http\r\n\r\nGET /drive/v3/files\r\n\n--b\nContent-Type: application/http\n\nDELETE /drive/v3/files/x\r\n--b--\r\n"), nil, ErrMalformed},
		{"boundary in the preamble", Endpoint{Format: MultipartHTTP}, req("/batch/drive/v3", "multipart/mixed; boundary=b", "x--b\r\n--b\r\nContent-Type: application/http\r\n\r\nGET /drive/v3/files\r\n--b--\r\n"), nil, ErrMalformed},
		{"boundary in the epilogue", Endpoint{Format: MultipartHTTP}, req("/batch/drive/v3", "multipart/mixed; boundary=b", "--b\r\nContent-Type: application/http\r\n\r\nGET /drive/v3/files\r\n--b--\r\n--b\r\nContent-Type: application/http\r\n\r\nDELETE /x\r\n--b--\r\n"), nil, ErrMalformed},
		{"nested change sets", Endpoint{Format: MultipartHTTP}, req("/s/$batch", "multipart/mixed; boundary=b", "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: multipart/mixed; boundary=d\r\n\r\n--d--\r\n--c--\r\n--b--\r\n"), nil, ErrMalformed},
	} {
		subs, err := Parse(c.ep, c.r)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: error %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got [][]string
		for _, s := range subs {
			got = append(got, s.Targets)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: targets (-want +got):\n%s", c.name, diff)
		}
	}
}

// FuzzParse: no input makes Parse panic, a sub-request it returns has a
// method and targets that are origin-form, and what it allocates is
// bounded by the body (MaxBody is the caller's bound).
func FuzzParse(f *testing.F) {
	f.Add(0, `{"requests":[{"id":"1","method":"GET","url":"/users/a"}]}`, "application/json")
	f.Add(1, `{"requests":[{"method":"GET","url":"People"}]}`, "application/json")
	f.Add(2, "--b\r\nContent-Type: application/http\r\n\r\nGET /drive/v3/files\r\n\r\n--b--\r\n", "multipart/mixed; boundary=b")
	f.Add(3, `{"compositeRequest":[{"method":"GET","url":"/services/data/v60.0/limits"}]}`, "application/json")
	f.Add(4, `{"batchRequests":[{"method":"GET","url":"v60.0/limits"}]}`, "application/json")
	f.Add(5, `{"graphs":[{"graphId":"1","compositeRequest":[{"method":"GET","url":"/x"}]}]}`, "application/json")
	f.Add(7, `{"batchRequests":[{"method":"Get","url":"/v60.0/chatter/users/me"}],"haltOnError":false}`, "application/json")
	formats := []Format{Graph, ODataJSON, MultipartHTTP, SalesforceComposite, SalesforceBatch, SalesforceGraph, SalesforceRecords, SalesforceConnect}
	f.Fuzz(func(t *testing.T, which int, body, ct string) {
		if len(body) > MaxBody {
			return
		}
		ep := Endpoint{Format: formats[uint(which)%uint(len(formats))], Max: 1000}
		subs, err := Parse(ep, Request{Host: "h.test", Port: 443, Scheme: "https", RawPath: "/v1/$batch", ContentType: ct, Body: []byte(body)})
		if err != nil {
			var be *Error
			if !errors.As(err, &be) {
				t.Fatalf("error %v is not a *batch.Error", err)
			}
			return
		}
		if len(subs) > maxParts {
			t.Fatalf("%d sub-requests", len(subs))
		}
		for _, s := range subs {
			if s.Method == "" || len(s.Targets) == 0 {
				t.Fatalf("sub-request %+v has no method or target", s)
			}
			for _, tg := range s.Targets {
				if !strings.HasPrefix(tg, "/") {
					t.Fatalf("target %q is not origin-form", tg)
				}
			}
		}
	})
}
