package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/providers/rediscache"
)

// sharedCache is the Redis client and the shared cache built on it.
type sharedCache struct {
	rdb   redis.UniversalClient
	store *rediscache.Store
	// keys are cache.redis.encryption_keys; the kill switch derives the
	// key that authenticates its state in Redis from them.
	keys []rediscache.Key
}

// Close stops the cache's goroutines and closes the client.
func (s *sharedCache) Close() error {
	err := s.store.Close()
	return errors.Join(err, s.rdb.Close())
}

// newSharedCache connects to Redis as cfg says. An unreachable Redis is
// not an error (the cache starts "down" and recovers); a missing key,
// password file or certificate is.
func newSharedCache(ctx context.Context, cfg Redis, logger *slog.Logger, obs rediscache.Observer) (*sharedCache, error) {
	keys, err := redisKeys(cfg)
	if err != nil {
		return nil, err
	}
	opts, err := redisOptions(cfg)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewUniversalClient(opts)
	store, err := rediscache.New(ctx, rediscache.Options{
		Client:     rdb,
		Namespace:  cfg.Namespace,
		Keys:       keys,
		ExpirySkew: cfg.ExpirySkew.D(),
		LockTTL:    cfg.LockTTL.D(),
		OpTimeout:  cfg.Timeout.D(),
		Logger:     logger.With(slog.String("component", "redis")),
		Observer:   obs,
	})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &sharedCache{rdb: rdb, store: store, keys: keys}, nil
}

// redisKeys reads cache.redis.encryption_keys. newSharedCache and
// Config.CheckFiles call it; an error names the key's index (keyError).
func redisKeys(cfg Redis) ([]rediscache.Key, error) {
	keys := make([]rediscache.Key, 0, len(cfg.EncryptionKeys))
	for i, k := range cfg.EncryptionKeys {
		field := "file"
		if k.File == "" {
			field = "env"
		}
		at := fmt.Sprintf("%d.%s", i, field)
		name := fmt.Sprintf("cache.redis.encryption_keys[%d].%s (id %q)", i, field, k.ID)
		raw, where, err := readSecret(k.File, k.Env)
		if err != nil {
			return nil, &keyError{key: at, err: fmt.Errorf("%s: %w", name, err)}
		}
		secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(raw))
		if err != nil || len(secret) != rediscache.KeySize {
			return nil, &keyError{key: at, err: fmt.Errorf("%s: %s must hold %d random bytes in base64 (head -c32 /dev/urandom | base64)", name, where, rediscache.KeySize)}
		}
		keys = append(keys, rediscache.Key{ID: k.ID, Secret: secret})
	}
	return keys, nil
}

// redisOptions is the Redis client's configuration, with the password and
// TLS files read; it connects nowhere. newSharedCache and
// Config.CheckFiles call it; an error names the key under cache.redis
// (keyError).
func redisOptions(cfg Redis) (*redis.UniversalOptions, error) {
	opts := &redis.UniversalOptions{
		Addrs:        cfg.Addrs,
		MasterName:   cfg.MasterName,
		DB:           cfg.DB,
		Username:     cfg.Username,
		DialTimeout:  cfg.Timeout.D(),
		ReadTimeout:  cfg.Timeout.D(),
		WriteTimeout: cfg.Timeout.D(),
		PoolTimeout:  cfg.Timeout.D(),
		// One attempt: while Redis is down the gateway goes to the
		// provider at once instead of retrying on the request path.
		MaxRetries:      -1,
		DisableIdentity: true,
		ClientName:      "credgate",
	}
	if cfg.PasswordFile != "" || cfg.PasswordEnv != "" {
		pw, _, err := readSecret(cfg.PasswordFile, cfg.PasswordEnv)
		if err != nil {
			key := "password_file"
			if cfg.PasswordFile == "" {
				key = "password_env"
			}
			return nil, &keyError{key: key, err: fmt.Errorf("cache.redis.%s: %w", key, err)}
		}
		opts.Password = strings.TrimRight(pw, "\r\n")
		if cfg.MasterName != "" {
			opts.SentinelUsername, opts.SentinelPassword = cfg.Username, opts.Password
		}
	}
	if cfg.TLS.Enabled {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLS.ServerName}
		if cfg.TLS.CA != "" {
			pem, err := cfgfile.Read(cfg.TLS.CA)
			if err != nil {
				return nil, &keyError{key: "tls.ca", err: fmt.Errorf("cache.redis.tls.ca: %w", err)}
			}
			if tc.RootCAs, err = cabundle.AddRoots(x509.NewCertPool(), pem); err != nil {
				return nil, &keyError{key: "tls.ca", err: fmt.Errorf("cache.redis.tls.ca: %s: %w", cfg.TLS.CA, err)}
			}
		}
		if cfg.TLS.Cert != "" {
			certPEM, err := cfgfile.Read(cfg.TLS.Cert)
			if err != nil {
				return nil, &keyError{key: "tls.cert", err: fmt.Errorf("cache.redis.tls.cert: %w", err)}
			}
			keyPEM, err := cfgfile.ReadSecret(cfg.TLS.Key)
			if err != nil {
				return nil, &keyError{key: "tls.key", err: fmt.Errorf("cache.redis.tls.key: %w", err)}
			}
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, &keyError{key: "tls." + pairKey(err), err: fmt.Errorf("cache.redis.tls.cert/key: %w", err)}
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts.TLSConfig = tc
	}
	return opts, nil
}

// readSecret reads a value from a file or an environment variable and
// says where it came from (for messages; never the value).
func readSecret(file, env string) (value, where string, err error) {
	if file != "" {
		// Not a regular file (a named pipe, /dev/zero), or larger than a
		// secret can be: refused, not read (cfgfile).
		b, err := cfgfile.ReadSecret(file)
		if err != nil {
			return "", file, fmt.Errorf("read: %w", err)
		}
		return string(b), file, nil
	}
	v, ok := os.LookupEnv(env)
	if !ok || v == "" {
		return "", "$" + env, fmt.Errorf("environment variable %s is not set; set it in the gateway's environment (credgate validate runs where serve runs), or name a file instead", env)
	}
	return v, "$" + env, nil
}
