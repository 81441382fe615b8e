package injectors

import (
	"context"
	"net/http/httptest"
	"testing"
)

// TestValueSlot: each built-in injector that sets one header value sets
// its first one in the request's ValueSlot, with the same field and
// value as without one; injecting again in the same request (a reissue
// with a new credential) gets a slice of its own, and the value the
// first injection set stays as it was.
func TestValueSlot(t *testing.T) {
	for _, tc := range []struct {
		name, settings, field string
		first, second         map[string]string // credential fields
		want1, want2          string
	}{
		{"bearer", "", "Authorization", map[string]string{"token": "one"}, map[string]string{"token": "two"}, "Bearer one", "Bearer two"},
		{"basic", "", "Authorization", map[string]string{"username": "u", "password": "one"}, map[string]string{"username": "u", "password": "two"}, "Basic dTpvbmU=", "Basic dTp0d28="},
		{"header", "name: X-Api-Key\nvalue: \"{{.token}}\"", "X-Api-Key", map[string]string{"token": "one"}, map[string]string{"token": "two"}, "one", "two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj, err := loadInjector(t, tc.name, tc.settings)
			if err != nil {
				t.Fatal(err)
			}
			asCred := func(m map[string]string) []string {
				var kv []string
				for k, v := range m {
					kv = append(kv, k, v)
				}
				return kv
			}
			// Without a slot, the reference.
			ref := httptest.NewRequest("GET", "https://api.example.com/", nil)
			if err := Apply(inj, ref, cred(asCred(tc.first)...)); err != nil {
				t.Fatal(err)
			}
			slot := &ValueSlot{}
			r := httptest.NewRequest("GET", "https://api.example.com/", nil)
			r = r.WithContext(context.WithValue(r.Context(), ValueSlotKey{}, slot))
			if err := Apply(inj, r, cred(asCred(tc.first)...)); err != nil {
				t.Fatal(err)
			}
			got := r.Header[tc.field]
			if len(got) != 1 || got[0] != tc.want1 || ref.Header.Get(tc.field) != tc.want1 || &got[0] != &slot.v[0] {
				t.Fatalf("first injection: %q (reference %q), want %q in the slot", got, ref.Header[tc.field], tc.want1)
			}
			if err := Apply(inj, r, cred(asCred(tc.second)...)); err != nil {
				t.Fatal(err)
			}
			again := r.Header[tc.field]
			if len(again) != 1 || again[0] != tc.want2 || &again[0] == &slot.v[0] {
				t.Fatalf("second injection: %q, want %q in a slice of its own", again, tc.want2)
			}
			if got[0] != tc.want1 || slot.v[0] != tc.want1 {
				t.Errorf("the second injection changed the first one's value: %q, slot %q", got[0], slot.v[0])
			}
		})
	}
}
