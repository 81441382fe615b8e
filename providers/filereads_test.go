package providers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/cfgfile/cfgfiletest"
	"github.com/credgate/credgate/providers"
	_ "github.com/credgate/credgate/providers/awssts"
	_ "github.com/credgate/credgate/providers/google"
	_ "github.com/credgate/credgate/providers/static"
	_ "github.com/credgate/credgate/providers/vault"
)

// TestConfiguredFilesNotRegular is the class "a file a provider or a
// verifier reads, as its settings name it, that is not a regular file or
// is too large": representative readers (a static credential file, a
// Vault token_file, an AWS web identity token file, a Google key file,
// all read on a credential fetch while a request waits, and a JWT
// issuer's jwks_file) × a named pipe, a link to /dev/zero, a directory
// and a file one byte over the reader's bound. Each returns within 5s
// with an error naming the setting and saying what the path is; none
// reads the content. Before, the fetches hung on the named pipe (holding
// the request, and every later fetch of the credential behind it) and
// read /dev/zero until memory ran out; internal/cfgfile
// TestNoUncheckedFileReads keeps every other reader on cfgfile.
func TestConfiguredFilesNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := cfgfiletest.Fifo(t, dir, "file.fifo")
	zero := cfgfiletest.DevZero(t, dir, "file.zero")
	subdir := filepath.Join(dir, "file.dir")
	if err := os.Mkdir(subdir, 0o700); err != nil {
		t.Fatal(err)
	}
	// big returns a sparse file (no disk) of n bytes.
	big := func(n int64) string { return cfgfiletest.Sparse(t, dir, fmt.Sprintf("file.%d", n), n) }
	fetch := func(name, settings string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			var node yaml.Node
			if err := yaml.Unmarshal([]byte(settings), &node); err != nil {
				return fmt.Errorf("test settings: %w", err)
			}
			p, err := providers.Load(ctx, name, node.Content[0])
			if err != nil {
				return fmt.Errorf("load: %w", err)
			}
			_, err = p.Fetch(ctx, providers.Request{Credential: "c", Workload: identity.Workload{Name: "billing/api"}})
			return err
		}
	}
	readers := []struct {
		name    string
		setting string // the setting the error names
		limit   int64  // the reader's bound
		fetch   bool   // a provider's fetch: the error wraps ErrNotConfigured
		read    func(path string) func(ctx context.Context) error
	}{
		{"static file", "static: file", cfgfile.MaxSecretBytes, true, func(p string) func(context.Context) error {
			return fetch("static", fmt.Sprintf("{file: %q}", p))
		}},
		{"vault token_file", "token_file", cfgfile.MaxSecretBytes, true, func(p string) func(context.Context) error {
			return fetch("vault", fmt.Sprintf("{server: {address: 'http://127.0.0.1:1', retries: 0, auth: {method: token, token_file: %q}}, path: a/b}", p))
		}},
		{"awssts web_identity_token_file", "web_identity_token_file", cfgfile.MaxSecretBytes, true, func(p string) func(context.Context) error {
			return fetch("awssts", fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: 'http://127.0.0.1:1', retries: 0, web_identity_token_file: %q}", p))
		}},
		{"google key.file", "key.file", cfgfile.MaxSecretBytes, true, func(p string) func(context.Context) error {
			return fetch("google", fmt.Sprintf("{key: {file: %q}, scopes: [s]}", p))
		}},
		{"identity jwt.issuers jwks_file", "jwks_file", cfgfile.MaxBytes, false, func(p string) func(context.Context) error {
			return func(context.Context) error {
				c := identity.Config{JWT: identity.JWTConfig{Issuers: []identity.IssuerConfig{{Issuer: "https://issuer.test", JWKSFile: p}}}}
				var errs []error
				for _, pr := range c.CheckFiles() {
					errs = append(errs, fmt.Errorf("%s: %w", strings.Join(pr.Key, "."), pr.Err))
				}
				return errors.Join(errs...)
			}
		}},
	}
	for _, r := range readers {
		for _, k := range []struct {
			name, path, want string
		}{
			{"named pipe", fifo, "is a named pipe (FIFO), not a regular file"},
			{"dev zero", zero, "is a device, not a regular file"},
			{"directory", subdir, "is a directory, not a regular file"},
			{"too large", big(r.limit + 1), fmt.Sprintf("holds %d bytes, more than the %d", r.limit+1, r.limit)},
		} {
			t.Run(r.name+"/"+k.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- r.read(k.path)(ctx) }()
				var err error
				select {
				case err = <-done:
				case <-time.After(5 * time.Second):
					t.Fatalf("still reading %s after 5s", k.path)
				}
				if err == nil || !strings.Contains(err.Error(), k.want) || !strings.Contains(err.Error(), r.setting) {
					t.Errorf("got %v; want an error naming %s and saying the path %s", err, r.setting, k.want)
				}
				if r.fetch && !errors.Is(err, providers.ErrNotConfigured) {
					t.Errorf("got %v; want it to wrap providers.ErrNotConfigured (502 credential_not_configured)", err)
				}
			})
		}
	}
}

// TestCheckFileAgreesWithRead is the class "credgate validate's check of
// a file a setting names passes a file the fetch then refuses": for every
// size about the bounds, CheckFile passes exactly the files ReadFile (the
// fetch's reader) reads, and CheckCAFile exactly those cfgfile.Read (the
// CA readers') reads. Before, CheckFile held every file to the CA bound:
// a 100 KiB token file passed validate and failed every fetch.
func TestCheckFileAgreesWithRead(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{1, cfgfile.MaxSecretBytes - 1, cfgfile.MaxSecretBytes, cfgfile.MaxSecretBytes + 1, 100 << 10} {
		path := filepath.Join(dir, fmt.Sprintf("f%d", size))
		if err := os.WriteFile(path, []byte(strings.Repeat("k", size)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, readErr := providers.ReadFile(t.Context(), "test: file", "the credential", path)
		checkErr := providers.CheckFile("test: file", path, "the credential")
		if (readErr == nil) != (checkErr == nil) {
			t.Errorf("%d bytes: CheckFile says %v, the fetch's ReadFile %v", size, checkErr, readErr)
		}
		if checkErr != nil && !errors.Is(checkErr, providers.ErrNotConfigured) {
			t.Errorf("%d bytes: CheckFile's error %v does not wrap ErrNotConfigured", size, checkErr)
		}
		_, caErr := cfgfile.Read(path)
		if checkCA := providers.CheckCAFile("test: ca_file", path, "PEM CA certificates"); (caErr == nil) != (checkCA == nil) {
			t.Errorf("%d bytes: CheckCAFile says %v, cfgfile.Read %v", size, checkCA, caErr)
		}
	}
}
