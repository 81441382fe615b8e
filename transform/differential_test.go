package transform

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/credgate/credgate/secret"
)

// diffValue is the secret of the differential tests: letters, digits and
// '_', spelled the same raw, query-escaped and JSON-escaped, so that it is
// found literally in every reading of the substituted request.
const diffValue = "sk_SECRET_9"

// substituteOne substitutes a request with one binding of ph, allowed
// only at place, and returns the substituted raw query (target) or body,
// or the error. ctype "" means the query is substituted.
func substituteOne(t testing.TB, place Place, rawQuery, ctype, body string) (string, error) {
	t.Helper()
	return substitute(t, place, rawQuery, body, ctype == "", func(h http.Header) {
		if ctype != "" {
			h.Set("Content-Type", ctype)
		}
	})
}

// substituteHeaders is substituteOne for a body sent with a second
// Content-Type (dupType) or an empty Content-Encoding beside it.
func substituteHeaders(t testing.TB, place Place, ctype, body string, dupType bool) (string, error) {
	t.Helper()
	return substitute(t, place, "", body, false, func(h http.Header) {
		h.Set("Content-Type", ctype)
		if dupType {
			h.Add("Content-Type", "application/x-www-form-urlencoded")
		} else {
			h["Content-Encoding"] = []string{""}
		}
	})
}

// substitute substitutes a POST with rawQuery, body ("": none) and the
// header fields header sets, with one binding of ph allowed only at
// place, and returns the substituted raw query (query) or body.
func substitute(t testing.TB, place Place, rawQuery, body string, query bool, header func(http.Header)) (string, error) {
	t.Helper()
	s, err := NewSubstituter([]Binding{{Name: "b", Placeholder: ph, Value: secret.New(diffValue), Places: []Place{place}}}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.NewRequest("POST", "https://a.test/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		r.Body, r.ContentLength = nil, 0
	}
	r.URL.RawQuery = rawQuery
	header(r.Header)
	if _, err := s.TransformRequest(r); err != nil {
		return "", err
	}
	if query {
		return r.URL.RawQuery, nil
	}
	if r.Body == nil {
		return body, nil
	}
	out, err := io.ReadAll(r.Body)
	return string(out), err
}

// paramReaders are the ways servers read a `name=value&...` string: split
// on '&' only (WHATWG URL, PHP, Node, Python since 3.9.2), on '&' and ';'
// (Rack before 3, Python before 3.9.2, Go before 1.17), and Go's
// url.ParseQuery (drops a pair holding ';').
var paramReaders = map[string]func(string) [][2]string{
	"&":  func(s string) [][2]string { return splitParams(s, "&") },
	"&;": func(s string) [][2]string { return splitParams(s, "&;") },
	"go": func(s string) [][2]string {
		q, _ := url.ParseQuery(s)
		var out [][2]string
		for k, vs := range q {
			for _, v := range vs {
				out = append(out, [2]string{k, v})
			}
		}
		return out
	},
}

func splitParams(s, seps string) [][2]string {
	var out [][2]string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
		k, v, _ := strings.Cut(p, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		out = append(out, [2]string{k, v})
	}
	return out
}

// jsonSecretPointers lists the pointers of the string values holding
// diffValue in every JSON text of b (a server reading a stream of them
// reads each), and whether a key or an invalid text holds it.
func jsonSecretPointers(b []byte) (pointers []string, elsewhere bool) {
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case string:
			if strings.Contains(v, diffValue) {
				pointers = append(pointers, at)
			}
		case map[string]any:
			for k, e := range v {
				if strings.Contains(k, diffValue) {
					elsewhere = true
				}
				walk(e, at+"/"+escapePointerToken(k))
			}
		case []any:
			for i, e := range v {
				walk(e, at+"/"+strconv.Itoa(i))
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			return pointers, elsewhere
		}
		if err != nil {
			// The rest does not parse: a secret in it is in no field.
			return pointers, elsewhere || bytes.Contains(b[dec.InputOffset():], []byte(diffValue))
		}
		walk(v, "")
	}
}

// checkParamsOnly fails when, under any server's reading of out (a query
// or a form body), the secret is anywhere but in the value of parameter
// name: the gateway substituted a place the upstream reads differently.
func checkParamsOnly(t *testing.T, out, name string) {
	t.Helper()
	if !strings.Contains(out, diffValue) {
		return
	}
	for reader, read := range paramReaders {
		for _, kv := range read(out) {
			if strings.Contains(kv[0], diffValue) || strings.Contains(kv[1], diffValue) && kv[0] != name {
				t.Errorf("read as %q, %q holds the secret in parameter %q, not %q", reader, out, kv[0], name)
			}
		}
	}
	// An upstream that parses its body as JSON whatever its type.
	if ptrs, elsewhere := jsonSecretPointers([]byte(out)); len(ptrs) > 0 || elsewhere && json.Valid([]byte(out)) {
		t.Errorf("read as JSON, %q holds the secret at %v", out, ptrs)
	}
}

// TestPlacesDifferential: a named query parameter or form field is
// substituted only when every common server reads the placeholder as that
// parameter's value; when they disagree (';' that some split on, a form
// body that is JSON, multipart or XML to a server that ignores
// Content-Type) the request is refused as misplaced, with Ambiguous
// naming the cause. A body whose Content-Type or Content-Encoding is
// ambiguous is not transformed at all.
func TestPlacesDifferential(t *testing.T) {
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name      string
		place     Place
		query     string
		ctype     string
		body      string
		ambiguous bool // refused, naming the differential
		misplaced bool // refused, plainly misplaced
		untouched bool // passed unchanged: the placeholder, not the secret
	}{
		{name: "query plain", place: Place{InQuery, "key"}, query: "a=1&key=" + ph},
		{name: "query duplicate, first", place: Place{InQuery, "key"}, query: "key=" + ph + "&key=x"},
		{name: "query duplicate, last", place: Place{InQuery, "key"}, query: "key=x&key=" + ph},
		{name: "query escaped name", place: Place{InQuery, "api_key"}, query: "api%5Fkey=" + ph},
		{name: "query escaped placeholder", place: Place{InQuery, "key"}, query: "key=%43%52EDGATE_PH_stripe"},
		{name: "query '=' in value", place: Place{InQuery, "key"}, query: "key=a=" + ph},
		{name: "query ';' in the value only", place: Place{InQuery, "key"}, query: "key=a;key=" + ph},
		{name: "query ';' before the name", place: Place{InQuery, "key"}, query: "cb=x;key=" + ph, ambiguous: true},
		{name: "query ';' in the name", place: Place{InQuery, "key"}, query: "x;key=" + ph, ambiguous: true},
		{name: "query ';' then '='", place: Place{InQuery, "key"}, query: "key=x;cb=" + ph, ambiguous: true},
		{name: "query upper-case name", place: Place{InQuery, "api_key"}, query: "API_KEY=" + ph, misplaced: true},
		{name: "query array name", place: Place{InQuery, "api_key"}, query: "api_key[]=" + ph, misplaced: true},
		{name: "query escaped '&'", place: Place{InQuery, "key"}, query: "cb=x%26key=" + ph, misplaced: true},
		{name: "query escaped ';'", place: Place{InQuery, "key"}, query: "cb%3Bkey=" + ph, misplaced: true},
		{name: "query in a name", place: Place{InQuery, "key"}, query: "key" + ph + "=1", misplaced: true},
		{name: "form plain", place: Place{InForm, "token"}, ctype: form, body: "a=1&token=" + ph},
		{name: "form with charset", place: Place{InForm, "token"}, ctype: form + "; charset=utf-8", body: "token=" + ph},
		{name: "form reserved bytes", place: Place{InForm, "token"}, ctype: form, body: "a=b,c:d/e@f!'()*$[]&token=" + ph},
		{name: "form ';'", place: Place{InForm, "token"}, ctype: form, body: "text=hi;token=" + ph, ambiguous: true},
		{name: "form is JSON", place: Place{InForm, "token"}, ctype: form, body: `{"text":"a&token=` + ph + `"}`, ambiguous: true},
		{name: "form is multipart", place: Place{InForm, "token"}, ctype: form, body: "--b\r\nContent-Disposition: form-data; name=text\r\n\r\na&token=" + ph + "\r\n--b--\r\n", ambiguous: true},
		{name: "form is XML", place: Place{InForm, "token"}, ctype: form, body: "<m><text>a&token=" + ph + "</text></m>", ambiguous: true},
		{name: "form raw space", place: Place{InForm, "token"}, ctype: form, body: "text=a b&token=" + ph},
		{name: "form whole place, JSON-looking", place: Place{InForm, ""}, ctype: form, body: `{"text":"a&token=` + ph + `"}`},
		{name: "json pointer", place: Place{InJSON, "/auth/key"}, ctype: "application/json", body: `{"auth":{"key":"` + ph + `"}}`},
		{name: "json duplicate, first", place: Place{InJSON, "/auth/key"}, ctype: "application/json", body: `{"auth":{"key":"` + ph + `"},"auth":{"key":"x"}}`},
		{name: "json escaped key", place: Place{InJSON, "/auth/key"}, ctype: "application/json", body: `{"auth":{"\u006bey":"` + ph + `"}}`},
		{name: "json escaped placeholder", place: Place{InJSON, "/auth/key"}, ctype: "application/json", body: `{"auth":{"key":"\u0043REDGATE_PH_stripe"}}`, untouched: true},
		{name: "json BOM", place: Place{InJSON, "/auth/key"}, ctype: "application/json", body: "\ufeff" + `{"auth":{"key":"` + ph + `"}}`, misplaced: true},
		{name: "json comment", place: Place{InJSON, "/auth/key"}, ctype: "application/json", body: `{"auth":{"key":"` + ph + `"}} // x`, misplaced: true},
		{name: "json NaN", place: Place{InJSON, "/auth/key"}, ctype: "application/json", body: `{"n":NaN,"auth":{"key":"` + ph + `"}}`, misplaced: true},
		{name: "json deep", place: Place{InJSON, "/auth/key"}, ctype: "application/json", body: strings.Repeat("[", 20000) + `"` + ph + `"` + strings.Repeat("]", 20000), misplaced: true},
		{name: "json top-level string", place: Place{InJSON, "/auth/key"}, ctype: "application/json", body: `"` + ph + `"`, misplaced: true},
		{name: "json two Content-Types", place: Place{InJSON, "/auth/key"}, ctype: "application/json", body: `{"text":"a&token=` + ph + `"}`, untouched: true},
		{name: "form empty Content-Encoding", place: Place{InForm, "token"}, ctype: form, body: "token=" + ph, untouched: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out string
			var err error
			switch tc.name {
			case "json two Content-Types", "form empty Content-Encoding":
				out, err = substituteHeaders(t, tc.place, tc.ctype, tc.body, tc.name == "json two Content-Types")
			default:
				out, err = substituteOne(t, tc.place, tc.query, tc.ctype, tc.body)
			}
			if tc.untouched && tc.ctype != "" && err == nil && out == tc.body {
				return // the placeholder reaches the upstream as itself
			}
			var me *MisuseError
			switch {
			case tc.ambiguous || tc.misplaced:
				if !errors.As(err, &me) || !me.Misplaced || (me.Ambiguous != "") != tc.ambiguous {
					t.Fatalf("error %v, want misplaced (ambiguous %v)", err, tc.ambiguous)
				}
				if tc.ambiguous && !strings.Contains(err.Error(), me.Ambiguous) {
					t.Errorf("error %q does not say why", err)
				}
			case err != nil:
				t.Fatalf("error %v, want substituted", err)
			case tc.untouched:
				if out != tc.body {
					t.Errorf("body %q, want it unchanged", out)
				}
			case !strings.Contains(out, diffValue):
				t.Fatalf("%q: not substituted", out)
			case tc.ctype == "" || tc.place.Where == InForm && tc.place.Name != "":
				checkParamsOnly(t, out, tc.place.Name)
			case tc.place.Where == InJSON:
				// Go's reading (the last duplicate wins) may drop it;
				// no reading may put it elsewhere.
				if ptrs, elsewhere := jsonSecretPointers([]byte(out)); elsewhere || len(ptrs) > 1 || len(ptrs) == 1 && ptrs[0] != tc.place.Name {
					t.Errorf("%q: secret at %v (elsewhere %v)", out, ptrs, elsewhere)
				}
			}
		})
	}
}

// FuzzPlacesQuery: whatever the raw query, a placeholder allowed only in
// parameter key is substituted only where every reader of the query sees
// it as key's value.
func FuzzPlacesQuery(f *testing.F) {
	for _, s := range []string{"key=" + ph, "cb=x;key=" + ph, "key=x;cb=" + ph, "a=1&key=" + ph + "&key=2", "k%65y=" + ph, "key=%43REDGATE_PH_stripe", "key;=" + ph, "=key=" + ph} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out, err := substituteOne(t, Place{InQuery, "key"}, q, "", "")
		if err == nil {
			checkParamsOnly(t, out, "key")
		}
	})
}

// FuzzPlacesForm: the same for a form body, which an upstream may also
// read as JSON.
func FuzzPlacesForm(f *testing.F) {
	for _, s := range []string{"token=" + ph, "text=hi;token=" + ph, `{"text":"a&token=` + ph + `"}`, "a=b c&token=" + ph, "token=%43REDGATE_PH_stripe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if body == "" {
			return
		}
		out, err := substituteOne(t, Place{InForm, "token"}, "", "application/x-www-form-urlencoded", body)
		if err == nil {
			checkParamsOnly(t, out, "token")
		}
	})
}

// FuzzPlacesJSON: a placeholder allowed only at /auth/key of a JSON body
// is substituted only into string values at that pointer, in every JSON
// text of the body; never into a key or a part that does not parse.
func FuzzPlacesJSON(f *testing.F) {
	for _, s := range []string{`{"auth":{"key":"` + ph + `"}}`, `{"auth":{"key":"` + ph + `"},"auth":{"key":"x"}}`, `{"auth":{"\u006bey":"` + ph + `"}}`, `{"a~1b":"` + ph + `"}`, `[{"auth":{"key":"` + ph + `"}}]`, `{"auth":{"key":"\n` + ph + `"}}`, `{"auth":{"key":"` + ph + `"}} {"auth":{"key":"` + ph + `"}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if body == "" {
			return
		}
		out, err := substituteOne(t, Place{InJSON, "/auth/key"}, "", "application/json", body)
		if err != nil {
			return
		}
		ptrs, elsewhere := jsonSecretPointers([]byte(out))
		if elsewhere {
			t.Errorf("%q: the secret is in a key or a part that does not parse", out)
		}
		for _, p := range ptrs {
			if p != "/auth/key" {
				t.Errorf("%q: the secret is at %s", out, p)
			}
		}
	})
}
