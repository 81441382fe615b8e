package azuretest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestTableStringToSign spells out the Table strings to sign for
// requests whose canonicalized resource keeps comp and drops every other
// parameter.
func TestTableStringToSign(t *testing.T) {
	const date = "Fri, 04 Dec 2026 08:00:00 GMT"
	r := httptest.NewRequest("PUT", "https://a.table.core.windows.net/orders?timeout=30&comp=acl", nil)
	r.Header.Set("x-ms-date", date)
	r.Header.Set("Date", "Mon, 01 Jan 2001 00:00:00 GMT")
	r.Header.Set("Content-Type", "application/xml")
	r.Header.Set("Content-MD5", "md5")
	r.Header.Set("x-ms-meta-not-signed", "x")
	if got, want := TableStringToSign(r, "acct"), "PUT\nmd5\napplication/xml\n"+date+"\n/acct/orders?comp=acl"; got != want {
		t.Errorf("SharedKey: %q, want %q", got, want)
	}
	if got, want := TableStringToSignLite(r, "acct"), date+"\n/acct/orders?comp=acl"; got != want {
		t.Errorf("SharedKeyLite: %q, want %q", got, want)
	}
	r = httptest.NewRequest("GET", "https://a.table.core.windows.net/orders(PartitionKey='a',RowKey='b')?$select=Total", nil)
	r.Header.Set("Date", date) // no x-ms-date: Date is signed
	if got, want := TableStringToSign(r, "acct"), "GET\n\n\n"+date+"\n/acct/orders(PartitionKey='a',RowKey='b')"; got != want {
		t.Errorf("Date only: %q, want %q", got, want)
	}
}

// TestTableRefuses is the fake's negative table: a request signed
// correctly is accepted, and each change the real service would catch —
// one bit of the signature, another method, path, comp, Content-Type,
// Content-MD5, date, account, scheme, a date outside 15 minutes, a
// second Authorization — is refused with 403 AuthenticationFailed. A
// query parameter other than comp is not signed by the Table service,
// so changing it is not caught (as on the real service).
func TestTableRefuses(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 64)))
	s := NewTable(TableOptions{Account: "acct", Key: key})
	defer s.Close()
	sign := func(toSign string) string {
		mac := hmac.New(sha256.New, []byte(strings.Repeat("k", 64)))
		mac.Write([]byte(toSign))
		return base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	now := time.Now().UTC().Format(http.TimeFormat)
	type req struct {
		method, path, ctype, md5, date string
	}
	good := req{"GET", "/?restype=service&comp=properties", "application/json", "", now}
	toSign := func(q req) string {
		return q.method + "\n" + q.md5 + "\n" + q.ctype + "\n" + q.date + "\n/acct" + strings.Replace(strings.Replace(q.path, "?restype=service&", "?", 1), "&restype=service", "", 1)
	}
	send := func(q req, auth ...string) int {
		r, _ := http.NewRequest(q.method, s.URL+q.path, nil)
		r.Header.Set("Content-Type", q.ctype)
		if q.md5 != "" {
			r.Header.Set("Content-MD5", q.md5)
		}
		r.Header.Set("x-ms-date", q.date)
		for _, a := range auth {
			r.Header.Add("Authorization", a)
		}
		resp, err := s.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sig := sign(toSign(good))
	if got := send(good, "SharedKey acct:"+sig); got != http.StatusOK {
		t.Fatalf("a correct signature: %d (refused %q)", got, s.Refused())
	}
	lite := sign(good.date + "\n/acct/?comp=properties")
	if got := send(good, "SharedKeyLite acct:"+lite); got != http.StatusOK {
		t.Fatalf("a correct Lite signature: %d (refused %q)", got, s.Refused())
	}
	// A parameter other than comp is not in the Table resource.
	other := good
	other.path = "/?restype=service&comp=properties&timeout=5"
	if got := send(other, "SharedKey acct:"+sig); got != http.StatusOK {
		t.Errorf("timeout added: %d, want 200 (not signed)", got)
	}

	flip := []byte(sig)
	flip[3] ^= 1
	old := time.Now().Add(-16 * time.Minute).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name string
		q    req
		auth []string
	}{
		{"one bit of the signature", good, []string{"SharedKey acct:" + string(flip)}},
		{"another method", req{"DELETE", good.path, good.ctype, "", now}, []string{"SharedKey acct:" + sig}},
		{"another path", req{"GET", "/Tables", good.ctype, "", now}, []string{"SharedKey acct:" + sig}},
		{"another comp", req{"GET", "/?restype=service&comp=stats", good.ctype, "", now}, []string{"SharedKey acct:" + sig}},
		{"another Content-Type", req{"GET", good.path, "application/xml", "", now}, []string{"SharedKey acct:" + sig}},
		{"a Content-MD5 not signed", req{"GET", good.path, good.ctype, "bWQ1", now}, []string{"SharedKey acct:" + sig}},
		{"another account", good, []string{"SharedKey other:" + sig}},
		{"the Lite signature under SharedKey", good, []string{"SharedKey acct:" + lite}},
		{"the SharedKey signature under Lite", good, []string{"SharedKeyLite acct:" + sig}},
		{"Blob's scheme name", good, []string{"Bearer " + sig}},
		{"a date 16 minutes old", req{"GET", good.path, good.ctype, "", old}, []string{"SharedKey acct:" + sign(toSign(req{"GET", good.path, good.ctype, "", old}))}},
		{"no date", req{"GET", good.path, good.ctype, "", ""}, []string{"SharedKey acct:" + sign(toSign(req{"GET", good.path, good.ctype, "", ""}))}},
		{"two Authorization headers", good, []string{"SharedKey acct:" + sig, "SharedKey acct:" + sig}},
		{"no Authorization", good, nil},
	} {
		want := http.StatusForbidden
		if len(tc.auth) > 1 {
			// fakekit.StartTLS answers a repeated credential field with
			// 400 before the Table service looks at it.
			want = http.StatusBadRequest
		}
		if got := send(tc.q, tc.auth...); got != want {
			t.Errorf("%s: %d, want %d", tc.name, got, want)
		}
	}
}
