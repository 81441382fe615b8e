package cli

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestBinaryCarriesTimeZones checks that the credgate binary links the
// IANA time zone database (time/tzdata): policy conditions name zones
// (now.getHours("Europe/Berlin")), and where the system has no
// /usr/share/zoneinfo (the FROM scratch image, distroless) a rule with such
// a condition was refused as condition_error on every request. e2e/helm's
// TestImage checks the same in the image itself.
func TestBinaryCarriesTimeZones(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/credgate/credgate/cmd/credgate").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	if !slices.Contains(strings.Fields(string(out)), "time/tzdata") {
		t.Error("cmd/credgate does not link time/tzdata: in an image without /usr/share/zoneinfo every condition naming a time zone fails")
	}
}
