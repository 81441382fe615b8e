package transform

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/secret"
)

const (
	ph      = "CREDGATE_PH_stripe"
	otherPh = "CREDGATE_PH_github"
	// value has bytes each position escapes differently.
	value = `sk/live "1"+2`
)

func substituter(t testing.TB, opts Options) *Substituter {
	t.Helper()
	s, err := NewSubstituter(
		[]Binding{{Name: "stripe.token", Placeholder: ph, Value: secret.New(value)}},
		[]Tripwire{{Name: "github.token", Placeholder: otherPh}},
		opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newRequest(t testing.TB, target, ctype, body string) *http.Request {
	t.Helper()
	var r *http.Request
	var err error
	if body == "" {
		r, err = http.NewRequest("POST", target, nil)
	} else {
		r, err = http.NewRequest("POST", target, strings.NewReader(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	return r
}

func TestTransformRequestPositions(t *testing.T) {
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name           string
		target, header string
		ctype, body    string
		wantURL        string
		wantHeader     string
		wantBody       string
		want           []Position
	}{
		{name: "header", target: "https://api.example.com/v1", header: "Bearer " + ph,
			wantURL: "https://api.example.com/v1", wantHeader: "Bearer " + value,
			want: []Position{{Where: InHeader, Header: "X-Test", Binding: "stripe.token", Count: 1}}},
		{name: "basic", target: "https://api.example.com/v1", header: basic("user:" + ph),
			wantURL: "https://api.example.com/v1", wantHeader: basic("user:" + value),
			want: []Position{{Where: InBasicAuth, Header: "Authorization", Binding: "stripe.token", Count: 1}}},
		{name: "path segment", target: "https://api.telegram.org/bot" + ph + "/send",
			wantURL: "https://api.telegram.org/bot" + url.PathEscape(value) + "/send",
			want:    []Position{{Where: InPath, Binding: "stripe.token", Count: 1}}},
		{name: "path escaped placeholder bytes", target: "https://api.example.com/a/CREDGATE%5FPH_stripe/b%20c",
			wantURL: "https://api.example.com/a/" + url.PathEscape(value) + "/b%20c",
			want:    []Position{{Where: InPath, Binding: "stripe.token", Count: 1}}},
		{name: "query", target: "https://api.example.com/v1?key=" + ph + "&x=a%20b&k2=CREDGATE_PH%5fstripe",
			wantURL: "https://api.example.com/v1?key=" + url.QueryEscape(value) + "&x=a%20b&k2=" + url.QueryEscape(value),
			want:    []Position{{Where: InQuery, Binding: "stripe.token", Count: 2}}},
		{name: "form", target: "https://slack.com/api/chat", ctype: "application/x-www-form-urlencoded",
			body: "token=" + ph + "&text=hi+there", wantURL: "https://slack.com/api/chat",
			wantBody: "token=" + url.QueryEscape(value) + "&text=hi+there",
			want:     []Position{{Where: InForm, Binding: "stripe.token", Count: 1}}},
		{name: "json", target: "https://api.example.com/oauth", ctype: "application/json; charset=utf-8",
			body: `{"client_secret": "` + ph + `", "n": 1}`, wantURL: "https://api.example.com/oauth",
			wantBody: `{"client_secret": "sk/live \"1\"+2", "n": 1}`,
			want:     []Position{{Where: InJSON, Binding: "stripe.token", Count: 1}}},
		{name: "other body type untouched", target: "https://api.example.com/up", ctype: "text/plain",
			body: ph, wantURL: "https://api.example.com/up", wantBody: ph},
		{name: "nothing", target: "https://api.example.com/v1?a=b", wantURL: "https://api.example.com/v1?a=b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest(t, tc.target, tc.ctype, tc.body)
			if tc.header != "" {
				name := "X-Test"
				if strings.HasPrefix(tc.header, "Basic ") {
					name = "Authorization"
				}
				r.Header.Set(name, tc.header)
			}
			rep, err := substituter(t, Options{}).TransformRequest(r)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.URL.String(); got != tc.wantURL {
				t.Errorf("URL %s, want %s", got, tc.wantURL)
			}
			if tc.wantHeader != "" && r.Header.Get("X-Test")+r.Header.Get("Authorization") != tc.wantHeader {
				t.Errorf("header %v, want %s", r.Header, tc.wantHeader)
			}
			if tc.body != "" {
				b, _ := io.ReadAll(r.Body)
				if string(b) != tc.wantBody || r.ContentLength != int64(len(b)) || r.Header.Get("Content-Length") != fmt.Sprint(len(b)) && tc.ctype != "text/plain" {
					t.Errorf("body %q (ContentLength %d, header %q), want %q", b, r.ContentLength, r.Header.Get("Content-Length"), tc.wantBody)
				}
				if r.GetBody != nil {
					rb, _ := r.GetBody()
					if b2, _ := io.ReadAll(rb); string(b2) != tc.wantBody {
						t.Errorf("GetBody %q", b2)
					}
				}
			}
			if diff := cmp.Diff(tc.want, rep.Positions()); diff != "" {
				t.Errorf("positions (-want +got):\n%s", diff)
			}
			if rep.Seen() != (len(tc.want) > 0) {
				t.Errorf("Seen = %v", rep.Seen())
			}
		})
	}
}

func TestTransformRequestStreamedBody(t *testing.T) {
	// Longer than MaxBuffered: streamed, sent chunked (the length changes).
	json := `{"a":"` + strings.Repeat("x", 100) + `","k":"` + ph + `"}`
	for _, tc := range []struct {
		name    string
		length  int64
		getBody bool
	}{{"known length", int64(len(json)), true}, {"unknown length", -1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest(t, "https://api.example.com/", "application/json", json)
			r.ContentLength = tc.length
			r.Header.Set("Content-Length", fmt.Sprint(len(json)))
			if !tc.getBody {
				r.GetBody = nil
			}
			rep, err := substituter(t, Options{MaxBuffered: 16, Require: true}).TransformRequest(r)
			if err != nil {
				t.Fatal(err)
			}
			if r.ContentLength != -1 || r.Header.Get("Content-Length") != "" {
				t.Errorf("ContentLength %d header %q: want chunked", r.ContentLength, r.Header.Get("Content-Length"))
			}
			want := strings.Replace(json, ph, `sk/live \"1\"+2`, 1)
			b, err := io.ReadAll(r.Body)
			if err != nil || string(b) != want {
				t.Errorf("body %q, %v", b, err)
			}
			if (r.GetBody != nil) != tc.getBody {
				t.Fatalf("GetBody set: %v", r.GetBody != nil)
			}
			if r.GetBody != nil {
				rb, _ := r.GetBody()
				if b2, _ := io.ReadAll(rb); string(b2) != want {
					t.Errorf("GetBody %q", b2)
				}
			}
			if !rep.Seen() {
				t.Error("not seen")
			}
		})
	}
}

func TestTransformRequestSameLengthKeepsContentLength(t *testing.T) {
	s, err := NewSubstituter([]Binding{{Name: "b", Placeholder: "PH_12345", Value: secret.New("sk_12345")}}, nil, Options{MaxBuffered: -1})
	if err != nil {
		t.Fatal(err)
	}
	r := newRequest(t, "https://api.example.com/", "application/json", `{"k":"PH_12345"}`)
	if _, err := s.TransformRequest(r); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r.Body); string(b) != `{"k":"sk_12345"}` || r.ContentLength != int64(len(b)) {
		t.Errorf("body %q ContentLength %d", b, r.ContentLength)
	}
}

func TestTripwire(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+otherPh))
	for _, tc := range []struct {
		name, target, hname, hval, ctype, body string
		where                                  Where
	}{
		{name: "header", target: "https://a.example/", hname: "X-Key", hval: otherPh, where: InHeader},
		{name: "basic", target: "https://a.example/", hname: "Authorization", hval: basic, where: InBasicAuth},
		{name: "path", target: "https://a.example/x/" + otherPh, where: InPath},
		{name: "path escaped", target: "https://a.example/x/CREDGATE_PH%5Fgithub", where: InPath},
		{name: "query", target: "https://a.example/?k=" + otherPh, where: InQuery},
		{name: "form", target: "https://a.example/", ctype: "application/x-www-form-urlencoded", body: "a=" + otherPh, where: InForm},
		{name: "json", target: "https://a.example/", ctype: "application/json", body: `{"a":"` + otherPh + `"}`, where: InJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest(t, tc.target, tc.ctype, tc.body)
			if tc.hname != "" {
				r.Header.Set(tc.hname, tc.hval)
			}
			before := r.URL.String()
			_, err := substituter(t, Options{}).TransformRequest(r)
			var me *MisuseError
			if !errors.Is(err, ErrPlaceholderMisuse) || !errors.As(err, &me) || me.Where != tc.where || me.Tripwire != "github.token" {
				t.Fatalf("err = %v (%+v), want misuse in %s", err, me, tc.where)
			}
			if r.URL.String() != before {
				t.Error("request rewritten although refused")
			}
		})
	}
	t.Run("streamed body", func(t *testing.T) {
		body := `{"pad":"` + strings.Repeat("y", 200) + `","a":"` + otherPh + `"}`
		r := newRequest(t, "https://a.example/", "application/json", body)
		if _, err := substituter(t, Options{MaxBuffered: 10}).TransformRequest(r); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r.Body)
		if !errors.Is(err, ErrPlaceholderMisuse) {
			t.Fatalf("read err = %v", err)
		}
		if bytes.Contains(got, []byte(otherPh)) {
			t.Error("tripwire bytes were sent")
		}
	})
	t.Run("websocket", func(t *testing.T) {
		if _, err := substituter(t, Options{}).TextFrame(nil, []byte(`{"op":2,"d":{"token":"`+otherPh+`"}}`), true); !errors.Is(err, ErrPlaceholderMisuse) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestCheckTrailer: a tripwire in a request trailer (raw, inside Basic
// credentials, after a bound placeholder in the same value) is misuse in
// InTrailer naming the field; bound placeholders alone, unrelated values
// and no trailers are not.
func TestCheckTrailer(t *testing.T) {
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	s := substituter(t, Options{})
	for _, tc := range []struct {
		name    string
		trailer http.Header
		field   string // "" when no misuse
	}{
		{"none", nil, ""},
		{"unrelated", http.Header{"X-Sum": {"42"}}, ""},
		{"bound placeholder only", http.Header{"X-Key": {ph}}, ""},
		{"tripwire", http.Header{"X-Act-As": {"a", "x" + otherPh + "y"}}, "X-Act-As"},
		{"tripwire after a bound one", http.Header{"X-Key": {ph + otherPh}}, "X-Key"},
		{"basic", http.Header{"Authorization": {basic("u:" + otherPh)}}, "Authorization"},
		{"first field in sorted order", http.Header{"X-B": {otherPh}, "X-A": {otherPh}}, "X-A"},
	} {
		err := s.CheckTrailer(tc.trailer)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var me *MisuseError
		if !errors.Is(err, ErrPlaceholderMisuse) || !errors.As(err, &me) || me.Where != InTrailer || me.Header != tc.field || me.Tripwire != "github.token" {
			t.Errorf("%s: err = %v (%+v), want misuse in trailer %s", tc.name, err, me, tc.field)
		}
	}
	if err := (&Substituter{}).CheckTrailer(http.Header{"X": {otherPh}}); err != nil {
		t.Errorf("no placeholders: %v", err)
	}
}

func TestRequirePlaceholder(t *testing.T) {
	s := substituter(t, Options{Require: true})
	r := newRequest(t, "https://a.example/", "", "")
	if _, err := s.TransformRequest(r); !errors.Is(err, ErrPlaceholderMissing) {
		t.Errorf("no placeholder: err = %v", err)
	}
	r = newRequest(t, "https://a.example/", "application/json", `{"a":1}`)
	if _, err := s.TransformRequest(r); !errors.Is(err, ErrPlaceholderMissing) {
		t.Errorf("buffered body without placeholder: err = %v", err)
	}
	r = newRequest(t, "https://a.example/", "application/json", `{"a":"`+strings.Repeat("z", 100)+`"}`)
	if _, err := substituter(t, Options{Require: true, MaxBuffered: 8}).TransformRequest(r); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r.Body); !errors.Is(err, ErrPlaceholderMissing) {
		t.Errorf("streamed body without placeholder: read err = %v", err)
	}
	r = newRequest(t, "https://a.example/?k="+ph, "", "")
	if _, err := s.TransformRequest(r); err != nil {
		t.Errorf("with placeholder: %v", err)
	}
}

func TestWebSocketFrame(t *testing.T) {
	s := substituter(t, Options{})
	rep := &Report{}
	got, err := s.TextFrame(rep, []byte(`{"op":2,"d":{"token":"`+ph+`"}}`), true)
	if err != nil || string(got) != `{"op":2,"d":{"token":"sk/live \"1\"+2"}}` {
		t.Errorf("json frame %q, %v", got, err)
	}
	got, err = s.TextFrame(rep, []byte("PASS "+ph), false)
	if err != nil || string(got) != "PASS "+value {
		t.Errorf("raw frame %q, %v", got, err)
	}
	if diff := cmp.Diff([]Position{{Where: InWebSocket, Binding: "stripe.token", Count: 2}}, rep.Positions()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestNewSubstituterErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     []Binding
		trips []Tripwire
	}{
		{"short", []Binding{{Name: "a", Placeholder: "short", Value: secret.New("v")}}, nil},
		{"bad byte", []Binding{{Name: "a", Placeholder: "CREDGATE PH", Value: secret.New("v")}}, nil},
		{"duplicate", []Binding{{Name: "a", Placeholder: ph, Value: secret.New("v")}}, []Tripwire{{Name: "b", Placeholder: ph}}},
		{"no value", []Binding{{Name: "a", Placeholder: ph}}, nil},
	} {
		if _, err := NewSubstituter(tc.b, tc.trips, Options{}); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestDotSegmentValueRefused(t *testing.T) {
	s, err := NewSubstituter([]Binding{{Name: "b", Placeholder: ph, Value: secret.New("..")}}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := newRequest(t, "https://a.example/v1/"+ph+"/admin", "", "")
	if _, err := s.TransformRequest(r); !errors.Is(err, ErrUnsafeValue) {
		t.Fatalf("err = %v, want ErrUnsafeValue", err)
	}
}

func TestUnsafeHeaderValueAndNoSecretInErrors(t *testing.T) {
	s, err := NewSubstituter([]Binding{{Name: "b", Placeholder: ph, Value: secret.New("evil\r\nX-Injected: 1")}}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := newRequest(t, "https://a.example/", "", "")
	r.Header.Set("X-Key", ph)
	_, err = s.TransformRequest(r)
	if !errors.Is(err, ErrUnsafeValue) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "evil") {
		t.Errorf("secret in error: %v", err)
	}
	sc := NewScrubber([]secret.Value{secret.New("evil\r\nX-Injected: 1")}, ScrubOptions{})
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d"} {
		for _, v := range []any{s, sc, *s, *sc, []*Substituter{s}} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, "evil") || strings.Contains(out, "101 118 105 108") || strings.Contains(out, "6576696c") {
				t.Errorf("%s of %T prints the secret: %s", verb, v, out)
			}
		}
	}
}

// TestStreamedBodySplitAtEveryOffset feeds a streamed form body in two
// reads split at every offset: the placeholder is always substituted and
// the tripwire always stops it.
func TestStreamedBodySplitAtEveryOffset(t *testing.T) {
	s := substituter(t, Options{MaxBuffered: -1})
	body := "a=1&token=" + ph + "&b=2"
	want := "a=1&token=" + url.QueryEscape(value) + "&b=2"
	trip := "a=1&x=" + otherPh + "&b=2"
	for i := 0; i <= len(body); i++ {
		r := newRequest(t, "https://a.example/", "application/x-www-form-urlencoded", "")
		r.Body = io.NopCloser(io.MultiReader(strings.NewReader(body[:i]), strings.NewReader(body[i:])))
		r.ContentLength = int64(len(body))
		if _, err := s.TransformRequest(r); err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r.Body); err != nil || string(got) != want {
			t.Fatalf("split at %d: %q, %v", i, got, err)
		}
	}
	for i := 0; i <= len(trip); i++ {
		r := newRequest(t, "https://a.example/", "application/x-www-form-urlencoded", "")
		r.Body = io.NopCloser(io.MultiReader(strings.NewReader(trip[:i]), strings.NewReader(trip[i:])))
		r.ContentLength = -1
		if _, err := s.TransformRequest(r); err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r.Body); !errors.Is(err, ErrPlaceholderMisuse) || strings.Contains(string(got), "CREDGATE_PH") {
			t.Fatalf("tripwire split at %d: %q, %v", i, got, err)
		}
	}
}
