package helm_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ipv6Corpus is the addresses TestChartIPv6Parsers compares with
// net/netip: spellings of real addresses (compressed, in full, upper case,
// leading zeros, an IPv4 tail), near misses, and random strings over the
// characters an address is made of.
func ipv6Corpus() []string {
	c := []string{
		"::", "::1", "1::", "fe80::10", "FE80::10", "fe80:0:0:0:0:0:0:10", "fe80:0000::0010",
		"fd00:ec2::254", "fd00:0ec2::0254", "fd00:ec2:0:0:0:0:0:254", "fe80::a9fe:a9fe",
		"::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "::169.254.169.254", "1:2:3:4:5:6:1.2.3.4",
		"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::8", "1:2:3:4:5:6::8",
		// Not addresses.
		"", ":", ":::", "::::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "fe80::1::2", "12345::1",
		"fe80::1.2", "::1.2.3", "::256.1.1.1", "::01.2.3.4", "1.2.3.4::", "1.2.3.4", "::1.2.3.4:5",
		"fe80::1%eth0", "fe80::1/128", "g::1", ":1::", "1::2:", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8",
		"1:2:3:4:5:6:7:1.2.3.4", " ::1", "::1 ", "[::1]",
	}
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "0123456789abcdefABCDEF:::::....g"
	for range 300 {
		b := make([]byte, 1+r.IntN(24))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		c = append(c, string(b))
	}
	for range 200 {
		var a [16]byte
		for i := range a {
			if r.IntN(3) > 0 {
				a[i] = byte(r.IntN(256)) // else a zero, for "::" runs
			}
		}
		ip := netip.AddrFrom16(a)
		full := ip.StringExpanded()
		c = append(c, ip.String(), full, strings.ToUpper(ip.String()))
		if r.IntN(4) == 0 {
			c = append(c, "::ffff:"+netip.AddrFrom4([4]byte{a[12], a[13], a[14], a[15]}).String())
		}
	}
	return c
}

// ipv6Want is net/netip's reading of s: its 8 groups in full, or "" when
// s is not an IPv6 address without a zone.
func ipv6Want(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return ""
	}
	return a.StringExpanded()
}

// TestChartIPv6Parsers is a differential test of the chart's two IPv6
// parsers against net/netip over ipv6Corpus: the values schema's
// otlpEndpoint pattern (a bracketed IPv6 host) accepts exactly the
// addresses, and the credgate.ipv6Full helper (networkPolicy.dns.
// nodeLocalAddresses, and its metadata check) returns exactly their full
// form. Before, the schema took any run of hex digits, colons and dots in
// brackets, and the template's pattern any such run with a colon (":::",
// "1:2:3:4:5:6:7:8:9", "fe80::1::2"), and compared the metadata addresses
// by spelling.
func TestChartIPv6Parsers(t *testing.T) {
	corpus := ipv6Corpus()
	t.Run("schema", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		var schema struct {
			Definitions map[string]struct {
				Pattern string `json:"pattern"`
			} `json:"definitions"`
		}
		if err := json.Unmarshal(raw, &schema); err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(schema.Definitions["otlpEndpoint"].Pattern)
		bad := 0
		for _, s := range corpus {
			if got, want := re.MatchString("["+s+"]:4317"), ipv6Want(s) != ""; got != want {
				if bad++; bad <= 20 {
					t.Errorf("otlpEndpoint pattern: [%s]:4317 matched %v, want %v", s, got, want)
				}
			}
		}
		for _, s := range []string{"collector:4317", "10.0.0.1:4317", "[zz]:4317", "collector", "a/b:1"} {
			if got, want := re.MatchString(s), s == "collector:4317" || s == "10.0.0.1:4317"; got != want {
				t.Errorf("otlpEndpoint pattern: %s matched %v, want %v", s, got, want)
			}
		}
		if bad > 0 {
			t.Errorf("%d of %d cases differ from net/netip", bad, len(corpus))
		}
	})
	t.Run("template", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "credgate")
		if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, "templates", "test-ipv6.yaml"), `apiVersion: v1
kind: ConfigMap
metadata: {name: ipv6}
data:
  {{- range $i, $a := .Values.testIPv6 }}
  {{ printf "a%d" $i }}: {{ include "credgate.ipv6Full" $a | quote }}
  {{- end }}
`)
		vals, err := json.Marshal(map[string]any{"testIPv6": corpus})
		if err != nil {
			t.Fatal(err)
		}
		// The schema refuses keys it does not know: the test key goes in
		// with --skip-schema-validation.
		valuesFile := filepath.Join(t.TempDir(), "ipv6.json")
		write(t, valuesFile, string(vals))
		objs := parse(t, run(t, helmBin, "template", releaseName, dir, "--namespace", namespace, "--kube-version", k8sVersion,
			"--show-only", "templates/test-ipv6.yaml", "--skip-schema-validation", "-f", valuesFile))
		bad := 0
		for i, s := range corpus {
			got, _ := get(objs[0], fmt.Sprintf("data.a%d", i)).(string)
			if want := ipv6Want(s); got != want {
				if bad++; bad <= 20 {
					t.Errorf("credgate.ipv6Full %q = %q, want %q", s, got, want)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%d of %d cases differ from net/netip", bad, len(corpus))
		}
	})
}
