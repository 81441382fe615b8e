package batch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// object is a JSON object read with every member kept: servers differ on
// which of two members of one name they take (Go and .NET the last, others
// the first), and .NET's web defaults match member names without regard
// to case, so a member whose name matches another's ignoring case is
// refused (dupKey), not read one way.
type object map[string]json.RawMessage

// readObject reads b as one JSON object.
func readObject(b []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not an object")
	}
	o := object{}
	folded := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("a member name is not a string")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		f := strings.ToLower(k)
		if folded[f] {
			return nil, &dupKey{name: k}
		}
		folded[f] = true
		o[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one value")
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("data after the object")
	}
	return o, nil
}

// dupKey: an object has two members whose names are equal ignoring case.
type dupKey struct{ name string }

func (e *dupKey) Error() string {
	return fmt.Sprintf("the member %q appears twice (or in two spellings of its case)", e.name)
}

// array reads member name of o as an array of raw values; a missing or
// null member is an empty array.
func (o object) array(name string) ([]json.RawMessage, error) {
	v, ok := o[name]
	if !ok || string(v) == "null" {
		return nil, nil
	}
	var a []json.RawMessage
	if err := json.Unmarshal(v, &a); err != nil {
		return nil, fmt.Errorf("%q is not an array", name)
	}
	return a, nil
}

// str reads member name of o as a string ("" when missing).
func (o object) str(name string) (string, error) {
	v, ok := o[name]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%q is not a string", name)
	}
	return s, nil
}

// header reads member name of o, an object of string values, as header
// fields.
func (o object) header(name string) (http.Header, error) {
	v, ok := o[name]
	if !ok || string(v) == "null" {
		return nil, nil
	}
	ho, err := readObject(v)
	if err != nil {
		return nil, fmt.Errorf("%q is not an object of header fields: %w", name, err)
	}
	h := make(http.Header, len(ho))
	for k := range ho {
		s, err := ho.str(k)
		if err != nil {
			return nil, fmt.Errorf("header field %q: %w", k, err)
		}
		h[http.CanonicalHeaderKey(k)] = []string{s}
	}
	return h, nil
}

// parseJSONRequests reads Graph's and OData's {"requests":[...]}.
func parseJSONRequests(f Format, req Request) ([]Sub, error) {
	top, err := readObject(req.Body)
	if err != nil {
		return nil, fail(-1, ErrMalformed, "its body is not a JSON object with a requests array ("+err.Error()+")")
	}
	if err := top.exact("requests"); err != nil {
		return nil, fail(-1, ErrMalformed, err.Error())
	}
	items, err := top.array("requests")
	if err != nil || len(items) == 0 {
		return nil, fail(-1, ErrMalformed, "its body has no requests array of sub-requests")
	}
	return subsOf(f, req, items, 0, "method", "url", "headers")
}

// subsOf reads items, sub-request objects whose method, url and headers
// are the members named, numbering them from first.
func subsOf(f Format, req Request, items []json.RawMessage, first int, mName, uName, hName string) ([]Sub, error) {
	if first+len(items) > maxParts {
		return nil, fail(-1, ErrTooMany, fmt.Sprintf("it has more than %d sub-requests", maxParts))
	}
	subs := make([]Sub, 0, len(items))
	for k, it := range items {
		i := first + k
		o, err := readObject(it)
		if err != nil {
			return nil, fail(i, ErrMalformed, "it is not a JSON object with unique member names ("+err.Error()+")")
		}
		if err := o.exact(mName, uName, hName); err != nil {
			return nil, fail(i, ErrMalformed, err.Error())
		}
		m, err := o.str(mName)
		if err != nil || m == "" {
			return nil, fail(i, ErrMalformed, "it has no method (a string)")
		}
		if f == SalesforceConnect {
			if m = connectMethod(m); m == "" {
				return nil, fail(i, ErrMalformed, "its method is none of the Connect batch resource's (Delete, Get, Head, Patch, Post, Put, or HttpGet and the like)")
			}
		}
		u, err := o.str(uName)
		if err != nil {
			return nil, fail(i, ErrMalformed, err.Error())
		}
		t, err := resolve(f, req, i, u)
		if err != nil {
			return nil, err
		}
		var h http.Header
		if hName != "" {
			if h, err = o.header(hName); err != nil {
				return nil, fail(i, ErrMalformed, err.Error())
			}
		}
		subs = append(subs, Sub{Index: i, Method: m, Targets: t, Header: h})
	}
	return subs, nil
}

// connectMethod is the HTTP method the Connect batch resource runs for
// its method value m, an enumeration it documents both as "Get" and as
// "HttpGet": any case of either, the method in upper case; "" for any
// other value.
func connectMethod(m string) string {
	u := strings.ToUpper(m)
	u = strings.TrimPrefix(u, "HTTP")
	switch u {
	case "DELETE", "GET", "HEAD", "PATCH", "POST", "PUT":
		return u
	}
	return ""
}

// exact refuses a member spelled like one of names but for its case
// ("URL" for "url"): a service that matches names without regard to case
// reads it as the member the gateway did not.
func (o object) exact(names ...string) error {
	for k := range o {
		for _, n := range names {
			if k != n && strings.EqualFold(k, n) {
				return fmt.Errorf("the member %q is spelled %q; send it in lower case as the service documents it", n, k)
			}
		}
	}
	return nil
}

// parseSalesforce reads the composite resources' bodies.
func parseSalesforce(f Format, req Request) ([]Sub, error) {
	top, err := readObject(req.Body)
	if err != nil {
		return nil, fail(-1, ErrMalformed, "its body is not a JSON object ("+err.Error()+")")
	}
	switch f {
	case SalesforceComposite:
		if err := top.exact("compositeRequest"); err != nil {
			return nil, fail(-1, ErrMalformed, err.Error())
		}
		items, err := top.array("compositeRequest")
		if err != nil || len(items) == 0 {
			return nil, fail(-1, ErrMalformed, "its body has no compositeRequest array of sub-requests")
		}
		return subsOf(f, req, items, 0, "method", "url", "httpHeaders")
	case SalesforceBatch, SalesforceConnect:
		if err := top.exact("batchRequests"); err != nil {
			return nil, fail(-1, ErrMalformed, err.Error())
		}
		items, err := top.array("batchRequests")
		if err != nil || len(items) == 0 {
			return nil, fail(-1, ErrMalformed, "its body has no batchRequests array of sub-requests (a Connect batch with binary parts, multipart/form-data, is not read: send it as JSON)")
		}
		hName := "httpHeaders"
		if f == SalesforceConnect {
			hName = "" // its sub-requests carry no header fields
		}
		return subsOf(f, req, items, 0, "method", "url", hName)
	}
	// SalesforceGraph
	if err := top.exact("graphs"); err != nil {
		return nil, fail(-1, ErrMalformed, err.Error())
	}
	graphs, err := top.array("graphs")
	if err != nil || len(graphs) == 0 {
		return nil, fail(-1, ErrMalformed, "its body has no graphs array")
	}
	var subs []Sub
	for _, g := range graphs {
		o, err := readObject(g)
		if err != nil {
			return nil, fail(len(subs), ErrMalformed, "a graph is not a JSON object with unique member names ("+err.Error()+")")
		}
		if err := o.exact("compositeRequest"); err != nil {
			return nil, fail(len(subs), ErrMalformed, err.Error())
		}
		items, err := o.array("compositeRequest")
		if err != nil || len(items) == 0 {
			return nil, fail(len(subs), ErrMalformed, "a graph has no compositeRequest array")
		}
		s, err := subsOf(SalesforceComposite, req, items, len(subs), "method", "url", "httpHeaders")
		if err != nil {
			return nil, err
		}
		subs = append(subs, s...)
	}
	return subs, nil
}
