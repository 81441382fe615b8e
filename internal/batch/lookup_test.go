package batch

import (
	"strings"
	"testing"
)

// lookupReference is Lookup as it was written before it read the path in
// place: the lowered path split into a slice of segments. FuzzLookup
// holds Lookup to it.
func lookupReference(host, path, contentType string) (Endpoint, bool) {
	p := strings.ToLower(strings.TrimSuffix(path, "/"))
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	last := segs[len(segs)-1]
	switch {
	case last == "$batch" && graphHosts[host]:
		return Endpoint{Format: Graph, Service: "Microsoft Graph $batch", Max: 20}, true
	case last == "$batch" && isMultipart(contentType):
		return Endpoint{Format: MultipartHTTP, Service: "OData $batch", Max: maxParts}, true
	case last == "$batch":
		return Endpoint{Format: ODataJSON, Service: "OData $batch", Max: maxParts}, true
	case host == "googleapis.com" || strings.HasSuffix(host, ".googleapis.com"):
		if segs[0] == "batch" {
			return Endpoint{Format: MultipartHTTP, Service: "Google batch", Max: 1000}, true
		}
	}
	if len(segs) >= 4 && segs[0] == "services" && segs[1] == "data" {
		rest := segs[3:]
		if len(rest) == 2 && rest[0] == "connect" && rest[1] == "batch" {
			return Endpoint{Format: SalesforceConnect, Service: "Salesforce Connect batch", Max: 25}, true
		}
		if rest[0] == "tooling" {
			rest = rest[1:]
		}
		if len(rest) == 0 || rest[0] != "composite" {
			return Endpoint{}, false
		}
		switch {
		case len(rest) == 1:
			return Endpoint{Format: SalesforceComposite, Service: "Salesforce composite", Max: 25}, true
		case len(rest) == 2 && rest[1] == "batch":
			return Endpoint{Format: SalesforceBatch, Service: "Salesforce composite batch", Max: 25}, true
		case len(rest) == 2 && rest[1] == "graph":
			return Endpoint{Format: SalesforceGraph, Service: "Salesforce composite graph", Max: 500}, true
		case rest[1] == "sobjects" || rest[1] == "tree":
			return Endpoint{Format: SalesforceRecords, Service: "Salesforce composite " + rest[1], Max: 0}, true
		}
	}
	return Endpoint{}, false
}

// lookupSeeds are paths at every branch of Lookup and its edges: case
// (ASCII, and runes that lower to ASCII or look like it: the Kelvin sign
// K, which lowers to 'k', the long s ſ and dotted İ, which do not), a
// trailing '/', empty and doubled segments, invalid UTF-8, and more
// segments than Lookup keeps.
var lookupSeeds = []struct{ host, path, ct string }{
	{"graph.microsoft.com", "/v1.0/$batch", "application/json"},
	{"graph.microsoft.com", "/beta/$BATCH/", ""},
	{"org.crm.dynamics.com", "/api/data/v9.2/$batch", "multipart/mixed; boundary=x"},
	{"org.crm.dynamics.com", "/api/data/v9.2/$Batch//", ""},
	{"acme.my.salesforce.com", "/services/data/v60.0/composite", ""},
	{"acme.my.salesforce.com", "/SERVICES/Data/v60.0/Composite/Batch", ""},
	{"acme.my.salesforce.com", "/services/data/v60.0/tooling/composite/graph", ""},
	{"acme.my.salesforce.com", "/services/data/v60.0/tooling/composite/sobjects/Account/x/y", ""},
	{"acme.my.salesforce.com", "/services/data/v60.0/composite/TREE/Account", ""},
	{"acme.my.salesforce.com", "/services/data/v60.0/connect/batch/", ""},
	{"acme.my.salesforce.com", "/services/data/v60.0/tooling", ""},
	{"acme.my.salesforce.com", "/services/data/v60.0/tooling/", ""},
	{"acme.my.salesforce.com", "/services/data/v60.0/composite/bat\u212Ah", ""},
	{"acme.my.salesforce.com", "/\u017Fervices/data/v60.0/composite", ""},
	{"acme.my.salesforce.com", "/services/data/v60.0/compos\u0130te", ""},
	{"acme.my.salesforce.com", "/services/data/v60.0/composite/\xffbatch", ""},
	{"acme.my.salesforce.com", "services/data/v1/composite", ""},
	{"acme.my.salesforce.com", "//services/data/v1/composite", ""},
	{"www.googleapis.com", "/batch/drive/v3", ""},
	{"www.googleapis.com", "/BATCH", ""},
	{"googleapis.com", "batch", ""},
	{"api.example", "/", ""},
	{"api.example", "", ""},
	{"api.example", "//", ""},
	{"api.example", "/a/b/c/d/e/f/g/h/$batch", ""},
}

// TestLookupAsReference: Lookup answers as lookupReference on the seeds
// (FuzzLookup goes on from them).
func TestLookupAsReference(t *testing.T) {
	for _, c := range lookupSeeds {
		checkLookup(t, c.host, c.path, c.ct)
	}
}

// FuzzLookup holds Lookup to lookupReference for any host, path and
// Content-Type.
func FuzzLookup(f *testing.F) {
	for _, c := range lookupSeeds {
		f.Add(c.host, c.path, c.ct)
	}
	f.Fuzz(checkLookup)
}

func checkLookup(t *testing.T, host, path, ct string) {
	ep, ok := Lookup(host, path, ct)
	wep, wok := lookupReference(host, path, ct)
	if ep != wep || ok != wok {
		t.Errorf("Lookup(%q, %q, %q) = %+v %v, want %+v %v", host, path, ct, ep, ok, wep, wok)
	}
}

// TestLookupAllocs: Lookup, which every request asks twice, allocates
// nothing, whatever the path's case, and whether it names a batch or not
// (a Salesforce record batch's Service is a constant, not a
// concatenation).
func TestLookupAllocs(t *testing.T) {
	for _, c := range []struct{ host, path string }{
		{"api.origin.test", "/v1/bench"},
		{"api.origin.test", "/V1/Customers/Cus_123/Sources"},
		{"api.origin.test", "/a/b/c/d/e/f/g/h/i/j"},
		{"graph.microsoft.com", "/v1.0/$BATCH"},
		{"acme.my.salesforce.com", "/services/data/v60.0/composite/sobjects/Account"},
	} {
		if n := testing.AllocsPerRun(100, func() { Lookup(c.host, c.path, "application/json") }); n != 0 {
			t.Errorf("Lookup(%s, %s) allocates %v times, want 0", c.host, c.path, n)
		}
	}
}

// BenchmarkLookup: Lookup against lookupReference (the slice of lowered
// segments it replaced) on the common request, a path that names no
// batch, in lower case and with capitals.
func BenchmarkLookup(b *testing.B) {
	for _, fn := range []struct {
		name string
		f    func(host, path, ct string) (Endpoint, bool)
	}{{"reference", lookupReference}, {"lookup", Lookup}} {
		for _, path := range []string{"/v1/bench", "/v1/Customers/cus_123/Sources"} {
			b.Run(fn.name+path, func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					fn.f("api.origin.test", path, "")
				}
			})
		}
	}
}
