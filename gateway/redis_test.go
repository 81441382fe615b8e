package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/redistest"
	"github.com/credgate/credgate/internal/testpki"
)

func testRedisKeyEnv(t *testing.T) RedisKey {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDGATE_TEST_REDIS_KEY", base64.StdEncoding.EncodeToString(b))
	return RedisKey{ID: "k1", Env: "CREDGATE_TEST_REDIS_KEY"}
}

func startShared(t *testing.T, cfg Redis) *sharedCache {
	t.Helper()
	cfg.Timeout = Duration(time.Second)
	cfg.Namespace = "t"
	sc, err := newSharedCache(context.Background(), cfg, slog.New(slog.DiscardHandler), newMetrics(func() float64 { return 0 }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Close() })
	return sc
}

// TestSharedCacheACL connects as an ACL user whose password is in a file;
// a wrong password leaves the cache down (requests still work without it).
func TestSharedCacheACL(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	if err := srv.Client().Do(ctx, "ACL", "SETUSER", "credgate", "on", ">s3cret-pw", "~t:*", "&t:*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := testRedisKeyEnv(t)
	sc := startShared(t, Redis{Addrs: []string{srv.Addr()}, Username: "credgate", PasswordFile: pw, EncryptionKeys: []RedisKey{key}})
	if !sc.store.Up() {
		t.Error("not up with the right ACL user and password")
	}
	t.Setenv("CREDGATE_TEST_REDIS_PW", "wrong")
	bad := startShared(t, Redis{Addrs: []string{srv.Addr()}, Username: "credgate", PasswordEnv: "CREDGATE_TEST_REDIS_PW", EncryptionKeys: []RedisKey{key}})
	if bad.store.Up() {
		t.Error("up with a wrong password")
	}
}

// TestSharedCacheTLS connects over TLS verified against a CA file.
func TestSharedCacheTLS(t *testing.T) {
	ca, err := testpki.NewAuthority("redis test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM, keyPEM, err := testpki.PEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	files := redistest.TLSFiles{
		Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), CA: filepath.Join(dir, "ca.pem"),
		Client: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
	}
	for p, b := range map[string][]byte{files.Cert: certPEM, files.Key: keyPEM, files.CA: ca.CertPEM} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv := redistest.StartTLS(t, files)
	key := testRedisKeyEnv(t)
	sc := startShared(t, Redis{Addrs: []string{srv.Addr()}, TLS: RedisTLS{Enabled: true, CA: files.CA}, EncryptionKeys: []RedisKey{key}})
	if !sc.store.Up() {
		t.Error("not up over TLS")
	}
	// Without TLS the server does not answer.
	plain := startShared(t, Redis{Addrs: []string{srv.Addr()}, EncryptionKeys: []RedisKey{key}})
	if plain.store.Up() {
		t.Error("up in plaintext against a TLS-only server")
	}
}
