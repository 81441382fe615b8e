package gateway

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/audit/otlpsink"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/transform"
)

// event is one audit line. It names the credential, never its value, and
// records the path without its query string (a query may carry a secret
// the query injector put there, or one the client sent).
type event struct {
	Time     time.Time
	Workload string
	// Factors are the workload's verified factors, in order: the line
	// names their kinds, nothing else of them (held as they are, not as
	// a slice of kinds made for each line).
	Factors []identity.Factor
	// Presented lists the kinds of evidence the client presented, for a
	// request refused before (or at) identity, when Factors is empty:
	// "source", "client_certificate", "proxy_authorization:SCHEME".
	// Written only when set; never a value.
	Presented []string
	// Operator names who called the admin API, as verified: admin_token,
	// client_cert:SUBJECT, or both; written only when set; never a token.
	Operator string
	Source   string
	// Via is the address of the trusted load balancer whose PROXY header
	// named Source; written only when set.
	Via        string
	Method     string
	Scheme     string
	Host       string
	Port       int
	Path       string
	Rule       string
	Decision   string
	Code       string
	Credential string
	CacheHit   bool
	Status     int
	BytesIn    int64
	BytesOut   int64
	Duration   time.Duration
	Upstream   time.Duration
	// Switch names the kill switch ("rule:NAME") that refused the
	// request, or that an admin request changed; written only when set.
	Switch string
	// Closed says how a long-lived connection (a spliced tunnel, a
	// WebSocket) ended: ended, kill_switch, identity_expired, idle,
	// max_lifetime or shutdown; written only when set.
	Closed string
	// PolicyVersion is the hex SHA-256 of the policy file that decided
	// (the policy in force when the line is written, unless set).
	PolicyVersion string
	// CredentialFP fingerprints the injected credential (auditor.
	// fingerprint); written only when set; never the value.
	CredentialFP string
	// Placeholders are the placeholder substitutions and Tripwire the
	// placeholder that refused the request (placeholder.go); written only
	// when set; never a value.
	Placeholders []transform.Position
	Tripwire     *transform.MisuseError
	// Quarantined is the kill switch the tripwire set
	// (placeholders.quarantine), as its ID: "workload:NAME", or
	// "source:ADDRESS" for an anonymous caller; written only when set.
	Quarantined string
	// Scrubbed counts the secret values redacted from the response, and
	// Custodied the response values a custody block replaced by
	// placeholders; written only when not zero.
	Scrubbed  int64
	Custodied int
	// HTTP2Error is the class of what the HTTP/2 server refused before a
	// handler ran (code http2_refused): the name golang.org/x/net/http2
	// gives it in CountError; written only when set.
	HTTP2Error string
	// Range is "removed" when the gateway took Range (or If-Range) off
	// the request so that its response is whole and scrubbed whole (a
	// rule's ranges: whole); written only when set.
	Range string
	// Batch is the number of sub-requests of a batch the gateway judged
	// one by one (batch.go); written only when not zero.
	Batch int
	// GRPCStatus is the grpc-status a gRPC call's client got (grpcSent):
	// the gateway's own (a refusal, trailers ending a cut call) or the
	// upstream's, in its trailers or Trailers-Only answer; written only
	// when set, always 1 to 3 digits.
	GRPCStatus string
}

// DefaultAuditFlushInterval bounds how long an audit line waits in the
// buffer before it is written out.
const DefaultAuditFlushInterval = 100 * time.Millisecond

// codeAuditStalled refuses requests while the audit sink is stalled
// (audit.on_stall: fail_closed).
const codeAuditStalled = "audit_stalled"

// refuseAuditStalled answers 503 when the audit sink is stalled under
// audit.on_stall: fail_closed, and reports whether it did. The refusal is
// counted, not audited: its line could not be written either.
func (g *Gateway) refuseAuditStalled(w http.ResponseWriter, r *http.Request) bool {
	if !g.audit.stalled() {
		return false
	}
	g.metrics.refusals.WithLabelValues(codeAuditStalled).Inc()
	newRefusal(http.StatusServiceUnavailable, codeAuditStalled,
		"the gateway's audit log is not being written (its sink is stalled) and audit.on_stall is fail_closed; retry later", "").write(w, r)
	return true
}

// auditor encodes events and writes them through an audit.Writer
// (docs/audit-and-metrics.md). It sits on every request, so it encodes
// with a fixed field list into a pooled buffer instead of going through
// log/slog's generic handler (about five times cheaper); the Writer only
// copies the encoded object into its buffer, and numbers, chains, hashes,
// signs and writes the lines on its own goroutine.
type auditor struct {
	w  *audit.Writer
	fp *audit.Fingerprinter
	// fps caches credential_fp per credential (its key never changes).
	fps  credCache[string]
	pool sync.Pool
	// failClosed is audit.on_stall: fail_closed: requests are refused
	// while w is stalled.
	failClosed bool
	// store, once set, names the policy version of lines that do not.
	store *policy.Store
	// file is the rotating file output, closed after w.
	file *audit.RotatingFile
	// otlp is the OTLP log sink beside the output, closed after w.
	otlp *otlpsink.Sink
	// signer is a checkpoint signer from the registry (audit.LoadSigner),
	// released after w (whose Close signs the last checkpoint).
	signer audit.Signer
	// log says when Close gives up the lines an output would not take.
	log *slog.Logger
	// output names audit.output in that message.
	output string
	// lost is Close's errOutputStuck, when it gave lines up: Run returns
	// it, so that the process exits non-zero.
	lost error
}

// newAuditor builds the audit writer the config describes, writing to out
// instead of audit.output when out is set.
func newAuditor(ctx context.Context, cfg Audit, out io.Writer, log *slog.Logger) (*auditor, error) {
	a := &auditor{pool: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}, log: log, output: cfg.Output}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case out != nil:
		a.output = auditOutputGiven
	case a.output == "":
		a.output = "stdout"
	}
	if out == nil {
		switch cfg.Output {
		case "stdout", "":
			out = os.Stdout
		case "stderr":
			out = os.Stderr
		default:
			if err := checkAuditOutput(cfg.Output, cfg.Rotate.MaxBytes != 0 || cfg.Rotate.Every != 0); err != nil {
				return nil, err
			}
			f, err := audit.OpenFile(cfg.Output, audit.FileOptions{MaxBytes: cfg.Rotate.MaxBytes, Every: cfg.Rotate.Every.D(), Log: a.log})
			if err != nil {
				return nil, fmt.Errorf("audit.output: %w", err)
			}
			out, a.file = f, f
		}
	}
	stall, err := audit.ParseStallPolicy(cfg.OnStall)
	if err != nil {
		a.closeFile()
		return nil, fmt.Errorf("audit.on_stall: %w", err)
	}
	if cfg.OTLP.Enabled() {
		if a.otlp, err = otlpsink.New(ctx, cfg.OTLP, log); err != nil {
			a.closeFile()
			return nil, err
		}
		out = otlpsink.Tee(out, a.otlp)
	}
	opts := audit.Options{
		Replica:            audit.DefaultReplica(cfg.Replica),
		Unchained:          !cfg.Chained(),
		CheckpointLines:    cfg.Checkpoint.Lines,
		CheckpointInterval: cfg.Checkpoint.Every.D(),
		FlushInterval:      DefaultAuditFlushInterval,
		BufferBytes:        cfg.BufferBytes,
		OnStall:            stall,
		StallTimeout:       cfg.StallTimeout.D(),
		Log:                log,
	}
	if cfg.Checkpoint.KeyFile != "" {
		if opts.Signer, err = checkpointKey(cfg.Checkpoint.KeyFile); err != nil {
			a.closeFile()
			return nil, err
		}
	}
	if name, node := cfg.Checkpoint.signer(); name != "" {
		if opts.Signer, err = audit.LoadSigner(ctx, name, node); err != nil {
			a.closeFile()
			return nil, fmt.Errorf("audit.checkpoint.signer: %w (the gateway reads the key's public half at start, so that checkpoints can be signed)", err)
		}
		a.signer = opts.Signer
	}
	var fpKey []byte
	if cfg.FingerprintKeyFile != "" {
		if fpKey, err = fingerprintKey(cfg.FingerprintKeyFile); err != nil {
			a.closeFile()
			return nil, err
		}
	}
	a.fp = audit.NewFingerprinter(fpKey)
	a.failClosed = stall == audit.FailClosed
	a.w = audit.NewWriter(out, opts)
	attrs := []any{slog.String("replica", a.w.Replica()), slog.Bool("chained", !opts.Unchained), slog.String("on_stall", stall.String())}
	if opts.Signer != nil {
		attrs = append(attrs, slog.String("checkpoint_key_id", audit.KeyID(opts.Signer.Public())),
			slog.String("checkpoint_public_key", string(audit.MarshalPublicKey(opts.Signer.Public()))))
	}
	log.Info("audit log", attrs...)
	return a, nil
}

// readKeyFile reads a base64 key of at least 16 bytes.
func readKeyFile(path string) ([]byte, error) {
	data, err := cfgfile.ReadSecret(path)
	if err != nil {
		return nil, err
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(k) < 16 {
		return nil, fmt.Errorf("%s: want at least 16 random bytes in base64 (head -c32 /dev/urandom | base64)", path)
	}
	return k, nil
}

// auditOutputGiven names, in logs, the output given to New
// (Options.Audit) in place of audit.output.
const auditOutputGiven = "Options.Audit"

// otlpShutdownGrace bounds how long Close waits for the OTLP receiver.
const otlpShutdownGrace = 5 * time.Second

// outputCloseGrace bounds how long Close waits for audit.output to take
// the lines still buffered. An output that takes no write (a stdout pipe
// no one reads, a hung network file system) kept Run from returning
// until the process was killed, without a word; now the lines it would
// not take are given up after this long, and the log says so.
const outputCloseGrace = 10 * time.Second

// errOutputStuck is Close's error when audit.output took no write for
// outputCloseGrace: Run returns it (wrapped with how many lines and
// where), and credgate serve exits non-zero, since the audit trail lacks
// those lines.
var errOutputStuck = fmt.Errorf("audit output took no write for %s at shutdown; the lines still buffered were not written", outputCloseGrace)

// closeFile releases the outputs opened before a later setting failed.
func (a *auditor) closeFile() {
	if a.file != nil {
		_ = a.file.Close()
	}
	if a.otlp != nil {
		_ = a.otlp.Close()
	}
}

// Close writes what is buffered (and the final checkpoint) and closes the
// file output.
func (a *auditor) Close() error {
	if a.otlp != nil {
		// A receiver that is down gets this long to take the last lines;
		// then they stay in audit.output only (counted and logged).
		t := time.AfterFunc(otlpShutdownGrace, a.otlp.Abandon)
		defer t.Stop()
	}
	closed := make(chan error, 1)
	go func() {
		err := a.w.Close()
		if a.file != nil {
			// After w: its rotation lock is held through a write.
			if cerr := a.file.Close(); err == nil {
				err = cerr
			}
		}
		closed <- err
	}()
	grace := time.NewTimer(outputCloseGrace)
	var err error
	select {
	case err = <-closed:
		grace.Stop()
	case <-grace.C:
		// The writer's goroutine stays blocked in the output's Write;
		// the process is ending.
		lost := a.w.Pending()
		err = fmt.Errorf("%w: %d lines not written to %s", errOutputStuck, lost, a.output)
		a.lost = err
		a.log.Error("audit output took no write at shutdown: the lines still buffered are given up; check what reads audit.output (a stdout pipe, a network file system)",
			slog.String("output", a.output), slog.Duration("waited", outputCloseGrace),
			slog.Uint64("lines_not_written", lost), slog.Uint64("lines_written", a.w.Written()))
	}
	if a.otlp != nil {
		if cerr := a.otlp.Close(); err == nil {
			err = cerr
		}
	}
	if a.signer != nil {
		if cerr := audit.CloseSigner(a.signer); err == nil {
			err = cerr
		}
	}
	return err
}

// ReopenAuditFile opens audit.output again, when it is a file: what an
// external log rotation's postrotate asks for with SIGHUP (credgate serve
// calls it then). The gateway also reopens the file by itself at its next
// write when it finds it removed, renamed or truncated; this makes it
// immediate. It does nothing when audit.output is stdout or stderr.
func (g *Gateway) ReopenAuditFile() error {
	if g.audit == nil || g.audit.file == nil {
		return nil
	}
	if err := g.audit.file.Reopen(); err != nil {
		return fmt.Errorf("audit.output: reopen: %w", err)
	}
	return nil
}

// readyzAudit is the audit part of /readyz's detail: each output's
// state, and the lines dropped or held up.
type readyzAudit struct {
	Output   readyzOutput  `json:"output"`
	Rotation *readyzOutput `json:"rotation,omitempty"`
	OTLP     *readyzOutput `json:"otlp,omitempty"`
	// Stalled: the buffer is full or a write has taken longer than
	// audit.stall_timeout.
	Stalled bool `json:"stalled"`
	// Dropped counts the lines audit.on_stall: drop discarded;
	// DroppedUnrecorded is true while some of them are recorded by no
	// dropped line in the output yet.
	Dropped           uint64 `json:"dropped"`
	DroppedUnrecorded bool   `json:"dropped_unrecorded,omitempty"`
}

// readyzOutput is one audit output's state.
type readyzOutput struct {
	// State is ok or failing.
	State    string `json:"state"`
	Since    string `json:"since,omitempty"`
	Failures uint64 `json:"failures"`
	// Error is the last failure's text (an OS or transport error; an
	// OTLP one with the header values redacted).
	Error string `json:"error,omitempty"`
}

func outputView(st audit.OutputStatus) readyzOutput {
	v := readyzOutput{State: "ok", Failures: st.Failures, Error: st.LastError}
	if st.Failing {
		v.State, v.Since = "failing", st.Since.UTC().Format(time.RFC3339)
	}
	return v
}

// readyz returns the audit outputs' state for /readyz.
func (a *auditor) readyz() *readyzAudit {
	r := &readyzAudit{Output: outputView(a.w.Status()), Stalled: a.w.Stalled(), Dropped: a.w.Dropped(), DroppedUnrecorded: a.w.Dropping()}
	if a.file != nil {
		v := outputView(a.file.Status())
		r.Rotation = &v
	}
	if a.otlp != nil {
		v := outputView(a.otlp.Status())
		r.OTLP = &v
	}
	return r
}

// stalled reports whether requests are to be refused because the audit
// sink is stalled (audit.on_stall: fail_closed).
func (a *auditor) stalled() bool { return a.failClosed && a.w.Stalled() }

// write emits ev as one line.
func (a *auditor) write(ev *event) {
	if ev.PolicyVersion == "" && a.store != nil {
		if p := a.store.Current(); p != nil {
			ev.PolicyVersion = p.Stats().Hash
		}
	}
	bp := a.pool.Get().(*[]byte)
	b := appendEvent((*bp)[:0], ev)
	a.w.Write(b)
	if cap(b) <= 4<<10 {
		*bp = b
		a.pool.Put(bp)
	}
}

// credentialFP returns the credential_fp of cred, computed once per
// credential (fingerprint): a credential is never modified, and a
// refreshed one is another credential.
func (a *auditor) credentialFP(cred *providers.Credential) string {
	return a.credentialFPKey(keyOf(cred), cred)
}

// credentialFPKey is credentialFP with cred's key, keyOf(cred), already
// made.
func (a *auditor) credentialFPKey(k credKey, cred *providers.Credential) string {
	if cred == nil || len(cred.Fields) == 0 {
		return ""
	}
	return a.fps.getKey(k, cred, a.fingerprint)
}

// fingerprint returns the credential_fp of cred: its fields, by name
// order, under the fingerprint key; never a value.
func (a *auditor) fingerprint(cred *providers.Credential) string {
	if cred == nil || len(cred.Fields) == 0 {
		return ""
	}
	if len(cred.Fields) == 1 {
		for name, v := range cred.Fields {
			return a.fp.Sum(name, v.Reveal())
		}
	}
	names := make([]string, 0, len(cred.Fields))
	for n := range cred.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, 2*len(names))
	for _, n := range names {
		parts = append(parts, n, cred.Fields[n].Reveal())
	}
	return a.fp.Sum(parts...)
}

// appendEvent encodes ev as a JSON object, without a newline: the Writer
// adds the chain fields and the newline.
func appendEvent(b []byte, ev *event) []byte {
	b = append(b, `{"time":"`...)
	b = audit.AppendTime(b, ev.Time)
	b = append(b, `","workload":`...)
	b = appendString(b, ev.Workload)
	b = append(b, `,"factors":[`...)
	for i := range ev.Factors {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, ev.Factors[i].Kind)
	}
	b = append(b, ']')
	if len(ev.Presented) > 0 {
		b = append(b, `,"presented":[`...)
		for i, f := range ev.Presented {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f)
		}
		b = append(b, ']')
	}
	if ev.Operator != "" {
		b = append(b, `,"operator":`...)
		b = appendString(b, ev.Operator)
	}
	b = append(b, `,"source":`...)
	b = appendString(b, ev.Source)
	if ev.Via != "" {
		b = append(b, `,"via":`...)
		b = appendString(b, ev.Via)
	}
	b = append(b, `,"method":`...)
	b = appendString(b, ev.Method)
	b = append(b, `,"scheme":`...)
	b = appendString(b, ev.Scheme)
	b = append(b, `,"host":`...)
	b = appendString(b, ev.Host)
	b = append(b, `,"port":`...)
	b = strconv.AppendInt(b, int64(ev.Port), 10)
	b = append(b, `,"path":`...)
	b = appendString(b, ev.Path)
	b = append(b, `,"rule":`...)
	b = appendString(b, ev.Rule)
	b = append(b, `,"decision":`...)
	b = appendString(b, ev.Decision)
	b = append(b, `,"code":`...)
	b = appendString(b, ev.Code)
	b = append(b, `,"credential":`...)
	b = appendString(b, ev.Credential)
	b = append(b, `,"cache_hit":`...)
	b = strconv.AppendBool(b, ev.CacheHit)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(ev.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, ev.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, ev.BytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMS(b, ev.Duration)
	b = append(b, `,"upstream_ms":`...)
	b = appendMS(b, ev.Upstream)
	if ev.Switch != "" {
		b = append(b, `,"switch":`...)
		b = appendString(b, ev.Switch)
	}
	if ev.Closed != "" {
		b = append(b, `,"closed":`...)
		b = appendString(b, ev.Closed)
	}
	if ev.Scrubbed > 0 {
		b = append(b, `,"scrubbed":`...)
		b = strconv.AppendInt(b, ev.Scrubbed, 10)
	}
	if ev.Custodied > 0 {
		b = append(b, `,"custodied":`...)
		b = strconv.AppendInt(b, int64(ev.Custodied), 10)
	}
	if ev.HTTP2Error != "" {
		b = append(b, `,"http2_error":`...)
		b = appendString(b, ev.HTTP2Error)
	}
	// Fields added later go here, before the receipt fields.
	b = appendPlaceholderFields(b, ev)
	if ev.Range != "" {
		b = append(b, `,"range":`...)
		b = appendString(b, ev.Range)
	}
	if ev.Batch > 0 {
		b = append(b, `,"batch":`...)
		b = strconv.AppendInt(b, int64(ev.Batch), 10)
	}
	if ev.GRPCStatus != "" {
		b = append(b, `,"grpc_status":`...)
		b = append(b, ev.GRPCStatus...) // digits only (grpcSent)
	}
	b = append(b, `,"policy_version":`...)
	b = appendString(b, ev.PolicyVersion)
	if ev.CredentialFP != "" {
		b = append(b, `,"credential_fp":`...)
		b = appendString(b, ev.CredentialFP)
	}
	return append(b, '}')
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// appendMS appends ms(d) as strconv.AppendFloat(b, ms(d), 'f', -1, 64)
// does, from the whole microseconds without the float's shortest-digits
// search. Below 10^12 µs (11.5 days) the float is within a fraction of
// its ulp (at most 2^-23 ms there) of the decimal µs/1000, and no other
// decimal of three fraction digits or fewer lies that close, so the
// shortest digits are that decimal without its trailing zeros; longer or
// negative durations are left to AppendFloat (TestAppendMS).
func appendMS(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	if us < 0 || us >= 1e12 {
		return strconv.AppendFloat(b, ms(d), 'f', -1, 64)
	}
	b = strconv.AppendInt(b, us/1000, 10)
	f := us % 1000
	if f == 0 {
		return b
	}
	b = append(b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
	for b[len(b)-1] == '0' {
		b = b[:len(b)-1]
	}
	return b
}

// appendString appends s as a JSON string (audit.AppendString).
func appendString(b []byte, s string) []byte { return audit.AppendString(b, s) }

// wantPresented reports whether an audit line names the evidence the
// client presented: when no factor verified (a request refused before
// identity), and when identity failed (identity_invalid, factor_conflict)
// — the source factor verifies on every connection, so the factors alone
// cannot tell a forged token from a bad certificate.
func wantPresented(w identity.Workload, code string) bool {
	return len(w.Factors) == 0 || code == codeIdentityInvalid || code == codeFactorConflict
}

// presented names the kinds of evidence a client presented, without any
// value, for the audit line of a request refused before its identity was
// established.
func presented(ev identity.Evidence) []string {
	var out []string
	if ev.Source.IsValid() {
		out = append(out, "source")
	}
	if len(ev.PeerCertificates) > 0 || len(ev.VerifiedChains) > 0 {
		out = append(out, "client_certificate")
	}
	if pa := ev.ProxyAuthorization; pa != "" {
		scheme, _, _ := strings.Cut(pa, " ")
		if len(scheme) > 16 || !httpguts.ValidHeaderFieldName(scheme) {
			scheme = "other"
		}
		out = append(out, "proxy_authorization:"+strings.ToLower(scheme))
	}
	return out
}

// auditWriter exports the audit writer's counters, and those of the
// file output's rotation and the OTLP export (zero when there is none).
func (m *metrics) auditWriter(w *audit.Writer, file *audit.RotatingFile, otlp *otlpsink.Sink) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "credgate_audit_rotate_errors_total",
			Help: "Failed rotations of the audit file (audit.rotate); the gateway goes on appending to the current file.",
		}, func() float64 {
			if file == nil {
				return 0
			}
			return float64(file.Status().Failures)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "credgate_audit_otlp_export_errors_total",
			Help: "Failed exports of audit lines to audit.otlp (each is retried), and exports the receiver took in part (the records it rejected are not sent again).",
		}, func() float64 {
			if otlp == nil {
				return 0
			}
			return float64(otlp.Status().Failures + otlp.Rejected())
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "credgate_audit_lines_total",
			Help: "Audit lines written to the sink (checkpoints included).",
		}, func() float64 { return float64(w.Written()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "credgate_audit_dropped_total",
			Help: "Audit lines discarded because the sink stalled and audit.on_stall is drop.",
		}, func() float64 { return float64(w.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "credgate_audit_write_errors_total",
			Help: "Failed writes to the audit sink (each is retried).",
		}, func() float64 { return float64(w.Errors()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "credgate_audit_stalled",
			Help: "1 while the audit sink is stalled (its buffer full, or a write taking longer than audit.stall_timeout).",
		}, func() float64 {
			if w.Stalled() {
				return 1
			}
			return 0
		}),
	)
	m.reg.MustRegister(reopensCollector{file})
}

// reopensDesc is credgate_audit_reopens_total.
var reopensDesc = prometheus.NewDesc("credgate_audit_reopens_total",
	"Times the audit file was opened again, by reason: removed, replaced or truncated by another process (an external logrotate, an operator), or signal (SIGHUP); the chain continues in the file at the path.",
	[]string{"reason"}, nil)

// reopensCollector exports the audit file's reopenings, one series per
// reason (zero when the output is not a file).
type reopensCollector struct{ file *audit.RotatingFile }

func (reopensCollector) Describe(ch chan<- *prometheus.Desc) { ch <- reopensDesc }

func (c reopensCollector) Collect(ch chan<- prometheus.Metric) {
	for _, reason := range audit.ReopenReasons() {
		var n uint64
		if c.file != nil {
			n = c.file.Reopens(reason)
		}
		ch <- prometheus.MustNewConstMetric(reopensDesc, prometheus.CounterValue, float64(n), reason.String())
	}
}
