package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
	"github.com/go-logr/stdr"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"

	"github.com/credgate/credgate/gateway"
)

func newServeCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve -c FILE",
		Short: "Run the gateway",
		Long: `Run the gateway with the config FILE until SIGINT or SIGTERM, then drain
in-flight requests for up to shutdown_timeout; a second SIGINT or SIGTERM
ends the drain at once (what is open is closed with its audit line, the
audit log still ends with its final checkpoint). SIGHUP reopens the audit
file (after an external log rotation), reloads the policy (a bad policy is
rejected and the last good one stays in force) and logs each other config
setting that changed and needs a restart to apply. The exit status is 1
when audit lines were given up at shutdown (an audit output that took no
write).
Logs are JSON lines on stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("serve: -c FILE is required")
			}
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			logger, err := newLogger(cmd.ErrOrStderr(), cfg.Log.Level)
			if err != nil {
				return fmt.Errorf("%s: log.level: %w", configPath, err)
			}
			// go-redis logs through a process-wide logger (connection
			// pool and pub/sub reconnect messages): make them debug
			// records of the JSON log. Availability changes are logged
			// by the gateway itself at warn/info.
			redis.SetLogger(redisLog{logger})
			setMemoryLimit(cmd.Context(), logger, memlimit.FromCgroup, memLimitRefresh)
			if f := setGCFloor(logger); f != nil {
				defer f.Stop()
			}
			return serve(cmd.Context(), cfg, gateway.Options{Logger: logger}, nil)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "gateway config file (YAML)")
	return cmd
}

// serve runs a gateway until ctx is done or SIGINT/SIGTERM arrives, then
// waits for it to drain. SIGHUP reopens the audit file and reloads the
// policy. When ready is non-nil
// it is called once the listeners are up.
func serve(ctx context.Context, cfg *gateway.Config, opts gateway.Options, ready func(*gateway.Gateway)) error {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first SIGINT/SIGTERM starts the drain; a second ends it at once
	// (Gateway.EndDrain: what is open is cut with its audit lines, and the
	// audit log still ends with its final checkpoint, so that an operator's
	// second ^C, or a supervisor that signals twice, loses no audit line);
	// after that the default action returns, and a third kills a gateway
	// stuck in its close (an audit sink that does not take the last lines).
	term := make(chan os.Signal, 2)
	signal.Notify(term, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(term)
	built := make(chan *gateway.Gateway, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-term:
		case <-done:
			return
		}
		cancel()
		var gw *gateway.Gateway
		select {
		case gw = <-built:
		case <-term:
			// A second signal while the gateway is still being built
			// (New returns on the cancelled context).
			signal.Stop(term)
			return
		case <-done:
			return
		}
		select {
		case <-term:
		case <-done:
			return
		}
		logger.Warn("second signal: ending the drain now; a third kills the process")
		gw.EndDrain()
		signal.Stop(term)
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	defer catchSIGPIPE()()

	// Routed before New: the OpenTelemetry exporters New builds log
	// errors in their environment settings (OTEL_EXPORTER_OTLP_HEADERS,
	// whose values are collector keys) as they are built.
	defer routeLibraryLog(gateway.LibraryLogTo(opts.Logger, slog.LevelWarn))()
	gw, err := gateway.New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	built <- gw
	log.SetOutput(gw.LibraryLog(slog.LevelWarn))
	errc := make(chan error, 1)
	go func() { errc <- gw.Run(ctx) }()

	select {
	case <-gw.Ready():
	case err := <-errc:
		return err
	}
	attrs := []any{slog.String("proxy", gw.ProxyAddr().String()), slog.String("admin", gw.AdminAddr().String())}
	if a := gw.TLSProxyAddr(); a != nil {
		attrs = append(attrs, slog.String("tls_proxy", a.String()))
	}
	logger.Info("credgate serving", attrs...)
	if ready != nil {
		ready(gw)
	}
	for {
		select {
		case <-hup:
			// A log rotation's postrotate sends SIGHUP: the audit file
			// is opened again first.
			if err := gw.ReopenAuditFile(); err != nil {
				logger.Error("audit file not reopened on SIGHUP; the gateway goes on writing to the file it has open and reopens it at its next write if it was removed, renamed or truncated", slog.Any("error", err))
			}
			reportConfigChanges(logger, gw, cfg)
			if err := gw.ReloadPolicy(ctx); err != nil {
				// The gateway keeps the last good policy; it has logged
				// and counted the failure.
				logger.Warn("policy reload on SIGHUP rejected", slog.Any("error", err))
			} else {
				logger.Info("policy reloaded on SIGHUP")
			}
		case err := <-errc:
			if err != nil {
				return err
			}
			logger.Info("credgate stopped")
			return nil
		}
	}
}

// routeLibraryLog points Go's log package, to which net/http's Transport
// and OpenTelemetry's global error handler write, at w (a
// gateway.LibraryLog: the JSON log, as warn records, with every quoted
// string — what a peer sent — elided, every held credential scrubbed and
// lines of one kind rate-limited), and OpenTelemetry's internal logger
// (otel.SetLogger: what the SDK and the exporters log themselves, such as
// an OTEL_EXPORTER_OTLP_HEADERS value they cannot parse) at Go's log
// package through otelLog; it returns the function that restores the previous output and
// OpenTelemetry's default logger. Without it those lines were plain text
// on stderr: one of them quoting up to 4 KiB an upstream sent after its
// response (the injected credential, when it echoed the request), another
// a collector key. Both are process-wide settings of the libraries, set
// once by the serve path (credgate serve and demo) and restored when it
// returns.
func routeLibraryLog(w io.Writer) (restore func()) {
	out, flags, prefix := log.Writer(), log.Flags(), log.Prefix()
	log.SetOutput(w)
	log.SetFlags(0)
	log.SetPrefix("")
	otel.SetLogger(logr.New(otelLog{}))
	return func() {
		otel.SetLogger(otelDefaultLogger())
		log.SetOutput(out)
		log.SetFlags(flags)
		log.SetPrefix(prefix)
	}
}

// otelDefaultLogger is OpenTelemetry's own default internal logger
// (go.opentelemetry.io/otel/internal/global): its API offers no way to
// read the logger in force, so restoring means setting this one again.
func otelDefaultLogger() logr.Logger {
	return stdr.New(log.New(os.Stderr, "", log.LstdFlags|log.Lshortfile))
}

// otelLog is OpenTelemetry's internal logger while the serve path runs:
// each record is one line to Go's log package, "otel: NAME: MESSAGE:
// ERROR key="value"...": the message and keys are literals of the
// library's code; the error's text is kept as libraries write it (what it
// quotes is elided, as for every library line); each value is Go-quoted,
// so that LibraryLog elides it whole — OpenTelemetry logs as values what
// it was given (a header value from OTEL_EXPORTER_OTLP_HEADERS, which is
// a collector key, a URL). Errors and warnings (V(1)) are logged, as
// OpenTelemetry's own verbosity 1 would; its info and debug records are not.
type otelLog struct {
	name   string
	values []any
}

var _ logr.LogSink = otelLog{}

func (otelLog) Init(logr.RuntimeInfo) {}

// Enabled: errors (V(0)) and OpenTelemetry's warnings (V(1)).
func (otelLog) Enabled(level int) bool { return level <= 1 }

func (l otelLog) Info(_ int, msg string, kv ...any) { log.Print(l.line(msg, nil, kv)) }

func (l otelLog) Error(err error, msg string, kv ...any) { log.Print(l.line(msg, err, kv)) }

func (l otelLog) WithValues(kv ...any) logr.LogSink {
	l.values = append(l.values[:len(l.values):len(l.values)], kv...)
	return l
}

func (l otelLog) WithName(name string) logr.LogSink {
	if l.name != "" {
		name = l.name + "/" + name
	}
	l.name = name
	return l
}

func (l otelLog) line(msg string, err error, kv []any) string {
	var b strings.Builder
	b.WriteString("otel: ")
	if l.name != "" {
		b.WriteString(l.name + ": ")
	}
	b.WriteString(msg)
	if err != nil {
		b.WriteString(": " + err.Error())
	}
	for _, kvs := range [][]any{l.values, kv} {
		for i := 0; i < len(kvs); i += 2 {
			var v any = "(missing)"
			if i+1 < len(kvs) {
				v = kvs[i+1]
			}
			fmt.Fprintf(&b, " %v=%q", kvs[i], fmt.Sprint(v))
		}
	}
	return b.String()
}

// newLogger returns a JSON logger on w at the named level ("" = info).
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if level != "" {
		if err := l.UnmarshalText([]byte(strings.ToLower(level))); err != nil {
			return nil, fmt.Errorf("unknown level %q (use debug, info, warn or error)", level)
		}
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// redisLog turns go-redis's log lines into debug records.
type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// reportConfigChanges re-reads the gateway config on SIGHUP: a running
// gateway reloads its policy (and the CA and TLS files on their
// reload_interval) and applies upstream.ca_bundle; the rest of the config
// is read only at start, so each other changed setting is named by its
// key as needing a restart, in the log and on the admin listener
// (Gateway.ReloadConfig).
func reportConfigChanges(logger *slog.Logger, gw *gateway.Gateway, running *gateway.Config) {
	if running.File() == "" {
		return
	}
	next, err := loadConfig(running.File())
	if err != nil {
		logger.Warn("SIGHUP: the gateway config has errors; the running config stays in force (the policy is still reloaded)",
			slog.String("config", running.File()), slog.String("error", oneLine(err.Error())))
		gw.ConfigReloadFailed(err)
		return
	}
	_, _ = gw.ReloadConfig(next) // it logs what it did not apply
}

// catchSIGPIPE makes a write to a stdout or stderr pipe whose reader is
// gone (audit.output: stdout, and the log shipper reading it exited) fail
// with EPIPE instead of killing the process with SIGPIPE, which Go does
// for descriptors 1 and 2 when nothing is notified of it. Killed, the
// gateway lost the audit lines it held, and the final checkpoint, without
// a word; now the audit writer retries the write (counted in
// credgate_audit_write_errors_total, logged), its buffer fills and
// audit.on_stall decides, and shutdown logs what it gives up. It returns
// the function that stops catching.
func catchSIGPIPE() (stop func()) {
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	return func() { signal.Stop(pipe) }
}
