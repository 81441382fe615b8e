package panics

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestDescribe: no value but a runtime error's message is ever shown.
func TestDescribe(t *testing.T) {
	const secret = "s3cr3t-value"
	for _, p := range []any{
		"bad token " + secret,
		fmt.Errorf("token %s: %w", secret, errors.New("refused")),
		struct{ Token string }{secret},
		[]byte(secret),
		&struct{ s string }{secret},
	} {
		if got := Describe(p); strings.Contains(got, secret) || !strings.Contains(got, "not logged") {
			t.Errorf("Describe(%T) = %q", p, got)
		}
	}
	func() {
		defer func() {
			if got := Describe(recover()); got != "runtime error: index out of range [12] with length 0" {
				t.Errorf("Describe(runtime error) = %q", got)
			}
		}()
		var s []string
		_ = s[len(secret)]
	}()
}

func panicsHere(v string) { panic(v) }

// TestWhere: the frames name the panicking function, without the
// runtime's frames or argument values.
func TestWhere(t *testing.T) {
	var where string
	func() {
		defer func() {
			_ = recover()
			where = Where(1)
		}()
		panicsHere("s3cr3t-value")
	}()
	if !strings.HasPrefix(where, "github.com/credgate/credgate/internal/panics.panicsHere ") || strings.Contains(where, "runtime.gopanic") || strings.Contains(where, "0x") {
		t.Errorf("Where = %q", where)
	}
}
