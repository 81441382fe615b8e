// Package tracing is the gateway's OpenTelemetry tracing: the `tracing:`
// settings of the gateway config, the OTLP exporter (gRPC or HTTP) they
// describe, and the spans of one request through the gateway (Request,
// Span). The gateway holds a *Tracer only when tracing is enabled and
// checks it for nil before every call, so that tracing off costs the
// request path nothing (docs/audit-and-metrics.md#tracing).
//
// No span attribute carries a secret: attributes are names the policy
// chose (workload, rule, credential, destination), the path without its
// query, methods, status codes and reason codes; never a header value, a
// query string or an error text (docs/audit-and-metrics.md lists them).
package tracing

import (
	"fmt"
	"math"

	"github.com/credgate/credgate/internal/otlp"
)

// Defaults applied by Config.ApplyDefaults.
const (
	DefaultSamplingRatio = 1.0
	DefaultServiceName   = "credgate"
)

// Values of Config.ClientSampling.
const (
	ClientSamplingFollow = "follow"
	ClientSamplingRatio  = "ratio"
)

// Config is the `tracing:` section of the gateway config. The zero value
// is tracing off.
type Config struct {
	// Enabled turns tracing on; everything else is ignored while it is
	// false.
	Enabled bool `yaml:"enabled"`
	// OTLP is where the spans go (endpoint, protocol, headers, insecure,
	// ca).
	OTLP otlp.Endpoint `yaml:",inline"`
	// SamplingRatio is the share of new traces recorded, 0 to 1 (default
	// 1). A request whose client sent a traceparent follows the client's
	// sampled flag (parent-based sampling), as ClientSampling says.
	SamplingRatio *float64 `yaml:"sampling_ratio"`
	// ClientSampling is what a client's traceparent with the sampled flag
	// set decides: ClientSamplingFollow (the default) records the request
	// whatever SamplingRatio, so any client, even one the policy refuses,
	// can have every request it sends recorded and exported;
	// ClientSamplingRatio samples it at SamplingRatio too (its trace is
	// continued when sampled). A client's flag 0 is followed either way.
	ClientSampling string `yaml:"client_sampling"`
	// ServiceName is the service.name resource attribute (default
	// "credgate").
	ServiceName string `yaml:"service_name"`
}

// Problem is one bad setting (otlp.Problem).
type Problem = otlp.Problem

// Check validates c and returns every problem. Paths are not read here.
func (c *Config) Check() []Problem {
	if !c.Enabled {
		return nil
	}
	ps := c.OTLP.Check("tracing")
	if r := c.SamplingRatio; r != nil && (math.IsNaN(*r) || *r < 0 || *r > 1) {
		ps = append(ps, Problem{Key: []string{"sampling_ratio"}, Msg: fmt.Sprintf("tracing.sampling_ratio: %v is not between 0 and 1 (0.1 records one new trace in ten)", *r)})
	}
	switch c.ClientSampling {
	case "", ClientSamplingFollow, ClientSamplingRatio:
	default:
		ps = append(ps, Problem{Key: []string{"client_sampling"}, Msg: fmt.Sprintf("tracing.client_sampling: unknown value %q (use follow: a client's sampled flag records its request, or ratio: sampling_ratio decides for it too)", c.ClientSampling)})
	}
	return ps
}

// ApplyDefaults fills the unset fields of an enabled config.
func (c *Config) ApplyDefaults() {
	if c.OTLP.Protocol == "" {
		c.OTLP.Protocol = otlp.ProtocolGRPC
	}
	if c.SamplingRatio == nil {
		r := DefaultSamplingRatio
		c.SamplingRatio = &r
	}
	if c.ClientSampling == "" {
		c.ClientSampling = ClientSamplingFollow
	}
	if c.ServiceName == "" {
		c.ServiceName = DefaultServiceName
	}
}
