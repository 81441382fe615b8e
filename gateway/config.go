package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/audit/otlpsink"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/identity/runtoken"
	"github.com/credgate/credgate/internal/batch"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/tracing"
	"github.com/credgate/credgate/internal/yamlstrict"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/rediscache"
)

// Defaults applied by LoadConfig (and ApplyDefaults) to unset fields.
const (
	DefaultListen                = ":3128"
	DefaultAdminListen           = "127.0.0.1:9090"
	DefaultDialTimeout           = 10 * time.Second
	DefaultTLSHandshakeTimeout   = 10 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultResponseIdleTimeout   = 5 * time.Minute
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultMaxIdleConnsPerHost   = 64
	// DefaultMaxIdleConns bounds the idle upstream connections to all
	// hosts together (upstream.max_idle_conns).
	DefaultMaxIdleConns = 1024
	// DefaultMaxResponseHeaderBytes is upstream.max_response_header_bytes.
	DefaultMaxResponseHeaderBytes = 64 << 10
	DefaultMaxHeaderBytes         = 64 << 10
	DefaultReadHeaderTimeout      = 10 * time.Second
	DefaultIdleTimeout            = 120 * time.Second
	DefaultBodyIdleTimeout        = 60 * time.Second
	DefaultWriteIdleTimeout       = 60 * time.Second
	DefaultLongLivedIdleTimeout   = 15 * time.Minute
	DefaultLongLivedMaxLifetime   = 24 * time.Hour
	// DefaultBatchBufferBytes is limits.batch_buffer_bytes: 32 batch
	// bodies of 1 MiB.
	DefaultBatchBufferBytes = 32 << 20
	// MinBatchBufferBytes is the least limits.batch_buffer_bytes other
	// than 0: one batch body of the largest size, as sent and decoded.
	MinBatchBufferBytes = 2 * batch.MaxBody
	// DefaultInFlightIdentityGrace is limits.in_flight_identity_grace.
	DefaultInFlightIdentityGrace = 30 * time.Second
	DefaultShutdownTimeout       = 30 * time.Second
	DefaultAuditOutput           = "stdout"
	DefaultReloadInterval        = 30 * time.Second
	DefaultTicketRotation        = time.Hour
)

// The range of upstream.max_response_header_bytes.
const (
	minResponseHeaderBytes = 1 << 10
	maxResponseHeaderBytes = 16 << 20
)

// The range of ca.leaf_ttl.
const (
	minLeafTTL = time.Minute
	maxLeafTTL = 397 * 24 * time.Hour
)

// Config is the gateway config file (docs/config.md). It holds settings
// only; runtime state lives in Gateway. Relative paths in it are resolved
// against the config file's directory by LoadConfig.
type Config struct {
	// Listen is the plain proxy listener (absolute-URI HTTP and CONNECT).
	Listen string `yaml:"listen"`
	// TLSListen, when set, is a second listener on which the client to
	// gateway hop is TLS ("HTTPS proxy"); it needs TLS.Cert and TLS.Key,
	// or TLS.SVID.
	TLSListen string `yaml:"tls_listen"`
	// TLS configures the TLS listener.
	TLS ListenerTLS `yaml:"tls"`
	// ProxyProtocol reads the PROXY protocol header a TCP load balancer
	// in front of a proxy listener sends (off by default);
	// docs/config.md#proxy_protocol.
	ProxyProtocol ProxyProtocolListeners `yaml:"proxy_protocol"`
	// AdminListen serves /healthz, /readyz and /metrics.
	AdminListen string `yaml:"admin_listen"`
	// Policy is the policy file, watched and reloaded on change and SIGHUP.
	Policy string `yaml:"policy"`
	// CA is the interception CA.
	CA CAConfig `yaml:"ca"`
	// SessionTickets configures TLS session resumption for the gateway's
	// clients, on intercepted connections and on tls_listen.
	SessionTickets SessionTickets `yaml:"session_tickets"`
	// Upstream configures connections to destinations.
	Upstream Upstream `yaml:"upstream"`
	// Resolve pins "host:port" to "address:port", used instead of DNS.
	Resolve map[string]string `yaml:"resolve"`
	// Limits bound what clients may send.
	Limits Limits `yaml:"limits"`
	// Cache configures the credential cache.
	Cache Cache `yaml:"cache"`
	// Audit says where audit lines go.
	Audit Audit `yaml:"audit"`
	// Log configures the process log.
	Log Log `yaml:"log"`
	// ShutdownTimeout is how long in-flight requests may take to finish
	// after SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Identity configures the factors that identify callers (mtls, jwt,
	// kubernetes, posture); docs/config.md#identity.
	Identity identity.Config `yaml:"identity"`
	// Admin configures the admin API (the kill switch); docs/config.md#admin.
	Admin Admin `yaml:"admin"`
	// RunTokens, when set, lets `credgate run` ask the admin API for
	// short-lived tokens naming a workload, which the jwt factor trusts
	// (docs/agents.md#credgate-run).
	RunTokens *runtoken.Config `yaml:"run_tokens"`
	// Tracing exports OpenTelemetry spans of each request (off by
	// default); docs/config.md#tracing.
	Tracing tracing.Config `yaml:"tracing"`

	// file is the config file's path, for PolicyPath and messages.
	file string
	// root is the config's YAML document, for the positions of
	// CheckFiles's errors; nil when built by hand.
	root *yaml.Node
	// resolve is Resolve parsed.
	resolve map[string]netip.AddrPort
}

// ListenerTLS is the TLS listener's own certificate and client trust.
type ListenerTLS struct {
	// Cert and Key are the gateway's server certificate and key (PEM).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ClientCA, when set, holds PEM roots against which a client
	// certificate, if presented, is verified (the mtls factor).
	ClientCA string `yaml:"client_ca"`
	// ReloadInterval is how often Cert, Key and ClientCA are checked for
	// changes; new content is used for the next handshakes.
	ReloadInterval Duration `yaml:"reload_interval"`
	// SVID, instead of Cert and Key, serves the gateway's own X.509-SVID
	// from the SPIFFE Workload API (identity.mtls.workload_api), the one
	// in force at each handshake.
	SVID bool `yaml:"svid"`
}

// CAConfig is the interception CA and its leaf certificates.
type CAConfig struct {
	// Cert and Key are the CA certificate and private key (PEM).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// LeafTTL is each leaf certificate's lifetime (default 24h).
	LeafTTL Duration `yaml:"leaf_ttl"`
	// LeafCacheSize bounds the cached leaf certificates (default 1024).
	LeafCacheSize int `yaml:"leaf_cache_size"`
	// ReloadInterval is how often Cert and Key are checked for changes
	// (a rotated CA); the leaf cache is dropped when they change.
	ReloadInterval Duration `yaml:"reload_interval"`
}

// SessionTickets configures TLS session resumption (TLS 1.3 session
// tickets) for clients of the interception listener and of tls_listen.
// The ticket keys are random, held in memory by each process and rotated;
// they are never configured, written or shared.
type SessionTickets struct {
	// Enabled, true unless set to false, issues and accepts session
	// tickets.
	Enabled *bool `yaml:"enabled"`
	// Rotation is how often a new ticket key is made (default 1h); the
	// previous key still decrypts for one more interval, so a ticket
	// resumes for at most twice this.
	Rotation Duration `yaml:"rotation"`
}

// On reports whether session tickets are enabled.
func (s SessionTickets) On() bool { return s.Enabled == nil || *s.Enabled }

// Upstream configures connections to destinations. Upstream TLS is always
// verified; there is deliberately no setting to skip verification.
type Upstream struct {
	// CABundle adds PEM roots to the system roots.
	CABundle string `yaml:"ca_bundle"`
	// DialTimeout bounds the TCP connect.
	DialTimeout Duration `yaml:"dial_timeout"`
	// TLSHandshakeTimeout bounds the TLS handshake.
	TLSHandshakeTimeout Duration `yaml:"tls_handshake_timeout"`
	// ResponseHeaderTimeout bounds the wait for response headers.
	ResponseHeaderTimeout Duration `yaml:"response_header_timeout"`
	// ResponseIdleTimeout cuts off a response whose upstream sends no
	// byte of the body for this long while the gateway waits for one:
	// the upstream request is cancelled and the client's response cut
	// (upstream_idle). Time the client takes to read does not count.
	ResponseIdleTimeout Duration `yaml:"response_idle_timeout"`
	// IdleConnTimeout closes idle keep-alive connections.
	IdleConnTimeout Duration `yaml:"idle_conn_timeout"`
	// MaxIdleConnsPerHost bounds idle keep-alive connections per upstream.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`
	// MaxIdleConns bounds idle keep-alive connections to all upstreams
	// together: a caller that reaches many names (a wildcard destination)
	// would otherwise keep one idle connection, a file descriptor, per
	// name for idle_conn_timeout. Past it the connection idle the longest
	// is closed. It bounds the HTTP/2 upstream connections of every pool
	// together too (h2Conns), which net/http keeps outside its pool.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// MaxResponseHeaderBytes bounds a response's header block from an
	// upstream (HTTP/1.1: the status line and fields; HTTP/2: the field
	// list as SETTINGS_MAX_HEADER_LIST_SIZE counts it). A larger one is
	// answered 502 upstream_error.
	MaxResponseHeaderBytes int64 `yaml:"max_response_header_bytes"`
	// HTTP2 says when HTTP/2 is used to upstreams that offer it:
	// "match" (the client's protocol: HTTP/2 for HTTP/2 clients,
	// HTTP/1.1 for HTTP/1.1 clients), "always" or "never".
	HTTP2 string `yaml:"http2"`
}

// Values of upstream.http2.
const (
	HTTP2Match  = "match"
	HTTP2Always = "always"
	HTTP2Never  = "never"
)

// Limits bound what clients may send.
type Limits struct {
	// MaxHeaderBytes is the largest request header block accepted.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadHeaderTimeout is the time a client has to send request headers
	// (and, on intercepted connections, to finish the TLS handshake).
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes idle client keep-alive connections.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// BodyIdleTimeout cuts off a request whose client sends no byte of
	// the body for this long while the gateway waits for one; the
	// upstream request is cancelled.
	BodyIdleTimeout Duration `yaml:"body_idle_timeout"`
	// BodyMinRate, in bytes per second, cuts off a request whose client
	// sends the body slower than this on average over the time the
	// gateway waited for it, once that reaches BodyIdleTimeout; 0 is off.
	BodyMinRate int `yaml:"body_min_rate"`
	// WriteIdleTimeout cuts off a response whose client takes no byte of
	// it for this long while the gateway waits to write one (a client
	// that stops reading, or an HTTP/2 client that grants no flow-control
	// window): the client's connection (HTTP/1.1) or stream (HTTP/2) is
	// cut and the upstream request cancelled.
	WriteIdleTimeout Duration `yaml:"write_idle_timeout"`
	// LongLived bounds spliced tunnels and WebSockets.
	LongLived LongLived `yaml:"long_lived"`
	// InFlightIdentityGrace is how long after its identity expired a
	// request still in flight (a streamed answer or body) may run before
	// its evidence is verified again and, when it no longer verifies,
	// the request is cut (502 identity_expired_in_flight). It spares the
	// ordinary request whose token expires during its few milliseconds
	// in flight.
	InFlightIdentityGrace Duration `yaml:"in_flight_identity_grace"`
	// MaxConnections caps the open client connections of the proxy
	// listeners (listen and tls_listen together); a connection over it
	// is refused (connection_limit). Unset: derived from RLIMIT_NOFILE
	// and the Go memory limit (ConnectionCaps); 0 is off.
	MaxConnections *int `yaml:"max_connections"`
	// MaxConnectionsPerSource caps the open client connections from one
	// client IP address (an IPv6 address counts alone, an IPv4-mapped
	// one as its IPv4 address). Unset: a quarter of MaxConnections in
	// force; 0 is off.
	MaxConnectionsPerSource *int `yaml:"max_connections_per_source"`
	// BatchBufferBytes caps the bytes of batch bodies the gateway holds
	// at once, over all requests, to judge their sub-requests
	// (docs/security.md, "Request-in-request endpoints"): each batch
	// body as sent, and decoded while it is judged. A batch over it is
	// refused 503 batch_capacity. Unset: DefaultBatchBufferBytes; 0 is
	// off; otherwise at least MinBatchBufferBytes.
	BatchBufferBytes *int `yaml:"batch_buffer_bytes"`
}

// LongLived bounds the connections whose bytes are relayed without a
// decision per request: spliced tunnels and upgraded (WebSocket)
// connections. They also close when the identity that opened them
// expires and when the kill switch covers them.
type LongLived struct {
	// IdleTimeout closes one after this long without a byte either way.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxLifetime closes one this long after it opened, whatever it
	// carries: the decision that opened it is made again on reconnect.
	MaxLifetime Duration `yaml:"max_lifetime"`
}

// Cache configures the credential cache (providers.CacheOptions).
type Cache struct {
	// DefaultTTL applies to credentials without their own expiry.
	DefaultTTL Duration `yaml:"default_ttl"`
	// MaxTTL is the longest a credential is cached (in memory and in
	// Redis), whatever expiry its source gives it
	// (providers.DefaultCacheMaxTTL when unset).
	MaxTTL Duration `yaml:"max_ttl"`
	// RefreshAhead starts a background refresh this long before expiry.
	RefreshAhead Duration `yaml:"refresh_ahead"`
	// ErrorBackoff is the longest a failed fetch is remembered.
	ErrorBackoff Duration `yaml:"error_backoff"`
	// FetchTimeout bounds one provider fetch.
	FetchTimeout Duration `yaml:"fetch_timeout"`
	// Redis, when its addrs are set, shares the cache between replicas
	// (docs/config.md#cacheredis).
	Redis Redis `yaml:"redis"`
}

// Redis defaults.
const (
	DefaultRedisNamespace = "credgate"
	DefaultRedisTimeout   = 500 * time.Millisecond
	DefaultRedisLockTTL   = 3 * time.Second
	DefaultRedisSkew      = 5 * time.Second
)

// Redis is the shared credential cache (providers/rediscache). One
// address is a standalone server; master_name selects Sentinel (addrs are
// the sentinels); several addresses without master_name are a Cluster.
type Redis struct {
	// Addrs are host:port addresses; empty disables the shared cache.
	Addrs []string `yaml:"addrs"`
	// MasterName is the Sentinel master's name.
	MasterName string `yaml:"master_name"`
	// DB is the database number (standalone and Sentinel only).
	DB int `yaml:"db"`
	// Username is the ACL user ("" for the default user).
	Username string `yaml:"username"`
	// PasswordFile and PasswordEnv name where the password is: a file
	// (trailing newline removed) or an environment variable. The password
	// is never written in the config itself.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// TLS, when enabled, connects with TLS verified against CA (or the
	// system roots); Cert and Key are a client certificate.
	TLS RedisTLS `yaml:"tls"`
	// Namespace prefixes every key and channel (default "credgate"):
	// deployments sharing a Redis need different ones.
	Namespace string `yaml:"namespace"`
	// EncryptionKeys seal entries (AES-256-GCM); the first seals, all
	// open. At least one is required.
	EncryptionKeys []RedisKey `yaml:"encryption_keys"`
	// Timeout bounds each Redis operation (default 500ms).
	Timeout Duration `yaml:"timeout"`
	// LockTTL is the cross-replica fetch lock's lifetime (default 3s; the
	// owner extends it while it fetches).
	LockTTL Duration `yaml:"lock_ttl"`
	// ExpirySkew: an entry expires in Redis this long before its
	// credential does (default 5s).
	ExpirySkew Duration `yaml:"expiry_skew"`
}

// RedisTLS is the TLS client configuration towards Redis.
type RedisTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"`
}

// RedisKey is one encryption key: 32 random bytes, base64-encoded, read
// from a file or an environment variable.
type RedisKey struct {
	// ID is written in clear into every entry the key seals.
	ID string `yaml:"id"`
	// File holds the base64 key.
	File string `yaml:"file"`
	// Env names an environment variable holding the base64 key.
	Env string `yaml:"env"`
}

// Enabled reports whether the shared cache is configured.
func (r Redis) Enabled() bool { return len(r.Addrs) > 0 }

// redisSettings reports whether r sets anything besides addrs.
func redisSettings(r Redis) bool {
	r.Addrs = nil
	if len(r.EncryptionKeys) == 0 {
		r.EncryptionKeys = nil
	}
	return !reflect.ValueOf(r).IsZero()
}

// Audit says where audit lines go and how they are chained, signed,
// rotated and bounded (docs/config.md#audit).
type Audit struct {
	// Output is "stdout", "stderr" or a file path (appended to).
	Output string `yaml:"output"`
	// OTLP, when set, also exports every line as an OpenTelemetry log
	// record (docs/audit-and-metrics.md#otlp-sink); on_stall applies to
	// it as to Output.
	OTLP otlpsink.Config `yaml:"otlp"`
	// Replica is the base of the replica id every line carries (default:
	// the host name); a random suffix per process is always added, so
	// that each process run is a chain of its own.
	Replica string `yaml:"replica"`
	// Chain, true unless set to false, numbers and hash-chains the lines
	// (seq, replica, prev).
	Chain *bool `yaml:"chain"`
	// Checkpoint signs the chain head now and then.
	Checkpoint AuditCheckpoint `yaml:"checkpoint"`
	// Rotate rotates a file output by size and age.
	Rotate AuditRotate `yaml:"rotate"`
	// OnStall is block (default), drop or fail_closed: what happens to a
	// request's line while the sink does not keep up and the buffer is
	// full.
	OnStall string `yaml:"on_stall"`
	// BufferBytes bounds the lines waiting for the sink (default 4 MiB).
	BufferBytes int `yaml:"buffer_bytes"`
	// StallTimeout: a sink write taking longer counts as stalled for
	// fail_closed (default 1s).
	StallTimeout Duration `yaml:"stall_timeout"`
	// FingerprintKeyFile holds the base64 key (at least 16 bytes) of the
	// credential fingerprints (credential_fp); with the same key on every
	// replica the same credential has the same fingerprint everywhere.
	// Unset: a random key per process.
	FingerprintKeyFile string `yaml:"fingerprint_key_file"`
}

// AuditCheckpoint configures signed checkpoints.
type AuditCheckpoint struct {
	// KeyFile is an Ed25519 private key, PEM PKCS#8 (openssl genpkey
	// -algorithm ed25519); unset (and no VaultTransit): no checkpoints.
	KeyFile string `yaml:"key_file"`
	// Signer, instead of KeyFile, signs with a key held elsewhere: one
	// entry, a registered signer's name (vault_transit: an ed25519 key in
	// Vault's transit engine) and its settings (audit.RegisterSigner).
	Signer map[string]SignerSettings `yaml:"signer"`
	// Lines and Every: a checkpoint after this many lines or this long,
	// whichever comes first (defaults 1000 and 10s), and one on shutdown.
	Lines int      `yaml:"lines"`
	Every Duration `yaml:"every"`
}

// SignerSettings keeps a checkpoint signer's settings as written, for the
// signer's own strict decoding (its line numbers intact).
type SignerSettings struct{ node *yaml.Node }

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *SignerSettings) UnmarshalYAML(n *yaml.Node) error {
	s.node = n
	return nil
}

// signer returns the one signer named in Signer and its settings.
func (c AuditCheckpoint) signer() (string, *yaml.Node) {
	for name, st := range c.Signer {
		return name, st.node
	}
	return "", nil
}

// signing reports whether checkpoints are signed (by a key file or Vault).
func (c AuditCheckpoint) signing() bool { return c.KeyFile != "" || len(c.Signer) > 0 }

// AuditRotate configures the rotation of a file output.
type AuditRotate struct {
	// MaxBytes rotates before the file would grow past this; 0: never.
	MaxBytes int64 `yaml:"max_bytes"`
	// Every rotates a file this old; 0: never.
	Every Duration `yaml:"every"`
}

// Chained reports whether audit lines are chained (audit.chain).
func (a Audit) Chained() bool { return a.Chain == nil || *a.Chain }

// check validates the audit settings; paths are resolved by the caller.
func (a *Audit) check(path string, root *yaml.Node) []error {
	var errs []error
	bad := func(msg string, key ...string) {
		l, c := position(root, append([]string{"audit"}, key...)...)
		errs = append(errs, &ConfigError{File: path, Line: l, Col: c, Msg: msg})
	}
	if a.Replica != "" {
		if err := audit.ValidReplica(a.Replica); err != nil {
			bad("audit.replica: "+err.Error(), "replica")
		}
	}
	if _, err := audit.ParseStallPolicy(a.OnStall); err != nil {
		bad("audit.on_stall: "+err.Error(), "on_stall")
	}
	if a.BufferBytes != 0 && a.BufferBytes < 64<<10 {
		bad("audit.buffer_bytes: at least 65536 (64 KiB), or leave it unset for 4 MiB", "buffer_bytes")
	}
	if a.Checkpoint.Lines < 0 {
		bad("audit.checkpoint.lines must not be negative", "checkpoint", "lines")
	}
	if a.Checkpoint.KeyFile != "" && !a.Chained() {
		bad("audit.checkpoint.key_file signs the chain: it needs audit.chain (remove chain: false or the key)", "checkpoint", "key_file")
	}
	if len(a.Checkpoint.Signer) > 0 && !a.Chained() {
		bad("audit.checkpoint.signer signs the chain: it needs audit.chain (remove chain: false or the signer)", "checkpoint", "signer")
	}
	if !a.Checkpoint.signing() && (a.Checkpoint.Lines != 0 || a.Checkpoint.Every != 0) {
		bad("audit.checkpoint: lines and every need key_file (an Ed25519 private key: openssl genpkey -algorithm ed25519 -out audit.key) or signer", "checkpoint")
	}
	if n := len(a.Checkpoint.Signer); n > 0 {
		name, node := a.Checkpoint.signer()
		switch {
		case a.Checkpoint.KeyFile != "":
			bad("audit.checkpoint: set key_file or signer, not both", "checkpoint", "signer")
		case n > 1:
			bad("audit.checkpoint.signer: name one signer (e.g. vault_transit: {...})", "checkpoint", "signer")
		default:
			if err := audit.CheckSigner(name, node); err != nil {
				bad(fmt.Sprintf("audit.checkpoint.signer.%s: %v", name, err), "checkpoint", "signer", name)
			}
		}
	}
	for _, p := range a.OTLP.Check() {
		bad(p.Msg, append([]string{"otlp"}, p.Key...)...)
	}
	if a.Rotate.MaxBytes < 0 {
		bad("audit.rotate.max_bytes must not be negative", "rotate", "max_bytes")
	}
	if (a.Rotate.MaxBytes != 0 || a.Rotate.Every != 0) && (a.Output == "" || a.Output == "stdout" || a.Output == "stderr") {
		bad("audit.rotate needs audit.output to be a file (stdout and stderr are rotated by whoever collects them)", "rotate")
	}
	return errs
}

// Log configures the process log (JSON lines on stderr).
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
}

// Duration is a time.Duration written as a Go duration string ("10s").
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	// The messages never hold the value: a secret pasted under the wrong
	// key must not reach a log. "line N: column C: " lets
	// yamlstrict.Explain find the key path; a *yaml.TypeError lets
	// yaml.v3 go on and report the other errors of the file too.
	bad := func(msg string) error {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: column %d: want a duration such as 500ms, 10s or 5m%s", n.Line, n.Column, msg)}}
	}
	switch n.Kind {
	case yaml.ScalarNode:
	case yaml.MappingNode:
		return bad(", got a mapping")
	case yaml.SequenceNode:
		return bad(", got a list")
	default:
		return bad("")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return bad(" (a number and a unit, not negative)")
	}
	*d = Duration(v)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ConfigError is one problem in a config file, at a position.
type ConfigError struct {
	File      string
	Line, Col int
	Msg       string
}

// Error returns "FILE:LINE:COL: message" (or "FILE: message" when the
// position is unknown).
func (e *ConfigError) Error() string {
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// LoadConfig reads the config file at path, rejects unknown keys and bad
// values (errors are "FILE:LINE:COL: message", one per line), resolves
// relative paths against the file's directory and applies defaults.
func LoadConfig(path string) (*Config, error) {
	data, err := cfgfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig is LoadConfig on data already read from path.
func ParseConfig(path string, data []byte) (*Config, error) {
	// One document: yaml.Unmarshal would read the first and drop the
	// rest unread, settings and mistakes alike.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(path, data, err)
	}
	if len(doc.Content) == 0 {
		return nil, &ConfigError{File: path, Msg: "empty config; it needs at least policy: and ca:"}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &ConfigError{File: path, Line: extra.Line, Col: max(extra.Column, 1), Msg: "only one YAML document is allowed in a config file (what follows this '---' would be ignored); remove the separator and merge the settings into one mapping"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(path, data, err)
	}
	cfg := &Config{file: path}
	var errs []error
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &ConfigError{File: path, Line: root.Line, Col: root.Column, Msg: "the config must be a YAML mapping of keys such as listen, policy, ca"}
	}
	// Aliases that expand the file far beyond its written size are
	// refused before UnknownKeys and the checks below follow them.
	if p := yamlstrict.AliasExpansion(root, "gateway config"); p != nil {
		return nil, &ConfigError{File: path, Line: p.Line, Col: p.Col, Msg: p.Msg}
	}
	// Refused as in the policy: yaml.v3 would merge them, but every
	// position the config reports for a merged value would be the
	// anchor's.
	for _, p := range yamlstrict.MergeKeys(root, "gateway config") {
		errs = append(errs, &ConfigError{File: path, Line: p.Line, Col: p.Col, Msg: p.Msg})
	}
	for _, p := range yamlstrict.UnknownKeys(root, cfg) {
		errs = append(errs, &ConfigError{File: path, Line: p.Line, Col: p.Col, Msg: p.Msg})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := root.Decode(cfg); err != nil {
		for _, p := range yamlstrict.Explain(root, cfg, err) {
			errs = append(errs, &ConfigError{File: path, Line: p.Line, Col: p.Col, Msg: p.Msg})
		}
		return nil, errors.Join(errs...)
	}
	cfg.root = root
	pos := func(key ...string) (int, int) { return position(root, key...) }
	bad := func(msg string, key ...string) {
		l, c := pos(key...)
		errs = append(errs, &ConfigError{File: path, Line: l, Col: c, Msg: msg})
	}
	dir := filepath.Dir(path)
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if cfg.Policy == "" {
		bad("policy: is required (the policy file, e.g. policy.yaml)")
	}
	if cfg.CA.Cert == "" || cfg.CA.Key == "" {
		bad("ca.cert and ca.key are required (write them with credgate ca init --out DIR)", "ca")
	}
	switch {
	case cfg.TLS.SVID && (cfg.TLS.Cert != "" || cfg.TLS.Key != ""):
		bad("tls: set either svid: true (the gateway's X.509-SVID from the Workload API) or cert and key, not both", "tls", "svid")
	case cfg.TLS.SVID && cfg.Identity.MTLS.WorkloadAPI == nil:
		bad("tls.svid needs identity.mtls.workload_api (where the gateway gets its X.509-SVID), e.g. socket: unix:///run/spire/agent.sock", "tls", "svid")
	case cfg.TLSListen != "" && !cfg.TLS.SVID && (cfg.TLS.Cert == "" || cfg.TLS.Key == ""):
		bad("tls_listen needs tls.cert and tls.key (the gateway's own server certificate), or tls.svid: true", "tls_listen")
	}
	if cfg.TLSListen == "" && (cfg.TLS.Cert != "" || cfg.TLS.ClientCA != "" || cfg.TLS.SVID) {
		bad("tls: is set but tls_listen is not; set tls_listen or remove tls", "tls")
	}
	for _, e := range cfg.ProxyProtocol.check(cfg.TLSListen != "") {
		head, _, _ := strings.Cut(e.Error(), ": ")
		bad(e.Error(), splitKeyPath(head)...)
	}
	for _, l := range []struct{ key, val string }{{"listen", cfg.Listen}, {"tls_listen", cfg.TLSListen}, {"admin_listen", cfg.AdminListen}} {
		if l.val == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(l.val); err != nil || !validPort(port, true) {
			bad(fmt.Sprintf("%s: %q is not host:port (e.g. 127.0.0.1:3128 or :3128)", l.key, l.val), l.key)
		}
	}
	for _, f := range []*string{&cfg.Policy, &cfg.CA.Cert, &cfg.CA.Key, &cfg.TLS.Cert, &cfg.TLS.Key, &cfg.TLS.ClientCA, &cfg.Upstream.CABundle} {
		rel(f)
	}
	cfg.Identity.ResolvePaths(dir)
	if err := cfg.Identity.Validate(); err != nil {
		// Each problem names its key ("identity.jwt.issuers[0].audiences:
		// ..."); it is reported at that key.
		for _, e := range unjoin(err) {
			head, _, _ := strings.Cut(e.Error(), ": ")
			bad(e.Error(), splitKeyPath(head)...)
		}
	}
	if cfg.TLS.ClientCA != "" && (len(cfg.Identity.MTLS.Bundles) > 0 || cfg.Identity.MTLS.WorkloadAPI != nil) {
		bad("set either tls.client_ca (the listener verifies client certificates) or identity.mtls.bundles / identity.mtls.workload_api (identity verifies them, bundles rotated without restart), not both", "identity", "mtls")
	}
	if o := cfg.Audit.Output; o != "" && o != "stdout" && o != "stderr" {
		rel(&cfg.Audit.Output)
	}
	errs = append(errs, cfg.Audit.check(path, root)...)
	if rt := cfg.RunTokens; rt != nil {
		rel(&rt.KeyFile)
		for _, p := range rt.Check() {
			bad(p.Msg, "run_tokens", p.Key)
		}
		if cfg.Admin.TokenFile == "" && cfg.Admin.TokenEnv == "" {
			bad("run_tokens needs the admin API (tokens are asked for with the admin token): set admin.token_file or admin.token_env", "run_tokens")
		}
		for _, is := range cfg.Identity.JWT.Issuers {
			if is.Issuer == rt.WithDefaults().Issuer {
				bad(fmt.Sprintf("identity.jwt.issuers: %q is run_tokens.issuer, which the gateway trusts by itself; remove the issuer entry or choose another run_tokens.issuer", is.Issuer), "identity", "jwt", "issuers")
			}
		}
	}
	rel(&cfg.Audit.Checkpoint.KeyFile)
	rel(&cfg.Audit.FingerprintKeyFile)
	cfg.Audit.OTLP.OTLP.ResolvePaths(dir)
	switch strings.ToLower(cfg.Log.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		bad(fmt.Sprintf("log.level: unknown level %q (use debug, info, warn or error)", cfg.Log.Level), "log", "level")
	}
	if ttl := cfg.CA.LeafTTL.D(); ttl != 0 && (ttl < minLeafTTL || ttl > maxLeafTTL) {
		bad(fmt.Sprintf("ca.leaf_ttl: %s is outside %s to %s (397 days): clients refuse longer-lived server certificates (the CA/Browser Forum's limit is 398 days, Apple's 825), and a shorter one would be signed again at nearly every handshake; leave it out for 24h",
			ttl, minLeafTTL, maxLeafTTL), "ca", "leaf_ttl")
	}
	if cfg.CA.LeafCacheSize < 0 {
		bad("ca.leaf_cache_size must not be negative", "ca", "leaf_cache_size")
	}
	if cfg.Upstream.MaxIdleConnsPerHost < 0 {
		bad("upstream.max_idle_conns_per_host must not be negative", "upstream", "max_idle_conns_per_host")
	}
	if cfg.Upstream.MaxIdleConns < 0 {
		bad(fmt.Sprintf("upstream.max_idle_conns must not be negative (leave it out for %d)", DefaultMaxIdleConns), "upstream", "max_idle_conns")
	}
	if n := cfg.Upstream.MaxResponseHeaderBytes; n != 0 && (n < minResponseHeaderBytes || n > maxResponseHeaderBytes) {
		bad(fmt.Sprintf("upstream.max_response_header_bytes: %d is outside %d to %d (16 MiB); leave it out for %d (64 KiB)", n, minResponseHeaderBytes, maxResponseHeaderBytes, DefaultMaxResponseHeaderBytes), "upstream", "max_response_header_bytes")
	}
	switch cfg.Upstream.HTTP2 {
	case "", HTTP2Match, HTTP2Always, HTTP2Never:
	default:
		bad(fmt.Sprintf("upstream.http2: unknown value %q (use match, always or never)", cfg.Upstream.HTTP2), "upstream", "http2")
	}
	if cfg.Limits.MaxHeaderBytes < 0 {
		bad("limits.max_header_bytes must not be negative", "limits", "max_header_bytes")
	}
	for _, c := range []struct {
		key string
		v   *int
	}{{"max_connections", cfg.Limits.MaxConnections}, {"max_connections_per_source", cfg.Limits.MaxConnectionsPerSource}} {
		if c.v != nil && *c.v < 0 {
			bad("limits."+c.key+" must not be negative (a number of connections; 0 is off, leave it out for the default)", "limits", c.key)
		}
	}
	if n := cfg.Limits.BatchBufferBytes; n != nil && *n != 0 && *n < MinBatchBufferBytes {
		bad(fmt.Sprintf("limits.batch_buffer_bytes: %d is less than %d (2 MiB, one batch body of the largest size as sent and decoded); 0 is off, leave it out for %d (32 MiB)", *n, MinBatchBufferBytes, DefaultBatchBufferBytes), "limits", "batch_buffer_bytes")
	}
	if cfg.Limits.BodyMinRate < 0 {
		bad("limits.body_min_rate must not be negative (bytes per second; 0 is off)", "limits", "body_min_rate")
	}
	if ll := cfg.Limits.LongLived; ll.IdleTimeout > 0 {
		maxLife := ll.MaxLifetime
		if maxLife == 0 {
			maxLife = Duration(DefaultLongLivedMaxLifetime)
		}
		if ll.IdleTimeout > maxLife {
			bad(fmt.Sprintf("limits.long_lived.idle_timeout (%s) is longer than max_lifetime (%s) and would never apply; shorten it or raise max_lifetime", ll.IdleTimeout.D(), maxLife.D()), "limits", "long_lived", "idle_timeout")
		}
	}
	for _, d := range []struct {
		key []string
		v   Duration
	}{
		{[]string{"upstream", "response_idle_timeout"}, cfg.Upstream.ResponseIdleTimeout},
		{[]string{"limits", "body_idle_timeout"}, cfg.Limits.BodyIdleTimeout},
		{[]string{"limits", "write_idle_timeout"}, cfg.Limits.WriteIdleTimeout},
		{[]string{"limits", "long_lived", "idle_timeout"}, cfg.Limits.LongLived.IdleTimeout},
		{[]string{"limits", "long_lived", "max_lifetime"}, cfg.Limits.LongLived.MaxLifetime},
		{[]string{"limits", "in_flight_identity_grace"}, cfg.Limits.InFlightIdentityGrace},
	} {
		if d.v > 0 && d.v < Duration(100*time.Millisecond) {
			bad(fmt.Sprintf("%s: %s is too short to be meant (at least 100ms; they are usually seconds to hours)", strings.Join(d.key, "."), d.v.D()), d.key...)
		}
	}
	if maxTTL := cfg.Cache.MaxTTL; maxTTL > 0 && maxTTL < Duration(time.Second) {
		bad(fmt.Sprintf("cache.max_ttl: %s is too short to be meant (at least 1s; it is usually hours)", maxTTL.D()), "cache", "max_ttl")
	} else {
		if maxTTL == 0 {
			maxTTL = Duration(providers.DefaultCacheMaxTTL)
		}
		if cfg.Cache.DefaultTTL > maxTTL {
			bad(fmt.Sprintf("cache.default_ttl (%s) is longer than cache.max_ttl (%s), which caps it; shorten default_ttl or raise max_ttl", cfg.Cache.DefaultTTL.D(), maxTTL.D()), "cache", "default_ttl")
		}
	}
	if r := &cfg.Cache.Redis; r.Enabled() {
		for _, a := range r.Addrs {
			if host, port, err := net.SplitHostPort(a); err != nil || host == "" || !validPort(port, false) {
				bad(fmt.Sprintf("cache.redis.addrs: %q is not host:port (e.g. redis.internal:6379)", a), "cache", "redis", "addrs")
			}
		}
		if r.PasswordFile != "" && r.PasswordEnv != "" {
			bad("cache.redis: set password_file or password_env, not both", "cache", "redis")
		}
		if r.Namespace != "" && !rediscache.ValidNamespace(r.Namespace) {
			bad(fmt.Sprintf("cache.redis.namespace: %q: use 1 to 64 letters, digits or _.:-", r.Namespace), "cache", "redis", "namespace")
		}
		if r.DB < 0 {
			bad("cache.redis.db must not be negative", "cache", "redis", "db")
		}
		if len(r.EncryptionKeys) == 0 {
			bad("cache.redis.encryption_keys: at least one key is required (32 random bytes, base64, in a file or env: head -c32 /dev/urandom | base64)", "cache", "redis")
		}
		ids := map[string]bool{}
		for i, k := range r.EncryptionKeys {
			switch {
			case k.ID == "" || len(k.ID) > 64:
				bad(fmt.Sprintf("cache.redis.encryption_keys[%d]: id is required (1 to 64 characters)", i), "cache", "redis", "encryption_keys")
			case ids[k.ID]:
				bad(fmt.Sprintf("cache.redis.encryption_keys: id %q appears twice", k.ID), "cache", "redis", "encryption_keys")
			}
			ids[k.ID] = true
			if (k.File == "") == (k.Env == "") {
				bad(fmt.Sprintf("cache.redis.encryption_keys[%d]: set exactly one of file or env", i), "cache", "redis", "encryption_keys")
			}
			rel(&r.EncryptionKeys[i].File)
		}
		if (r.TLS.Cert == "") != (r.TLS.Key == "") {
			bad("cache.redis.tls: cert and key go together", "cache", "redis", "tls")
		}
		if !r.TLS.Enabled && r.TLS != (RedisTLS{}) {
			bad("cache.redis.tls: set enabled: true to use ca/cert/key/server_name (without it the connection, and the password, go in clear)", "cache", "redis", "tls")
		}
		for _, f := range []*string{&r.PasswordFile, &r.TLS.CA, &r.TLS.Cert, &r.TLS.Key} {
			rel(f)
		}
	} else if redisSettings(cfg.Cache.Redis) {
		// Without addrs every other setting would be ignored, silently:
		// the fleet would run without Redis (rate limits and kill
		// switches per replica).
		bad("cache.redis: addrs is required to use Redis (host:port of the server, sentinels or cluster nodes); without it the other cache.redis settings are ignored", "cache", "redis")
	}
	errs = append(errs, cfg.Admin.check(path, root, dir)...)
	for _, p := range cfg.Tracing.Check() {
		bad(p.Msg, append([]string{"tracing"}, p.Key...)...)
	}
	cfg.Tracing.OTLP.ResolvePaths(dir)
	cfg.resolve = map[string]netip.AddrPort{}
	// A key is read as a CONNECT target is (parseTarget), and kept in the
	// form the resolver looks destinations up by: a key no destination
	// can have would be a pin that never applies, and two spellings of
	// one destination two pins of which map order would pick one.
	keyOf := map[string]string{}
	for _, from := range slices.Sorted(maps.Keys(cfg.Resolve)) {
		to := cfg.Resolve[from]
		dest, err := parseTarget(from, 0)
		if err != nil {
			// err begins with the key, quoted.
			bad(fmt.Sprintf("resolve: key %v; write host:port as a CONNECT names it, e.g. \"api.example.com:443\"", err), "resolve", from)
			continue
		}
		ap, err := netip.ParseAddrPort(to)
		if err != nil || ap.Port() == 0 {
			bad(fmt.Sprintf("resolve: %q: value %q must be an IP address and port, e.g. \"127.0.0.1:9443\"", from, to), "resolve", from)
			continue
		}
		k := pinKey(dest.host, dest.port)
		if other, ok := keyOf[k]; ok {
			bad(fmt.Sprintf("resolve: keys %q and %q name the same destination %s; keep one", other, from, dest.hostPort()), "resolve", from)
			continue
		}
		keyOf[k] = from
		cfg.resolve[k] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg.ApplyDefaults()
	return cfg, nil
}

// ApplyDefaults fills every unset field with its default. LoadConfig calls
// it; code that builds a Config by hand calls it too.
func (c *Config) ApplyDefaults() {
	setS := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setD := func(p *Duration, v time.Duration) {
		if *p == 0 {
			*p = Duration(v)
		}
	}
	setI := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setS(&c.Listen, DefaultListen)
	setS(&c.AdminListen, DefaultAdminListen)
	setS(&c.Audit.Output, DefaultAuditOutput)
	setS(&c.Log.Level, "info")
	setD(&c.Upstream.DialTimeout, DefaultDialTimeout)
	setD(&c.Upstream.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout)
	setD(&c.Upstream.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	setD(&c.Upstream.ResponseIdleTimeout, DefaultResponseIdleTimeout)
	setD(&c.Upstream.IdleConnTimeout, DefaultIdleConnTimeout)
	setI(&c.Upstream.MaxIdleConnsPerHost, DefaultMaxIdleConnsPerHost)
	setI(&c.Upstream.MaxIdleConns, DefaultMaxIdleConns)
	if c.Upstream.MaxResponseHeaderBytes == 0 {
		c.Upstream.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	setS(&c.Upstream.HTTP2, HTTP2Match)
	setI(&c.Limits.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setD(&c.Limits.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setD(&c.Limits.IdleTimeout, DefaultIdleTimeout)
	setD(&c.Limits.BodyIdleTimeout, DefaultBodyIdleTimeout)
	setD(&c.Limits.WriteIdleTimeout, DefaultWriteIdleTimeout)
	setD(&c.Limits.LongLived.IdleTimeout, DefaultLongLivedIdleTimeout)
	setD(&c.Limits.LongLived.MaxLifetime, DefaultLongLivedMaxLifetime)
	setD(&c.Limits.InFlightIdentityGrace, DefaultInFlightIdentityGrace)
	if c.Limits.BatchBufferBytes == nil {
		n := DefaultBatchBufferBytes
		c.Limits.BatchBufferBytes = &n
	}
	setD(&c.ShutdownTimeout, DefaultShutdownTimeout)
	setD(&c.CA.ReloadInterval, DefaultReloadInterval)
	setD(&c.SessionTickets.Rotation, DefaultTicketRotation)
	setD(&c.TLS.ReloadInterval, DefaultReloadInterval)
	setD(&c.Admin.ResyncInterval, DefaultSwitchResync)
	setD(&c.Admin.TLS.ReloadInterval, DefaultReloadInterval)
	c.Admin.applyDefaults()
	if c.Tracing.Enabled {
		c.Tracing.ApplyDefaults()
	}
	if c.Cache.Redis.Enabled() {
		setS(&c.Cache.Redis.Namespace, DefaultRedisNamespace)
		setD(&c.Cache.Redis.Timeout, DefaultRedisTimeout)
		setD(&c.Cache.Redis.LockTTL, DefaultRedisLockTTL)
		setD(&c.Cache.Redis.ExpirySkew, DefaultRedisSkew)
	}
	if c.resolve == nil {
		c.resolve = map[string]netip.AddrPort{}
	}
}

// PolicyPath returns the policy file's path (relative paths in the config
// are already resolved against the config file's directory).
func (c *Config) PolicyPath() string { return c.Policy }

// File returns the path the config was loaded from, "" when built by hand.
func (c *Config) File() string { return c.file }

// pinKey is the key of the resolve map for a destination (a target's
// host and port): the resolver and the config agree on it.
func pinKey(host string, port int) string { return host + ":" + strconv.Itoa(port) }

func validPort(p string, zeroOK bool) bool {
	n, err := strconv.Atoi(p)
	if err != nil {
		return false
	}
	if n == 0 {
		return zeroOK
	}
	return n > 0 && n <= 65535
}

// unjoin is the errors errors.Join joined, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// splitKeyPath is the keys of a key path as keyPath writes it:
// "identity.mtls.bundles[0].file" is identity, mtls, bundles, 0, file.
func splitKeyPath(path string) []string {
	var keys []string
	for _, k := range strings.Split(path, ".") {
		for {
			i := strings.IndexByte(k, '[')
			if i < 0 || !strings.HasSuffix(k, "]") {
				break
			}
			j := strings.IndexByte(k[i:], ']') + i
			if k[:i] != "" {
				keys = append(keys, k[:i])
			}
			keys = append(keys, k[i+1:j])
			k = k[j+1:]
		}
		if k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// position finds the key path in a mapping node and returns the position
// of the last key found, or of the root. A number steps into a sequence,
// to the item's position.
func position(n *yaml.Node, keys ...string) (int, int) {
	line, col := n.Line, n.Column
	for _, k := range keys {
		if n.Kind == yaml.SequenceNode {
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(n.Content) {
				break
			}
			n = n.Content[i]
			line, col = n.Line, n.Column
			continue
		}
		if n.Kind != yaml.MappingNode {
			break
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				line, col = n.Content[i].Line, n.Content[i].Column
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			break
		}
	}
	return line, col
}

// yamlError turns a yaml.v3 syntax error ("yaml: line N: msg") into a
// ConfigError with the file name, worded by yamlstrict.DescribeSyntax
// (the position of a tab or of a byte that is not UTF-8, and the fix).
// (Decoding errors go through yamlstrict.Explain, which knows the key
// path and drops the value.)
func yamlError(path string, data []byte, err error) error {
	p := yamlstrict.DescribeSyntax(data, err).Problem()
	return &ConfigError{File: path, Line: p.Line, Col: p.Col, Msg: p.Msg}
}
