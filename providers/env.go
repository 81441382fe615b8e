package providers

import (
	"context"
	"log/slog"
)

// EventObserver receives the lifecycle events of providers that keep a
// session with their source (a Vault login, its token and lease renewals,
// revocations on cleanup); the gateway counts them in metrics.
// Implementations are safe for concurrent use and fast; they receive no
// secret value.
type EventObserver interface {
	// ProviderEvent is called once per event. provider is the registered
	// provider name; event and result are short fixed words chosen by the
	// provider (for example "lease_renewal" and "refused"), never a value,
	// a path or a name from the policy.
	ProviderEvent(provider, event, result string)
}

// Env is what the gateway hands providers when it provisions them: where
// to log and where to report events. Providers read it in Provision with
// EnvFrom.
type Env struct {
	// Log receives the provider's log lines (never a secret value).
	// Nil: discarded.
	Log *slog.Logger
	// Events receives the provider's lifecycle events. Nil: discarded.
	Events EventObserver
}

type envKey struct{}

// WithEnv returns ctx carrying env, for the Provision calls of the
// providers loaded with it.
func WithEnv(ctx context.Context, env Env) context.Context {
	return context.WithValue(ctx, envKey{}, env)
}

// EnvFrom returns the Env in ctx, with a discarding logger and observer
// for what is not set, so a provider can always use both.
func EnvFrom(ctx context.Context) Env {
	env, _ := ctx.Value(envKey{}).(Env)
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	if env.Events == nil {
		env.Events = noEvents{}
	}
	return env
}

// noEvents is the EventObserver that discards events.
type noEvents struct{}

func (noEvents) ProviderEvent(string, string, string) {}
