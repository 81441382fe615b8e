package transform

import (
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/credgate/credgate/secret"
)

// TestPlaces: a binding with Places is replaced only there; found
// anywhere else it is a MisuseError with Misplaced set, and the request
// is left as it was. Named fields are established in the raw query and
// in whole bodies (a parameter's value, not its name; '&' and ';' both
// end a parameter; a JSON string value, not a key, of a body that
// parses); in a streamed body only a whole-position place allows it.
func TestPlaces(t *testing.T) {
	tests := []struct {
		name   string
		places []Place
		target string
		header map[string]string
		ctype  string
		body   string
		// where is the misuse's position, "" when substituted.
		where Where
	}{
		{"header by name", []Place{{InHeader, "x-api-key"}}, "https://a.test/", map[string]string{"X-Api-Key": ph}, "", "", ""},
		{"other header", []Place{{InHeader, "Authorization"}}, "https://a.test/", map[string]string{"Referer": "https://x.test/?k=" + ph}, "", "", InHeader},
		{"basic is not the Authorization header", []Place{{InHeader, "Authorization"}}, "https://a.test/", map[string]string{"Authorization": basicOf("u:" + ph)}, "", "", InBasicAuth},
		{"basic", []Place{{InBasicAuth, ""}}, "https://a.test/", map[string]string{"Authorization": basicOf("u:" + ph)}, "", "", ""},
		{"path", []Place{{InPath, ""}}, "https://a.test/bot" + ph + "/x", nil, "", "", ""},
		{"path not allowed", []Place{{InQuery, ""}}, "https://a.test/bot" + ph + "/x", nil, "", "", InPath},
		{"query param", []Place{{InQuery, "key"}}, "https://a.test/?a=1&key=" + ph, nil, "", "", ""},
		{"query param escaped", []Place{{InQuery, "api key"}}, "https://a.test/?api+key=%43REDGATE_PH_stripe", nil, "", "", ""},
		{"query other param", []Place{{InQuery, "key"}}, "https://a.test/?key=x&cb=" + ph, nil, "", "", InQuery},
		{"query after ;", []Place{{InQuery, "key"}}, "https://a.test/?key=x;cb=" + ph, nil, "", "", InQuery},
		{"query name", []Place{{InQuery, "key"}}, "https://a.test/?" + ph + "=key", nil, "", "", InQuery},
		{"query any", []Place{{InQuery, ""}}, "https://a.test/?cb=" + ph, nil, "", "", ""},
		{"form field", []Place{{InForm, "token"}}, "https://a.test/", nil, "application/x-www-form-urlencoded", "a=1&token=" + ph, ""},
		{"form other field", []Place{{InForm, "token"}}, "https://a.test/", nil, "application/x-www-form-urlencoded", "token=x&text=" + ph, InForm},
		{"form streamed, named", []Place{{InForm, "token"}}, "https://a.test/", nil, "application/x-www-form-urlencoded", "pad=" + strings.Repeat("p", 70<<10) + "&token=" + ph, InForm},
		{"form streamed, whole", []Place{{InForm, ""}}, "https://a.test/", nil, "application/x-www-form-urlencoded", "pad=" + strings.Repeat("p", 70<<10) + "&token=" + ph, ""},
		{"json pointer", []Place{{InJSON, "/auth/key"}}, "https://a.test/", nil, "application/json", `{"a":[1,{"b":"x"}],"auth":{"key":"` + ph + `"}}`, ""},
		{"json array element", []Place{{InJSON, "/keys/1"}}, "https://a.test/", nil, "application/json", `{"keys":["x","` + ph + `"]}`, ""},
		{"json escaped key", []Place{{InJSON, "/a~1b/c~0d"}}, "https://a.test/", nil, "application/json", `{"a/b":{"c~d":"pre ` + ph + `"}}`, ""},
		{"json other member", []Place{{InJSON, "/auth/key"}}, "https://a.test/", nil, "application/json", `{"auth":{"key":"x"},"url":"https://x.test/?k=` + ph + `"}`, InJSON},
		{"json same name elsewhere", []Place{{InJSON, "/auth/key"}}, "https://a.test/", nil, "application/json", `{"key":"` + ph + `"}`, InJSON},
		{"json key", []Place{{InJSON, "/auth/key"}}, "https://a.test/", nil, "application/json", `{"auth":{"` + ph + `":"key"}}`, InJSON},
		{"json invalid", []Place{{InJSON, "/auth/key"}}, "https://a.test/", nil, "application/json", `{"auth":{"key":"` + ph + `"}`, InJSON},
		{"json streamed, named", []Place{{InJSON, "/auth/key"}}, "https://a.test/", nil, "application/json", `{"p":"` + strings.Repeat("p", 70<<10) + `","auth":{"key":"` + ph + `"}}`, InJSON},
		{"json streamed, whole", []Place{{InJSON, ""}}, "https://a.test/", nil, "application/json", `{"p":"` + strings.Repeat("p", 70<<10) + `","auth":{"key":"` + ph + `"}}`, ""},
		{"nil places: anywhere", nil, "https://a.test/x?cb=" + ph, nil, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSubstituter([]Binding{{Name: "b", Placeholder: ph, Value: secret.New("sk_value"), Places: tc.places}}, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			r := newRequest(t, tc.target, tc.ctype, tc.body)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			_, err = s.TransformRequest(r)
			if err == nil && r.Body != nil {
				_, err = io.ReadAll(r.Body) // a streamed body fails its Read
			}
			var me *MisuseError
			switch {
			case tc.where == "" && err != nil:
				t.Fatalf("error %v, want the placeholder replaced", err)
			case tc.where != "" && !errors.As(err, &me):
				t.Fatalf("error %v, want a MisuseError in %s", err, tc.where)
			case tc.where != "" && (me.Where != tc.where || !me.Misplaced || me.Tripwire != "b" || !errors.Is(err, ErrPlaceholderMisuse)):
				t.Errorf("misuse %+v, want Misplaced in %s", *me, tc.where)
			}
		})
	}
}

// TestPlacesWebSocket: a frame is a place of its own.
func TestPlacesWebSocket(t *testing.T) {
	for _, tc := range []struct {
		places []Place
		ok     bool
	}{{[]Place{{InWebSocket, ""}}, true}, {[]Place{{InJSON, ""}, {InHeader, ""}}, false}} {
		s, err := NewSubstituter([]Binding{{Name: "b", Placeholder: ph, Value: secret.New("v"), Places: tc.places}}, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.TextFrame(nil, []byte(`{"token":"`+ph+`"}`), true)
		var me *MisuseError
		if tc.ok && (err != nil || string(out) != `{"token":"v"}`) || !tc.ok && (!errors.As(err, &me) || !me.Misplaced || me.Where != InWebSocket) {
			t.Errorf("places %v: %q %v", tc.places, out, err)
		}
	}
}

// TestCheckPointer: the JSON pointers a place may name.
func TestCheckPointer(t *testing.T) {
	for p, ok := range map[string]bool{"/a": true, "/a/0/b": true, "/a~0b~1c": true, "/": true, "a": false, "": false, "/a~": false, "/a~2": false} {
		if err := CheckPointer(p); (err == nil) != ok {
			t.Errorf("CheckPointer(%q) = %v", p, err)
		}
	}
}

func basicOf(userPass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userPass))
}
