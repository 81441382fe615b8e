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
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Protocols of tracing.protocol.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Defaults applied by Config.ApplyDefaults.
const (
	DefaultProtocol      = ProtocolGRPC
	DefaultSamplingRatio = 1.0
	DefaultServiceName   = "credgate"
)

// Config is the `tracing:` section of the gateway config. The zero value
// is tracing off.
type Config struct {
	// Enabled turns tracing on; everything else is ignored while it is
	// false.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the OTLP receiver's host:port (a Collector: 4317 for
	// gRPC, 4318 for HTTP). Required when enabled.
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc (default) or http (OTLP/HTTP protobuf to
	// /v1/traces).
	Protocol string `yaml:"protocol"`
	// SamplingRatio is the share of new traces recorded, 0 to 1 (default
	// 1). A request whose client sent a traceparent follows the client's
	// sampled flag (parent-based sampling).
	SamplingRatio *float64 `yaml:"sampling_ratio"`
	// Headers are sent with every export (a backend's API key, say); each
	// value comes from exactly one of value, env or file.
	Headers map[string]HeaderValue `yaml:"headers"`
	// Insecure exports in plaintext (a Collector on localhost or in the
	// same pod); otherwise TLS verified against the system roots and CA.
	Insecure bool `yaml:"insecure"`
	// CA is a PEM file of roots added to the system roots for the
	// exporter's TLS.
	CA string `yaml:"ca"`
	// ServiceName is the service.name resource attribute (default
	// "credgate").
	ServiceName string `yaml:"service_name"`
}

// HeaderValue is where one export header's value is: written in the
// config (value), in an environment variable (env) or in a file (file,
// trailing newline removed).
type HeaderValue struct {
	Value string `yaml:"value"`
	Env   string `yaml:"env"`
	File  string `yaml:"file"`
}

// Problem is one bad setting: Key is its path below `tracing:` (for the
// caller's FILE:LINE:COL), Msg says what is wrong and what to write.
type Problem struct {
	Key []string
	Msg string
}

// Check validates c and returns every problem. Paths are not read here.
func (c *Config) Check() []Problem {
	var ps []Problem
	bad := func(msg string, key ...string) { ps = append(ps, Problem{Key: key, Msg: msg}) }
	if !c.Enabled {
		return nil
	}
	if c.Endpoint == "" {
		bad("tracing.endpoint is required when tracing is enabled: the OTLP receiver's host:port, e.g. otel-collector:4317 (grpc) or otel-collector:4318 (http)", "enabled")
	} else if host, port, err := net.SplitHostPort(c.Endpoint); err != nil || host == "" || !validPort(port) {
		bad(fmt.Sprintf("tracing.endpoint: %q is not host:port (e.g. otel-collector:4317); the scheme comes from insecure, the path from protocol", c.Endpoint), "endpoint")
	}
	switch c.Protocol {
	case "", ProtocolGRPC, ProtocolHTTP:
	default:
		bad(fmt.Sprintf("tracing.protocol: unknown protocol %q (use grpc or http)", c.Protocol), "protocol")
	}
	if r := c.SamplingRatio; r != nil && (math.IsNaN(*r) || *r < 0 || *r > 1) {
		bad(fmt.Sprintf("tracing.sampling_ratio: %v is not between 0 and 1 (0.1 records one new trace in ten)", *r), "sampling_ratio")
	}
	if c.Insecure && c.CA != "" {
		bad("tracing: insecure exports in plaintext, so ca is never used; remove one of them", "ca")
	}
	for name, v := range c.Headers {
		if !httpguts.ValidHeaderFieldName(name) {
			bad(fmt.Sprintf("tracing.headers: %q is not a header name", name), "headers", name)
		}
		n := 0
		for _, s := range []string{v.Value, v.Env, v.File} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			bad(fmt.Sprintf("tracing.headers.%s: set exactly one of value, env or file", name), "headers", name)
		}
	}
	return ps
}

// ResolvePaths makes the relative file paths in c relative to dir (the
// config file's directory).
func (c *Config) ResolvePaths(dir string) {
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	rel(&c.CA)
	for k, v := range c.Headers {
		rel(&v.File)
		c.Headers[k] = v
	}
}

// ApplyDefaults fills the unset fields of an enabled config.
func (c *Config) ApplyDefaults() {
	if c.Protocol == "" {
		c.Protocol = DefaultProtocol
	}
	if c.SamplingRatio == nil {
		r := DefaultSamplingRatio
		c.SamplingRatio = &r
	}
	if c.ServiceName == "" {
		c.ServiceName = DefaultServiceName
	}
}

// headers reads the export headers' values.
func (c *Config) headers() (map[string]string, error) {
	if len(c.Headers) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(c.Headers))
	for name, v := range c.Headers {
		switch {
		case v.Env != "":
			s, ok := os.LookupEnv(v.Env)
			if !ok {
				return nil, fmt.Errorf("tracing.headers.%s: environment variable %s is not set; set it or change the header's env", name, v.Env)
			}
			out[name] = s
		case v.File != "":
			b, err := os.ReadFile(v.File)
			if err != nil {
				return nil, fmt.Errorf("tracing.headers.%s: %w (the file holds the header's value)", name, err)
			}
			out[name] = strings.TrimRight(string(b), "\r\n")
		default:
			out[name] = v.Value
		}
	}
	return out, nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n <= 65535
}
