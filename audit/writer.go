package audit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credgate/credgate/internal/episode"
	"github.com/credgate/credgate/internal/mono"
)

// StallPolicy says what a Write does when the Writer's buffer is full
// because the sink is not keeping up (docs/audit-and-metrics.md).
type StallPolicy int

const (
	// Block makes Write wait until the flusher has taken the buffer: no
	// line is lost, requests wait for the sink.
	Block StallPolicy = iota
	// Drop discards the line and counts it (Dropped); the chain records
	// how many were dropped in a "dropped" line, so a gap is visible.
	Drop
	// FailClosed blocks like Block, and Stalled reports true, so that the
	// gateway refuses new requests (503) until the sink moves again.
	FailClosed
)

// ParseStallPolicy parses the audit.on_stall setting.
func ParseStallPolicy(s string) (StallPolicy, error) {
	switch s {
	case "", "block":
		return Block, nil
	case "drop":
		return Drop, nil
	case "fail_closed":
		return FailClosed, nil
	}
	return Block, fmt.Errorf("unknown stall policy %q (use block, drop or fail_closed)", s)
}

func (p StallPolicy) String() string {
	switch p {
	case Drop:
		return "drop"
	case FailClosed:
		return "fail_closed"
	}
	return "block"
}

// Defaults of Options.
const (
	DefaultFlushInterval      = 100 * time.Millisecond
	DefaultCheckpointLines    = 1000
	DefaultCheckpointInterval = 10 * time.Second
	DefaultBufferBytes        = 4 << 20
	DefaultStallTimeout       = time.Second
	// kickBytes wakes the flusher before its tick when this much waits.
	kickBytes = 64 << 10
)

// Options configure a Writer. The zero value of each field is its default.
type Options struct {
	// Replica is the chain's id as written in every line's "replica";
	// DefaultReplica builds the usual one.
	Replica string
	// Unchained writes the objects as they are, without seq, replica,
	// prev or checkpoints (the audit.chain: false setting).
	Unchained bool
	// Signer, when set, signs a checkpoint every CheckpointLines lines or
	// CheckpointInterval, whichever comes first, and on Close.
	Signer             Signer
	CheckpointLines    int
	CheckpointInterval time.Duration
	// FlushInterval bounds how long a line waits before it is written.
	FlushInterval time.Duration
	// BufferBytes bounds the lines waiting for the sink (twice this while
	// the flusher writes one buffer and the next one fills).
	BufferBytes int
	// OnStall is what Write does when the buffer is full.
	OnStall StallPolicy
	// StallTimeout: a sink write taking longer counts as a stall
	// (Stalled), before the buffer fills.
	StallTimeout time.Duration
	// Log receives sink and signing errors; nil discards them.
	Log *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// DefaultReplica returns base (the host name when empty) followed by "-"
// and 8 random hex digits: a new id, so a new chain, for every process.
func DefaultReplica(base string) string {
	if base == "" {
		base, _ = os.Hostname()
		if base == "" {
			base = "credgate"
		}
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	return base + "-" + hex.EncodeToString(r[:])
}

// Writer writes JSON objects as audit lines to a sink. Write only copies
// the object into a bounded buffer; a flusher goroutine numbers, chains,
// hashes and writes the lines and signs the checkpoints, so neither the
// hash chain's serial work nor the signing key is on the request path.
// Lines never interleave and a sink sees only whole lines. Safe for
// concurrent use.
type Writer struct {
	opts    Options
	sink    io.Writer
	replica []byte // JSON string
	now     func() time.Time

	mu     sync.Mutex
	space  *sync.Cond // signalled when the flusher takes the buffer
	pend   []byte
	ends   []int
	closed bool
	// droppedSince counts lines dropped since the last flush.
	droppedSince uint64

	full atomic.Bool
	// writing is when the current sink write began, as 1 + nanoseconds
	// since base on the monotonic clock; 0 when none. A step of the wall
	// clock neither makes a write look stalled nor hides a stalled one
	// (which, with fail_closed, would let requests through unaudited).
	writing atomic.Int64
	base    mono.Base
	dropped atomic.Uint64
	written atomic.Uint64
	// unwritten counts the lines made (chained, numbered) that the sink
	// has not taken yet.
	unwritten atomic.Int64
	errs      atomic.Uint64
	// health is the sink's failure episodes: logged when one starts and
	// ends, not at every retry.
	health episode.Tracker
	// dropping is true from the first line dropped (Drop) until a
	// dropped line recording the loss reached the sink.
	dropping atomic.Bool

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	// flushMu serialises flushes; what follows is the flusher's state.
	flushMu   sync.Mutex
	spare     []byte
	spareEnds []int
	seq       uint64
	prev      [32]byte
	sinceCP   int
	lastCP    time.Time
	out       []byte
	outLines  int // lines in out
	// carry holds lines (whole, already chained) that a write could not
	// take when the flusher was stopped; the next flush (Close's) writes
	// them first, so that stopping never gives lines up in silence.
	carry      []byte
	carryLines int
}

// NewWriter starts a Writer on sink. Close stops it.
func NewWriter(sink io.Writer, opts Options) *Writer {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.CheckpointLines <= 0 {
		opts.CheckpointLines = DefaultCheckpointLines
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = DefaultBufferBytes
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = DefaultStallTimeout
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Replica == "" {
		opts.Replica = DefaultReplica("")
	}
	w := &Writer{
		opts:    opts,
		sink:    sink,
		replica: AppendString(nil, opts.Replica),
		now:     opts.Now,
		base:    mono.Start(),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if w.now == nil {
		w.now = time.Now
	}
	w.space = sync.NewCond(&w.mu)
	w.lastCP = w.now()
	go w.flushLoop()
	return w
}

// Replica returns the replica id the lines carry.
func (w *Writer) Replica() string { return w.opts.Replica }

// Write queues obj, one JSON object ("{...}", no newline), as a line.
// What it does when the buffer is full depends on Options.OnStall. A
// malformed obj (not ending in '}') is ignored.
func (w *Writer) Write(obj []byte) {
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return
	}
	w.mu.Lock()
	for len(w.pend) > 0 && len(w.pend)+len(obj) > w.opts.BufferBytes && !w.closed {
		if w.opts.OnStall == Drop {
			w.full.Store(true)
			w.droppedSince++
			w.mu.Unlock()
			w.dropped.Add(1)
			if !w.dropping.Swap(true) {
				w.opts.Log.Error("audit output not keeping up: dropping audit lines (audit.on_stall: drop); a dropped line in the chain will record how many once the output takes lines again (credgate_audit_dropped_total counts them; logged once until then)",
					slog.Int("buffer_bytes", w.opts.BufferBytes))
			}
			return
		}
		w.full.Store(true)
		w.poke()
		w.space.Wait()
	}
	w.pend = append(w.pend, obj...)
	w.ends = append(w.ends, len(w.pend))
	closed := w.closed
	big := len(w.pend) >= kickBytes
	w.mu.Unlock()
	switch {
	case closed:
		// After Close there is no flusher: write through, closed by a
		// final checkpoint again, so that the chain still ends with one
		// (verify fails lines after a chain's last final checkpoint).
		w.flush(context.Background(), true)
	case big:
		w.poke()
	}
}

func (w *Writer) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Stalled reports whether the sink is stalled: the buffer is full, or a
// write to the sink has taken longer than Options.StallTimeout. It is
// cheap (two atomic loads and, while a write is in progress, a clock
// read).
func (w *Writer) Stalled() bool {
	if w.full.Load() {
		return true
	}
	return w.stalledAt(w.base.Now())
}

// stalledAt reports whether a sink write in progress has taken longer
// than StallTimeout at elapsed, the time since base.
func (w *Writer) stalledAt(elapsed time.Duration) bool {
	ws := w.writing.Load()
	return ws != 0 && elapsed-time.Duration(ws-1) > w.opts.StallTimeout
}

// Dropped returns how many lines the Drop policy discarded.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Written returns how many lines reached the sink.
func (w *Writer) Written() uint64 { return w.written.Load() }

// Pending returns how many lines the sink has not taken yet: those
// waiting in the buffer and those the flusher made and is writing or
// holds for the next flush. It does not wait for a write in progress, so
// it can say, when a sink takes no write at shutdown, how many lines
// were given up.
func (w *Writer) Pending() uint64 {
	w.mu.Lock()
	n := len(w.ends)
	w.mu.Unlock()
	return uint64(n) + uint64(max(w.unwritten.Load(), 0))
}

// Errors returns how many sink writes failed (each is retried).
func (w *Writer) Errors() uint64 { return w.errs.Load() }

// OutputStatus is the state of an audit output (the sink of a Writer,
// the rotation of a RotatingFile, an OTLP export): whether it is failing,
// since when, how many failures, and the last one's text (an OS or
// transport error: a path or an address, never a line's content).
type OutputStatus = episode.Status

// Status returns the state of the sink.
func (w *Writer) Status() OutputStatus { return w.health.Status() }

// Dropping reports whether lines were dropped (Drop) that no dropped line
// in the sink records yet.
func (w *Writer) Dropping() bool { return w.dropping.Load() }

// sinkFailed counts a failed sink write and logs it when it begins a
// failure episode.
func (w *Writer) sinkFailed(err error) {
	w.errs.Add(1)
	if w.health.Fail(time.Now(), err.Error()) {
		w.opts.Log.Error("audit output write failed; retrying until it takes the lines (logged once until it recovers; credgate_audit_write_errors_total counts each failure, /readyz shows the state)",
			slog.Any("error", err), slog.String("on_stall", w.opts.OnStall.String()))
	}
}

// sinkOK notes a write the sink took, and logs the end of a failure
// episode.
func (w *Writer) sinkOK(lines int) {
	w.written.Add(uint64(lines))
	w.unwritten.Add(-int64(lines))
	if st, ended := w.health.OK(); ended {
		w.opts.Log.Warn("audit output recovered: it takes lines again",
			slog.Uint64("failures", st.EpisodeFailures), slog.Duration("failing_for", time.Since(st.Since).Round(time.Millisecond)))
	}
}

func (w *Writer) flushLoop() {
	defer close(w.done)
	t := time.NewTicker(w.opts.FlushInterval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		case <-w.kick:
		}
		w.flush(ctx, false)
	}
}

// Close writes what is buffered and, with a Signer, a final checkpoint,
// and stops the flusher. Lines written afterwards go straight to the sink,
// each followed by a final checkpoint of its own.
// It returns the sink's last error, if the final write failed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.space.Broadcast()
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	return w.flush(context.Background(), true)
}

// flush takes the buffered objects, turns them into lines and writes them.
func (w *Writer) flush(ctx context.Context, final bool) error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	batch, ends, dropped := w.pend, w.ends, w.droppedSince
	w.pend, w.ends, w.droppedSince = w.spare[:0], w.spareEnds[:0], 0
	w.full.Store(false)
	w.space.Broadcast()
	w.mu.Unlock()

	out := append(w.out[:0], w.carry...)
	w.outLines = w.carryLines
	w.carry, w.carryLines = w.carry[:0], 0
	now := w.now()
	if dropped > 0 {
		obj := append(w.timeObj(nil, "dropped", now), `,"count":`...)
		obj = strconv.AppendUint(obj, dropped, 10)
		out = w.line(out, append(obj, '}'))
	}
	start := 0
	var err error
	for _, end := range ends {
		out = w.line(out, batch[start:end])
		start = end
		if w.opts.Signer != nil && !w.opts.Unchained && w.sinceCP >= w.opts.CheckpointLines {
			out = w.checkpoint(ctx, out, now, false)
		}
		if len(out) >= kickBytes {
			// Write in pieces of whole lines, so that out stays small.
			if werr := w.writeOut(ctx, out, w.outLines); werr != nil {
				err = werr
			}
			out, w.outLines = out[:0], 0
		}
	}
	if w.opts.Signer != nil && !w.opts.Unchained && w.seq > 0 &&
		(final || (w.sinceCP > 0 && now.Sub(w.lastCP) >= w.opts.CheckpointInterval)) {
		out = w.checkpoint(ctx, out, now, final)
	}
	if werr := w.writeOut(ctx, out, w.outLines); werr != nil {
		err = werr
	}
	if dropped > 0 && err == nil && w.dropping.Swap(false) {
		w.opts.Log.Warn("audit lines were dropped while the output did not keep up; a dropped line in the chain records them",
			slog.Uint64("dropped", dropped), slog.Uint64("dropped_total", w.dropped.Load()))
	}
	w.out = out[:0] // at most kickBytes plus a line and a checkpoint
	// The taken buffer becomes the spare for the next swap.
	w.spare, w.spareEnds = batch[:0], ends[:0]
	return err
}

// writeOut writes out to the sink, retrying a failed write every second
// until it succeeds or ctx ends; the lines after a failure wait, so the
// buffer fills and OnStall applies. When ctx ends (the flusher is
// stopped) with lines not taken, they are kept in carry, in order, for
// the next flush: Close's, which retries until the sink takes them (the
// gateway bounds that wait and logs what it gives up).
func (w *Writer) writeOut(ctx context.Context, out []byte, lines int) error {
	if len(out) == 0 {
		return nil
	}
	if len(w.carry) > 0 {
		// Lines before these are waiting: keep the order.
		w.carry = append(w.carry, out...)
		w.carryLines += lines
		return errCarried
	}
	backoff := 50 * time.Millisecond
	// A write counts as in progress, for Stalled, until it succeeds or
	// is given up: retries included.
	w.writing.Store(int64(w.base.Now()) + 1)
	defer w.writing.Store(0)
	for {
		n, err := w.sink.Write(out)
		if err == nil {
			w.sinkOK(lines)
			return nil
		}
		w.sinkFailed(err)
		out = out[n:]
		if ctx.Err() != nil {
			// Stopped while the write failed: what it did not take waits
			// for the next flush, as below.
			w.carry = append(w.carry[:0], out...)
			w.carryLines = lines
			return fmt.Errorf("audit: write: %w", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			// One last try at shutdown; what it does not take waits for
			// the next flush.
			n, err := w.sink.Write(out)
			if err != nil {
				w.sinkFailed(err)
				w.carry = append(w.carry[:0], out[n:]...)
				w.carryLines = lines
				return fmt.Errorf("audit: write: %w", err)
			}
			w.sinkOK(lines)
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

// timeObj starts an object of the Writer's own: {"type":T,"time":"..."
func (w *Writer) timeObj(b []byte, typ string, now time.Time) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","time":"`...)
	b = now.UTC().AppendFormat(b, TimeFormat)
	return append(b, '"')
}

// TimeFormat is the layout of every "time" in the audit log.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// line appends obj to out as one line: chained (seq, replica, prev) unless
// Unchained, then a newline.
func (w *Writer) line(out, obj []byte) []byte {
	w.outLines++
	w.unwritten.Add(1)
	if w.opts.Unchained {
		out = append(out, obj...)
		return append(out, '\n')
	}
	w.seq++
	w.sinceCP++
	start := len(out)
	out = appendChain(out, obj, w.seq, w.replica, &w.prev)
	w.prev = sha256.Sum256(out[start:])
	return append(out, '\n')
}

// checkpoint appends a checkpoint line signing the chain head. A signing
// error is logged and the checkpoint is tried again at the next one.
func (w *Writer) checkpoint(ctx context.Context, out []byte, now time.Time, final bool) []byte {
	prevHex := hex.EncodeToString(w.prev[:])
	ts := now.UTC().Format(TimeFormat)
	msg := checkpointMessage(w.opts.Replica, w.seq, prevHex, ts, final)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	sig, err := w.opts.Signer.Sign(sctx, msg)
	cancel()
	if err != nil {
		w.opts.Log.Error("audit checkpoint not signed; the next checkpoint will cover these lines", slog.Any("error", err))
		return out
	}
	obj := w.timeObj(make([]byte, 0, 256), "checkpoint", now)
	obj = append(obj, `,"head_seq":`...)
	obj = strconv.AppendUint(obj, w.seq, 10)
	obj = append(obj, `,"key_id":"`...)
	obj = append(obj, KeyID(w.opts.Signer.Public())...)
	obj = append(obj, `","sig":"`...)
	obj = base64.RawURLEncoding.AppendEncode(obj, sig)
	obj = append(obj, '"')
	if final {
		obj = append(obj, `,"final":true`...)
	}
	obj = append(obj, '}')
	out = w.line(out, obj)
	w.sinceCP = 0
	w.lastCP = now
	return out
}

// errClosed is returned by writes to a closed RotatingFile.
var errClosed = errors.New("audit: file closed")

// errCarried is writeOut's error for lines kept for the next flush.
var errCarried = errors.New("audit: write: lines kept for the next flush")

// replicaOK reports whether s may be a replica id: 1 to 128 printable
// characters without quotes, backslashes or spaces.
func replicaOK(s string) bool {
	return s != "" && len(s) <= 128 && !strings.ContainsAny(s, "\"\\ \t\r\n")
}

// ValidReplica checks a configured replica id.
func ValidReplica(s string) error {
	if !replicaOK(s) {
		return fmt.Errorf("%q: use 1 to 128 characters without spaces, quotes or backslashes", s)
	}
	return nil
}
