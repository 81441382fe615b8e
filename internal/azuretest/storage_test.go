package azuretest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/credgate/credgate/internal/azuretest"
)

// redirect sends every request to addr over the fake's TLS, keeping the
// Host the SDK addressed (as the gateway's resolve setting does).
type redirect struct {
	addr string
	base http.RoundTripper
}

func (rt redirect) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Host = rt.addr
	return rt.base.RoundTrip(r)
}

// TestStorageAcceptsTheSDK checks the fake against Microsoft's own
// signer: azblob with a real SharedKeyCredential creates a container,
// uploads, lists and downloads; a wrong key is refused 403
// AuthenticationFailed. So the fake's StringToSign is the SDK's.
func TestStorageAcceptsTheSDK(t *testing.T) {
	key := make([]byte, 64)
	_, _ = rand.Read(key)
	s := azuretest.NewStorage(azuretest.StorageOptions{Account: "acme", Key: base64.StdEncoding.EncodeToString(key)})
	t.Cleanup(s.Close)
	client := func(k []byte) *azblob.Client {
		cred, err := azblob.NewSharedKeyCredential("acme", base64.StdEncoding.EncodeToString(k))
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: redirect{s.Addr, s.Client().Transport}}
		c, err := azblob.NewClientWithSharedKeyCredential("https://acme.blob.core.windows.net/", cred,
			&azblob.ClientOptions{ClientOptions: policy.ClientOptions{Transport: hc, Retry: policy.RetryOptions{MaxRetries: -1}}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	c := client(key)
	if _, err := c.CreateContainer(ctx, "reports", nil); err != nil {
		t.Fatalf("CreateContainer: %v (refused: %v)", err, s.Refused())
	}
	data := []byte("quarterly figures, ünïcode & spaces")
	// Metadata names the service orders otherwise than bytes do ('_'
	// before digits, upper-case folded).
	md := map[string]*string{}
	for _, k := range []string{"i0", "i_", "Owner", "o_1", "o1", "key_2", "key2"} {
		md[k] = new("v")
	}
	if _, err := c.UploadBuffer(ctx, "reports", "2026/q4 report.txt", data, &azblob.UploadBufferOptions{Metadata: md}); err != nil {
		t.Fatalf("UploadBuffer: %v (refused: %v)", err, s.Refused())
	}
	pager := c.NewListBlobsFlatPager("reports", &azblob.ListBlobsFlatOptions{Prefix: new("2026/")})
	var names []string
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list: %v (refused: %v)", err, s.Refused())
		}
		for _, b := range page.Segment.BlobItems {
			names = append(names, *b.Name)
		}
	}
	if len(names) != 1 || names[0] != "2026/q4 report.txt" {
		t.Errorf("listed %q", names)
	}
	resp, err := c.DownloadStream(ctx, "reports", "2026/q4 report.txt", nil)
	if err != nil {
		t.Fatalf("DownloadStream: %v (refused: %v)", err, s.Refused())
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, data) {
		t.Errorf("downloaded %q, want %q", got, data)
	}

	wrong := make([]byte, 64)
	_, _ = rand.Read(wrong)
	_, err = client(wrong).DownloadStream(ctx, "reports", "2026/q4 report.txt", nil)
	if err == nil || !strings.Contains(err.Error(), "AuthenticationFailed") {
		t.Errorf("a wrong key: %v, want AuthenticationFailed", err)
	}
	if r := s.Refused(); len(r) != 1 || !strings.Contains(r[0], "signature mismatch") {
		t.Errorf("refused %q, want one signature mismatch", r)
	}
}
