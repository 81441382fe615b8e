package runtoken

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/redistest"
)

// TestRevocationValueShapes is the class "a revocation in Redis was
// written by another version of credgate" (a rolling upgrade, a
// rollback): the reader tests the key's presence only, so whatever a
// writer of version N-1, N or N+1 puts there (today's "1", a newer value,
// another Redis type, an empty or truncated value), the token stays
// refused: a revocation is never read as lifted.
func TestRevocationValueShapes(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	file := filepath.Join(t.TempDir(), "run.key")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	is, err := New(Config{Workloads: []string{"agent"}, KeyFile: file}, Options{Redis: rdb, Namespace: "shapes"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = is.Close() })
	ctx := context.Background()
	tests := []struct {
		name  string
		write func(k string) error
	}{
		{"current (\"1\")", func(k string) error { return rdb.Set(ctx, k, "1", time.Hour).Err() }},
		{"newer: a JSON value", func(k string) error {
			return rdb.Set(ctx, k, `{"v":2,"by":"alice","reason":"INC-1"}`, time.Hour).Err()
		}},
		{"newer: another Redis type (hash)", func(k string) error { return rdb.HSet(ctx, k, "by", "alice").Err() }},
		{"unknown value", func(k string) error { return rdb.Set(ctx, k, "revoked-v3", time.Hour).Err() }},
		{"empty value", func(k string) error { return rdb.Set(ctx, k, "", time.Hour).Err() }},
		{"truncated value", func(k string) error { return rdb.Set(ctx, k, `{"v":2,"by`, time.Hour).Err() }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprint("jti-", i)
			if err := tt.write(is.redisKey(id)); err != nil {
				t.Fatal(err)
			}
			revoked, err := is.Revoked(ctx, id, time.Now().Add(time.Minute))
			if err != nil || !revoked {
				t.Errorf("Revoked = %v, %v; want true: a revocation of any shape keeps refusing", revoked, err)
			}
		})
	}
	// And a token never revoked is not refused.
	if revoked, err := is.Revoked(ctx, "never", time.Now().Add(time.Minute)); err != nil || revoked {
		t.Errorf("Revoked(never) = %v, %v", revoked, err)
	}
}
