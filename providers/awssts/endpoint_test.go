package awssts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credgate/credgate/providers"
)

// TestSDKEndpointPlainHTTP: an STS endpoint the SDK takes from the
// environment is held to the https-or-loopback rule too.
func TestSDKEndpointPlainHTTP(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	for env, want := range map[string]string{
		"http://sts.internal.example": "use https",
		"https://127.0.0.1:1":         "", // allowed; the call then fails to connect
	} {
		t.Run(env, func(t *testing.T) {
			t.Setenv("AWS_ENDPOINT_URL_STS", env)
			p := load(t, "{role_arn: 'arn:aws:iam::1:role/r', web_identity_token_file: "+tok+", retries: 0}", nil)
			_, err := p.Fetch(context.Background(), providers.Request{Workload: billing()})
			got := fmt.Sprint(err)
			if want != "" && (!strings.Contains(got, want) || !strings.Contains(got, "AWS_ENDPOINT_URL_STS")) {
				t.Errorf("Fetch error = %v, want one naming AWS_ENDPOINT_URL_STS and saying %q", err, want)
			}
			if want == "" && strings.Contains(got, "use https") {
				t.Errorf("Fetch error = %v: an https endpoint was refused", err)
			}
		})
	}
}
