package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/credgate/credgate/internal/canonical"
)

// parseTargetRef is parseTarget as it was before it skipped the errors
// it does not need: SplitHostPort on every authority, ParseAddr on every
// host. parseTarget must give the same answer for every input.
func parseTargetRef(authority string, defPort int) (target, error) {
	host, portStr, err := net.SplitHostPort(authority)
	if err != nil {
		if defPort == 0 {
			return target{}, fmt.Errorf("%q is not host:port", authority)
		}
		host, portStr = authority, strconv.Itoa(defPort)
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return target{}, fmt.Errorf("%q has no valid port", authority)
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return target{}, fmt.Errorf("%q has no host", authority)
	}
	t := target{host: host, port: port}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return target{}, fmt.Errorf("%q: zoned addresses are not allowed", authority)
		}
		t.host, t.ip = a.Unmap().String(), true
		return t, nil
	}
	if err := canonical.CheckHost(host); err != nil {
		return target{}, hostError(authority, err)
	}
	return t, nil
}

// sameTarget fails t when parseTarget and parseTargetRef differ on in.
func sameTarget(t *testing.T, in string, def int) {
	got, err := parseTarget(in, def)
	want, wantErr := parseTargetRef(in, def)
	if got != want || fmt.Sprint(err) != fmt.Sprint(wantErr) {
		t.Fatalf("parseTarget(%q, %d) = %+v, %v; parseTargetRef: %+v, %v", in, def, got, err, want, wantErr)
	}
}

// TestParseTargetExhaustive compares parseTarget with parseTargetRef on
// every authority of up to 5 bytes over the bytes that steer them (a
// letter in both cases, digits, dot, colon, brackets, percent, space),
// with no default port and with 443, and on longer cases of note.
func TestParseTargetExhaustive(t *testing.T) {
	const alphabet = "aZ10.:[]% "
	var rec func(prefix []byte)
	rec = func(prefix []byte) {
		for _, def := range []int{0, 443} {
			sameTarget(t, string(prefix), def)
		}
		if len(prefix) == 5 {
			return
		}
		for i := 0; i < len(alphabet); i++ {
			rec(append(prefix, alphabet[i]))
		}
	}
	rec(make([]byte, 0, 5))
	for _, in := range []string{
		"api.example.com", "API.Example.com.", "api.example.com:443", "127.0.0.1", "127.0.0.1:8443",
		"[::1]", "[::1]:443", "::1", "[::ffff:127.0.0.1]", "::ffff:127.0.0.1", "[fe80::1%eth0]",
		"fe80::1%eth0", "1.2.3.4.5", "01.2.3.4", "256.1.1.1", "1.2.3", "a%b", "%", "[a.b]", "[1.2.3.4]",
		"example.com:0", "example.com:65536", "example.com:+443", "x:", ":443", "a:b:c",
	} {
		for _, def := range []int{0, 80, 443, 65535, 65536, -1} {
			sameTarget(t, in, def)
		}
	}
}

// FuzzParseTarget is TestParseTargetExhaustive for any authority and
// default port.
func FuzzParseTarget(f *testing.F) {
	f.Add("api.example.com", 443)
	f.Add("[::ffff:10.0.0.1]:8443", 0)
	f.Add("fe80::1%eth0", 80)
	f.Add("1.2.3.4.", 443)
	f.Add("[x]", 443)
	f.Fuzz(func(t *testing.T, in string, def int) {
		sameTarget(t, in, def)
	})
}
