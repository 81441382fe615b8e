package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// The built-in verifiers register under their factor kinds, so that
// `require:` in a policy can name them and `credgate validate` can list
// them. New builds them from a typed Config; these modules build one from
// loosely typed settings (the same keys as its block under `identity:`).
func init() {
	Register(Module{Name: KindMTLS, New: func(ctx context.Context, settings map[string]any) (Verifier, error) {
		var c MTLSConfig
		if err := decodeSettings(settings, &c); err != nil {
			return nil, fmt.Errorf("identity: mtls: %w", err)
		}
		full := Config{MTLS: c}.WithDefaults()
		if err := full.Validate(); err != nil {
			return nil, err
		}
		return newMTLSVerifier(ctx, full.MTLS, buildOptions(nil))
	}})
	Register(Module{Name: KindJWT, New: func(ctx context.Context, settings map[string]any) (Verifier, error) {
		var c JWTConfig
		if err := decodeSettings(settings, &c); err != nil {
			return nil, fmt.Errorf("identity: jwt: %w", err)
		}
		full := Config{JWT: c}.WithDefaults()
		if err := full.Validate(); err != nil {
			return nil, err
		}
		if len(full.JWT.Issuers) == 0 {
			return nil, fmt.Errorf("identity: jwt: no issuers configured")
		}
		return newJWTVerifier(ctx, full.JWT, buildOptions(nil))
	}})
	Register(Module{Name: KindKubernetes, New: func(ctx context.Context, settings map[string]any) (Verifier, error) {
		var c KubernetesConfig
		if err := decodeSettings(settings, &c); err != nil {
			return nil, fmt.Errorf("identity: kubernetes: %w", err)
		}
		full := Config{Kubernetes: &c}.WithDefaults()
		if err := full.Validate(); err != nil {
			return nil, err
		}
		return newTokenReviewVerifier(*full.Kubernetes, nil, buildOptions(nil))
	}})
}

// decodeSettings decodes settings into v strictly: unknown keys are
// errors.
func decodeSettings(settings map[string]any, v any) error {
	data, err := yaml.Marshal(settings)
	if err != nil {
		return fmt.Errorf("encode settings: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decode settings: %w", err)
	}
	return nil
}
