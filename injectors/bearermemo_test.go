package injectors

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/credgate/credgate/providers"
)

// TestBearerMemo checks the class of Bearer's formatted-value memo
// (bearerMemo): whatever sequence of credentials a rule meets —
// the same one again, a refreshed token, a return to an earlier one, a
// value that cannot be sent — every request gets exactly "Bearer " + the
// token of the credential it was given, never a neighbour's, and a value
// refused is refused every time.
func TestBearerMemo(t *testing.T) {
	b := new(Bearer)
	if err := b.Provision(); err != nil {
		t.Fatal(err)
	}
	a, a2, c := cred("token", "tok-a"), cred("token", "tok-a"), cred("token", "tok-c")
	bad := cred("token", "tok\r\nX-Evil: 1")
	steps := []struct {
		name string
		cred *providers.Credential
		want string // "" means ErrInvalidValue
	}{
		{"first", a, "Bearer tok-a"},
		{"same credential", a, "Bearer tok-a"},
		{"same token, another credential", a2, "Bearer tok-a"},
		{"refreshed", c, "Bearer tok-c"},
		{"back to the earlier", a, "Bearer tok-a"},
		{"bad value", bad, ""},
		{"token with a trailing space", cred("token", "tok-a "), ""},
		{"bad value after it", bad, ""},
		{"bad value again", bad, ""},
		{"after a refused value", c, "Bearer tok-c"},
		{"same again", c, "Bearer tok-c"},
	}
	for _, s := range steps {
		r, _ := http.NewRequest(http.MethodGet, "https://api.example/v1", nil)
		err := b.Inject(r, s.cred)
		if s.want == "" {
			if !errors.Is(err, ErrInvalidValue) {
				t.Fatalf("%s: err %v, want ErrInvalidValue", s.name, err)
			}
			if _, ok := r.Header["Authorization"]; ok {
				t.Fatalf("%s: Authorization set on a refused value", s.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := r.Header["Authorization"]; len(got) != 1 || got[0] != s.want {
			t.Fatalf("%s: Authorization %q, want %q", s.name, got, s.want)
		}
	}
}

// TestBearerMemoShared checks that requests with the same credential
// share one formatted value (no "Bearer " + token built per request) and
// that neither the token nor the value appears in any printed form of
// the injector.
func TestBearerMemoShared(t *testing.T) {
	b := new(Bearer)
	if err := b.Provision(); err != nil {
		t.Fatal(err)
	}
	c := cred("token", secretValue)
	inject := func() string {
		r, _ := http.NewRequest(http.MethodGet, "https://api.example/v1", nil)
		if err := b.Inject(r, c); err != nil {
			t.Fatal(err)
		}
		return r.Header.Get("Authorization")
	}
	v1, v2 := inject(), inject()
	if v1 != "Bearer "+secretValue || unsafe.StringData(v1) != unsafe.StringData(v2) {
		t.Fatalf("second request built its own value (%p, %p)", unsafe.StringData(v1), unsafe.StringData(v2))
	}
	r, _ := http.NewRequest(http.MethodGet, "https://api.example/v1", nil)
	r.Header = make(http.Header, 1)
	if n := testing.AllocsPerRun(100, func() {
		if err := b.Inject(r, c); err != nil {
			t.Fatal(err)
		}
	}); n > 1 { // the header's []string; none for the value
		t.Fatalf("Inject allocates %v times per request with a memoized value, want ≤ 1", n)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		if s := fmt.Sprintf(verb, b); strings.Contains(s, secretValue) {
			t.Fatalf("%s of a Bearer prints the token: %s", verb, s)
		}
	}
	m := b.last.Load()
	if m == nil {
		t.Fatal("no memo after an injection")
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		for _, v := range []any{*m, m} {
			if s := fmt.Sprintf(verb, v); strings.Contains(s, secretValue) {
				t.Fatalf("%s of the memo prints the token: %s", verb, s)
			}
		}
	}
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "memo", *m, "ptr", m)
	if strings.Contains(buf.String(), secretValue) {
		t.Fatalf("slog prints the token: %s", buf.String())
	}
}

// TestBearerMemoLifetime checks that the formatted value lives no longer
// than the credential it was formatted for: once that Credential is
// unreachable (refreshed or evicted), the memo is dropped.
func TestBearerMemoLifetime(t *testing.T) {
	b := new(Bearer)
	if err := b.Provision(); err != nil {
		t.Fatal(err)
	}
	func() {
		c := cred("token", "short-lived")
		r, _ := http.NewRequest(http.MethodGet, "https://api.example/v1", nil)
		if err := b.Inject(r, c); err != nil {
			t.Fatal(err)
		}
	}()
	if b.last.Load() == nil {
		t.Fatal("no memo after an injection")
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.last.Load() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the memo outlived its credential")
		}
		runtime.GC() // the cleanup runs after a collection finds the Credential unreachable
		runtime.Gosched()
	}
}
