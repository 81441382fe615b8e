package providers

import "testing"

// TestCredentialAllowsHost: a credential pinned to hosts allows exactly
// those (case-insensitive); one without Hosts allows any.
func TestCredentialAllowsHost(t *testing.T) {
	pinned := &Credential{Hosts: []string{"acme.my.salesforce.com"}}
	for _, tc := range []struct {
		c    *Credential
		host string
		want bool
	}{
		{nil, "any.example", true},
		{&Credential{}, "any.example", true},
		{pinned, "acme.my.salesforce.com", true},
		{pinned, "ACME.my.salesforce.com", true},
		{pinned, "other.my.salesforce.com", false},
		{pinned, "acme.my.salesforce.com.evil.example", false},
		{pinned, "", false},
	} {
		if got := tc.c.AllowsHost(tc.host); got != tc.want {
			t.Errorf("%v.AllowsHost(%q) = %v, want %v", tc.c, tc.host, got, tc.want)
		}
	}
}
