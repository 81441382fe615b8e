package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEarlyHintsReachCurl: curl over HTTP/1.1 and HTTP/2 inside the
// tunnel sees the origin's 103 Early Hints, with its Link field, before
// the 200.
func TestEarlyHintsReachCurl(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	for _, proto := range []string{"--http1.1", "--http2"} {
		t.Run(strings.TrimPrefix(proto, "--"), func(t *testing.T) {
			r := clientRequest{URL: "https://" + apiHost + "/hints"}
			hdr := filepath.Join(t.TempDir(), "headers")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "20", proto, "--cacert", r.caFile(), "-D", hdr, "-o", "/dev/null", r.URL)
			cmd.Env = clientEnv(r.proxyURL(e))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("curl: %v: %s", err, stderr.String())
			}
			var statuses []int
			link := ""
			for _, b := range headerBlocks(t, hdr) {
				statuses = append(statuses, b.status)
				if b.status == http.StatusEarlyHints {
					link = b.header.Get("Link")
				}
			}
			// The first block is the proxy's answer to CONNECT.
			if len(statuses) != 3 || statuses[1] != http.StatusEarlyHints || statuses[2] != http.StatusOK || link != "</style.css>; rel=preload; as=style" {
				t.Fatalf("curl saw responses %v (103 Link %q); want the CONNECT's 200, then 103 with the Link field, then 200", statuses, link)
			}
		})
	}
}
