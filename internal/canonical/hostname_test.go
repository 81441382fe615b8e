package canonical

import (
	"strings"
	"testing"
)

// TestHostName: the names the CONNECT parser and the leaf issuer accept,
// and those both refuse.
func TestHostName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	long := strings.Repeat(label63+".", 4)[:254]
	for _, c := range []struct {
		h  string
		ok bool
	}{
		{"api.example.com", true},
		{"localhost", true},
		{"a", true},
		{"x_y.example", true},
		{"xn--bcher-kva.example", true},
		{"a-b.example", true},
		{"1.2.3.4.example", true},
		{label63 + ".example", true},
		{long[:253], true}, // 253 bytes, the most
		{strings.TrimSuffix(strings.Repeat("ab.", 84), "."), true},
		{"", false},
		{long, false},
		{label63 + "a.example", false},
		{"-a.example", false},
		{"a-.example", false},
		{"a..example", false},
		{".example", false},
		{"example.", false},
		{"*.example.com", false},
		{"*", false},
		{"Upper.example", false},
		{"bücher.example", false},
		{"a b.example", false},
		{"a:b", false},
		{"a/b", false},
		{"a%2eb", false},
	} {
		if got := HostName(c.h); got != c.ok {
			t.Errorf("HostName(%q) = %v, want %v", c.h, got, c.ok)
		}
	}
}
