package gateway

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// h2PathForms are :path values only HTTP/2 can carry, or that HTTP/2
// servers read in their own way: the asterisk, the absolute form and the
// authority form in :path, an empty one, a fragment, and raw bytes
// HTTP/1.1's request line could not hold (a space, a tab).
var h2PathForms = []string{
	"*", "", "https://api.origin.test/v1/admin", "https://api.origin.test/v1/charges",
	"//api.origin.test/v1/admin", "api.origin.test:443", "/v1/charges#x", "/v1/charges#/../admin",
	"/v1/admin#", "/v1/charges?x#y", "/v1/charges/%00", "/v1/%25", "/v1/%25admin", "/v1/ch arges",
	"/v1/charges\t", "/v1/admin\x00", "/v1/charges?%2F..%2Fadmin", "/v1/charges?/../admin",
	"?/v1/charges", "#/v1/charges", "/v1/charges?", "v1/charges",
}

// TestPathDifferentialHTTP2 is TestPathDifferential for HTTP/2 clients,
// whose :path the HTTP/2 server hands over as it arrived (written here
// frame by frame, not by a client library that would clean it): every
// spelling of TestPathDifferential and h2PathForms is refused, or reaches
// the origin as a path that each server reading of serverReadings routes
// where canonPolicy allows.
func TestPathDifferentialHTTP2(t *testing.T) {
	tg := startCanonGateway(t)
	spellings := append(pathSpellings(), h2PathForms...)
	var h *h2Raw
	stream := uint32(1)
	forwarded := 0
	for i, p := range spellings {
		if h == nil || stream > 61 {
			h, stream = h2RawTunnel(t, tg, apiHost), 1
		}
		before := len(tg.origin.all())
		id := strconv.Itoa(i)
		method := "GET"
		if p == "*" {
			method = "OPTIONS"
		}
		h.headers(stream, [][2]string{{":method", method}, {":scheme", "https"}, {":authority", apiHost}, {":path", p}, {"x-probe", id}}, true)
		a := h.read(stream)[stream]
		stream += 2
		var got *seen
		for _, s := range tg.origin.all()[before:] {
			if s.Header.Get("X-Probe") == id {
				got = &s
			}
		}
		if a.Status != "200" {
			if got != nil {
				t.Errorf("%q: answered %q (reset %v), but the origin received %q", p, a.Status, a.Reset, got.URI)
			}
			continue
		}
		if got == nil {
			t.Fatalf("%q: 200 but the origin saw no request", p)
		}
		forwarded++
		// Every server splits the query off at the first raw '?'
		// before it reads the path.
		path, _, _ := strings.Cut(got.URI, "?")
		for name, read := range serverReadings {
			n, ok := read(path)
			if !ok {
				continue
			}
			if !differentialAllowed(n) {
				t.Errorf("%q forwarded as %q: a server reading it by %q routes it to %q, which the policy does not allow", p, got.URI, name, n)
			}
		}
	}
	t.Logf("%d spellings, %d forwarded, %d refused", len(spellings), forwarded, len(spellings)-forwarded)
	if forwarded == 0 {
		t.Fatal("nothing was forwarded: the test checks nothing")
	}
}

// TestHTTP2ClientCredentialFieldsReplaced: whatever Authorization fields
// an HTTP/2 client sends beside the request an inject rule allows (one,
// two, a list, empty, in trailers), the origin receives exactly the
// injected one.
func TestHTTP2ClientCredentialFieldsReplaced(t *testing.T) {
	tg := startCanonGateway(t)
	want := "Bearer " + tg.token
	for i, tc := range []struct {
		fields, trailers [][2]string
	}{
		{fields: [][2]string{{"authorization", "Bearer client"}}},
		{fields: [][2]string{{"authorization", "Bearer client"}, {"authorization", "Bearer client2"}}},
		{fields: [][2]string{{"authorization", "Bearer client, Bearer other"}}},
		{fields: [][2]string{{"authorization", ""}}},
		{fields: [][2]string{{"authorization", "Basic eDp5"}, {"proxy-authorization", "Basic eDp5"}}},
		{fields: [][2]string{{"authorization", "Bearer client"}}, trailers: [][2]string{{"authorization", "Bearer trailer"}}},
		{trailers: [][2]string{{"authorization", "Bearer trailer"}}},
	} {
		h := h2RawTunnel(t, tg, apiHost)
		id := fmt.Sprint("cred-", i)
		f := append([][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", apiHost}, {":path", "/v1/charges/" + id}, {"x-probe", id}}, tc.fields...)
		if tc.trailers == nil {
			h.headers(1, f, true)
		} else {
			h.headers(1, f, false)
			if err := h.fr.WriteData(1, false, []byte("abc")); err != nil {
				t.Fatal(err)
			}
			h.headers(1, tc.trailers, true)
		}
		a := h.read(1)[1]
		var got *seen
		for _, s := range tg.origin.all() {
			if s.Header.Get("X-Probe") == id {
				got = &s
			}
		}
		if got == nil {
			t.Logf("%d: not forwarded: %q reset=%v %v", i, a.Status, a.Reset, a.ErrCode)
			continue
		}
		if v := got.Header.Values("Authorization"); len(v) != 1 || v[0] != want {
			t.Errorf("%d: the origin received Authorization %q, want only the injected one", i, v)
		}
		if v := got.Trailer.Values("Authorization"); len(v) != 0 {
			t.Errorf("%d: the origin received Authorization trailers %q", i, v)
		}
		if v := got.Header.Values("Proxy-Authorization"); len(v) != 0 {
			t.Errorf("%d: the origin received Proxy-Authorization %q", i, v)
		}
	}
}

// TestPathDifferentialEncodedSlashes is TestPathDifferential against a
// destination with encoded_slashes: true (npm's @scope%2Fname, GitLab's
// group%2Fproject): with %2F forwarded, no
// spelling reaches the origin as a path that a server decoding it (and
// then merging slashes and resolving dot segments, as nginx does) routes
// outside what canonPolicy allows. The spellings of TestPathDifferential
// go over HTTP/2 (one connection for many), the %2F ones over both.
func TestPathDifferentialEncodedSlashes(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	pol := strings.Replace(canonPolicy, "hosts: [api.origin.test]\n    allow_private: true\n", "hosts: [api.origin.test]\n    allow_private: true\n    encoded_slashes: true\n", 1)
	if pol == canonPolicy {
		t.Fatal("canonPolicy changed: encoded_slashes not set")
	}
	writeFile(t, tg.dir, "policy.yaml", []byte(pol))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n", tg.origin.addr))
	spellings := pathSpellings()
	generic := len(spellings) // the ones after are sent over HTTP/1.1 too
	for _, b := range []string{"/v1/admin", "/v1/secret", "/v1/private/x", "/v1/internal/"} {
		rest := strings.TrimPrefix(b, "/v1/")
		spellings = append(spellings, []string{
			"/v1/x%2F..%2F" + rest, "/v1/x%2f%2e%2e%2f" + rest, "/v1/x%2F%2E%2E/" + rest, "/v1/x/..%2F" + rest,
			"/v1/x%2F.%2F..%2F" + rest, "/v1%2F" + rest, "/v1/%2F" + rest, "/v1/x%2F%2F..%2F" + rest,
			"/v1/x%2F..%5C" + rest, "/v1/x%2F%252e%252e%2F" + rest, "/v1/x%2F%C0%AE%C0%AE%2F" + rest,
		}...)
	}
	readings := map[string]func(string) (string, bool){
		"nginx (decode, merge slashes, resolve dots)": func(p string) (string, bool) { return decodeClean(p, true) },
	}
	for k, v := range serverReadings {
		readings[k] = v
	}
	forwarded := 0
	var h *h2Raw
	stream := uint32(1)
	for i, p := range spellings {
		for _, proto := range []string{"h1", "h2"} {
			if proto == "h1" && i < generic {
				continue // TestPathDifferential sends them over HTTP/1.1
			}
			id := fmt.Sprint(proto, "-", i)
			before := len(tg.origin.all())
			ok := false
			if proto == "h1" {
				status, _ := rawRequest(t, tg, apiHost, fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nX-Probe: %s\r\n\r\n", p, apiHost, id))
				ok = status == 200
			} else {
				if h == nil || stream > 61 {
					h, stream = h2RawTunnel(t, tg, apiHost), 1
				}
				h.headers(stream, [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", apiHost}, {":path", p}, {"x-probe", id}}, true)
				ok = h.read(stream)[stream].Status == "200"
				stream += 2
			}
			var got *seen
			for _, s := range tg.origin.all()[before:] {
				if s.Header.Get("X-Probe") == id {
					got = &s
				}
			}
			if !ok {
				if got != nil {
					t.Errorf("%s %q: refused, but the origin received %q", proto, p, got.URI)
				}
				continue
			}
			if got == nil {
				t.Fatalf("%s %q: 200 but the origin saw no request", proto, p)
			}
			forwarded++
			for name, read := range readings {
				if n, ok := read(got.URI); ok && !differentialAllowed(n) {
					t.Errorf("%s %q forwarded as %q: a server reading it by %q routes it to %q, which the policy does not allow", proto, p, got.URI, name, n)
				}
			}
		}
	}
	t.Logf("%d spellings, %d requests forwarded", len(spellings), forwarded)
	if forwarded == 0 {
		t.Fatal("nothing was forwarded: the test checks nothing")
	}
}
