// Package otlp is the one description of an OTLP export destination that
// the gateway's OpenTelemetry exporters share (tracing:, audit.otlp:): the
// receiver's address and protocol, the export headers and where their
// values come from, and TLS. It exists so that the span exporter and the
// audit log exporter are configured, checked and dialled the same way.
package otlp

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/secret"
	"github.com/credgate/credgate/transform"
)

// Protocols of an Endpoint.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Endpoint is where and how OTLP data is exported. Embedded inline in the
// settings of each exporter.
type Endpoint struct {
	// Endpoint is the OTLP receiver's host:port (a Collector: 4317 for
	// gRPC, 4318 for HTTP).
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc (default) or http (OTLP/HTTP protobuf).
	Protocol string `yaml:"protocol"`
	// Headers are sent with every export (a backend's API key, say); each
	// value comes from exactly one of value, env or file.
	Headers map[string]HeaderValue `yaml:"headers"`
	// Insecure exports in plaintext (a Collector on localhost or in the
	// same pod); otherwise TLS verified against the system roots and CA.
	Insecure bool `yaml:"insecure"`
	// CA is a PEM file of roots added to the system roots for TLS.
	CA string `yaml:"ca"`
}

// HeaderValue is where one export header's value is: written in the
// config (value), in an environment variable (env) or in a file (file,
// trailing newline removed).
type HeaderValue struct {
	Value string `yaml:"value"`
	Env   string `yaml:"env"`
	File  string `yaml:"file"`
}

// Problem is one bad setting: Key is its path below the section (for the
// caller's FILE:LINE:COL), Msg says what is wrong and what to write.
type Problem struct {
	Key []string
	Msg string
}

// Check validates e; section names it in messages ("tracing",
// "audit.otlp"). Files are not read here.
func (e *Endpoint) Check(section string) []Problem {
	var ps []Problem
	bad := func(msg string, key ...string) { ps = append(ps, Problem{Key: key, Msg: msg}) }
	if e.Endpoint == "" {
		bad(section + ".endpoint is required: the OTLP receiver's host:port, e.g. otel-collector:4317 (grpc) or otel-collector:4318 (http)")
	} else if host, port, err := net.SplitHostPort(e.Endpoint); err != nil || host == "" || !validPort(port) {
		bad(fmt.Sprintf("%s.endpoint: %q is not host:port (e.g. otel-collector:4317); the scheme comes from insecure, the path from protocol", section, e.Endpoint), "endpoint")
	}
	switch e.Protocol {
	case "", ProtocolGRPC, ProtocolHTTP:
	default:
		bad(fmt.Sprintf("%s.protocol: unknown protocol %q (use grpc or http)", section, e.Protocol), "protocol")
	}
	if e.Insecure && e.CA != "" {
		bad(section+": insecure exports in plaintext, so ca is never used; remove one of them", "ca")
	}
	for name, v := range e.Headers {
		if !httpguts.ValidHeaderFieldName(name) {
			bad(fmt.Sprintf("%s.headers: %q is not a header name", section, name), "headers", name)
		}
		n := 0
		for _, s := range []string{v.Value, v.Env, v.File} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			bad(fmt.Sprintf("%s.headers.%s: set exactly one of value, env or file", section, name), "headers", name)
		}
	}
	return ps
}

// ResolvePaths makes the relative file paths in e relative to dir (the
// config file's directory).
func (e *Endpoint) ResolvePaths(dir string) {
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	rel(&e.CA)
	for k, v := range e.Headers {
		rel(&v.File)
		e.Headers[k] = v
	}
}

// GRPC reports whether e exports over gRPC (the default).
func (e *Endpoint) GRPC() bool { return e.Protocol != ProtocolHTTP }

// HeaderValues reads the export headers' values. Errors name the header
// and the variable or file, never a value.
func (e *Endpoint) HeaderValues(section string) (map[string]string, error) {
	if len(e.Headers) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(e.Headers))
	for name, v := range e.Headers {
		switch {
		case v.Env != "":
			s, ok := os.LookupEnv(v.Env)
			if !ok {
				return nil, fmt.Errorf("%s.headers.%s: environment variable %s is not set; set it or change the header's env", section, name, v.Env)
			}
			out[name] = s
		case v.File != "":
			b, err := cfgfile.ReadSecret(v.File)
			if err != nil {
				return nil, fmt.Errorf("%s.headers.%s: %w (the file holds the header's value)", section, name, err)
			}
			out[name] = strings.TrimRight(string(b), "\r\n")
		default:
			out[name] = v.Value
		}
	}
	return out, nil
}

// TLSConfig returns the exporter's TLS configuration: nil when Insecure,
// else the system roots plus CA.
func (e *Endpoint) TLSConfig(section string) (*tls.Config, error) {
	if e.Insecure {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CA == "" {
		return c, nil
	}
	pem, err := cfgfile.Read(e.CA)
	if err != nil {
		return nil, fmt.Errorf("%s.ca: %w", section, err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if roots, err = cabundle.AddRoots(roots, pem); err != nil {
		return nil, fmt.Errorf("%s.ca: %s: %w; it must be the CA that signed the Collector's certificate", section, e.CA, err)
	}
	c.RootCAs = roots
	return c, nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n <= 65535
}

// ErrorText returns the text of err, an OTLP exporter's error, for a log
// line. The receiver's answer is part of it (the HTTP exporters quote the
// response body, gRPC the status message), and a receiver, or a proxy in
// front of it, may echo the request's headers there: so every header
// value sent (the receiver's key, from headers) is redacted from the text
// in each of its forms and every piece of them transform.Scrubber knows,
// and the text is cut at transform.MaxPiecesText bytes.
func ErrorText(err error, headers map[string]string) string {
	if err == nil {
		return ""
	}
	b := []byte(err.Error())
	if len(headers) == 0 {
		if len(b) > transform.MaxPiecesText {
			b = b[:transform.MaxPiecesText]
		}
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	vals := make([]secret.Value, 0, len(headers))
	for _, v := range headers {
		vals = append(vals, secret.New(v))
	}
	b, _ = transform.NewScrubber(vals, transform.ScrubOptions{}).Pieces(b)
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
