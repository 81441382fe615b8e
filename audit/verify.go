package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Problem kinds: each breaks verification (Report.OK is false).
const (
	KindEdited     = "edited"
	KindDeleted    = "deleted"
	KindInserted   = "inserted"
	KindReordered  = "reordered"
	KindUnchained  = "unchained"
	KindCheckpoint = "bad_checkpoint"
	KindUnsigned   = "unsigned_tail" // only with VerifyOptions.RequireSignedTail
	// KindGarbled is a line that is not an audit line (not a JSON object)
	// and not the start of one cut short by a crash.
	KindGarbled = "garbled"
	// KindEmpty is a file that holds no whole audit line, or files that
	// hold no chain: nothing in them verifies anything.
	KindEmpty = "empty"
	// KindTruncated is a chain whose first lines are not in the files
	// given (it starts after seq 1, or after the VerifyOptions.Starts
	// anchor of its replica), or an anchored replica with no line at all:
	// the head of the log was deleted, unless the operator says where the
	// retained log legitimately starts.
	KindTruncated = "truncated"
	// KindAfterFinal is a chain that goes on after its final checkpoint
	// with lines no later final checkpoint closes: the writer writes
	// nothing after its last final checkpoint, so they were appended.
	KindAfterFinal = "after_final"
	// KindNotFinal is a chain that does not end with a signed final
	// checkpoint; only with VerifyOptions.RequireFinal.
	KindNotFinal = "not_final"
	// KindDuplicateFile is a file given twice (the same file under one
	// name or two): its lines would count twice.
	KindDuplicateFile = "duplicate_file"
	// KindLongLine is a line longer than VerifyOptions.MaxLineBytes: no
	// line the gateway writes is that long, and verify does not hold it
	// in memory to find out what it is.
	KindLongLine = "line_too_long"
)

// KindCut is the warning for a line cut short by a crash (the start of a
// JSON object); it does not break verification.
const KindCut = "cut_line"

// Pos is a line's place: file and 1-based line number.
type Pos struct {
	File string
	Line int
}

// String is FILE:LINE (FILE alone for a file's own problem), the name
// printed inert: a name comes from a directory whoever writes the files
// may write too (audit.log* expands to every file there), so a name
// holding a newline and "OK: 1 chains verified", or a terminal escape
// that conceals what follows, would forge the report as file contents
// could (inert).
func (p Pos) String() string {
	if p.Line == 0 {
		return inertName(p.File)
	}
	return fmt.Sprintf("%s:%d", inertName(p.File), p.Line)
}

// maxInertName is the longest file name a report prints whole: longer
// than any path a system takes (PATH_MAX is 4096 on Linux).
const maxInertName = 8192

// inertName is inert for a file name: quoted by the same rules, but cut
// only past maxInertName (a deep path is longer than maxInert).
func inertName(s string) string { return inertCut(s, maxInertName) }

// nameErr returns err, an error of opening or reading file name, with
// the name printed inert (inertName): os.PathError's text holds the name
// as it is. The error it wraps is kept for errors.Is and errors.As.
func nameErr(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == name {
		return &inertPathError{pe}
	}
	return fmt.Errorf("%s: %w", inertName(name), err)
}

// inertPathError is an fs.PathError whose text prints its path inert.
type inertPathError struct{ pe *fs.PathError }

func (e *inertPathError) Error() string {
	return e.pe.Op + " " + inertName(e.pe.Path) + ": " + e.pe.Err.Error()
}

func (e *inertPathError) Unwrap() error { return e.pe }

// Problem is one break found by Verify.
type Problem struct {
	Pos     Pos
	Kind    string
	Replica string
	Seq     uint64
	Msg     string
}

func (p Problem) String() string {
	if p.Replica == "" {
		return fmt.Sprintf("%s: %s: %s", p.Pos, p.Kind, p.Msg)
	}
	return fmt.Sprintf("%s: %s: replica %s seq %d: %s", p.Pos, p.Kind, inert(p.Replica), p.Seq, p.Msg)
}

// maxInert is the longest string from a file that a report prints whole.
const maxInert = 128

// inert returns s, a string read from the files verified (a replica id,
// a key id), as a report prints it: as it is when it is short and made
// of printable characters, else Go-quoted (control characters, invalid
// UTF-8, line and paragraph separators and bidirectional overrides
// escaped) and cut at maxInert bytes. The files are what verify
// distrusts: whoever edited them could otherwise write a newline and
// "OK: 1 chains verified", or terminal escapes that hide the BREAK lines,
// into the report.
func inert(s string) string { return inertCut(s, maxInert) }

// inertCut is inert with max in place of maxInert.
func inertCut(s string, max int) string {
	plain := len(s) <= max && s != ""
	for _, r := range s {
		if !plain {
			break
		}
		plain = r != utf8.RuneError && r != '"' && r != '\\' && unicode.IsPrint(r) && r < unicode.MaxASCII
	}
	if plain {
		return s
	}
	cut := ""
	if len(s) > max {
		n := max
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s, cut = s[:n], fmt.Sprintf("...(%d bytes)", len(s))
	}
	return strconv.QuoteToASCII(s) + cut
}

// Chain summarises one replica's chain.
type Chain struct {
	Replica string
	// Lines counts the replica's lines; Files the files they were in.
	Lines, Files int
	// FirstSeq and LastSeq are the lowest and highest seq seen.
	FirstSeq, LastSeq uint64
	// Verified is the last line up to which the chain is whole (seq
	// FirstSeq..VerifiedSeq present once, in order, each hashing to the
	// next one's prev); zero VerifiedSeq when even the first is broken.
	VerifiedSeq uint64
	VerifiedPos Pos
	// SignedSeq is the last checkpoint, within the whole part, whose
	// signature verified; zero when none did (or no key was given).
	SignedSeq uint64
	SignedPos Pos
	// Final is true when the chain ends with a verified final checkpoint
	// (the replica shut down cleanly).
	Final bool
}

// UnsignedTail returns how many whole lines come after the last signed
// checkpoint: verified by the chain only.
func (c Chain) UnsignedTail() uint64 { return c.VerifiedSeq - c.SignedSeq }

// Report is what Verify found.
type Report struct {
	Problems []Problem
	// Warnings do not break verification: cut lines (the start of a line
	// whose write a crash cut short; the chain shows whether anything
	// whole is missing). A chain whose first lines are not in the files
	// given is a Problem (KindTruncated) unless VerifyOptions.Starts
	// anchors where its retained log starts. A line that is neither whole nor cut short is a Problem
	// (KindGarbled), and so is a file with no whole line (KindEmpty).
	Warnings []Problem
	Chains   []Chain
	// SignaturesChecked is false when no public key was given.
	SignaturesChecked bool
	// MoreProblems and MoreWarnings count those past the first
	// MaxReported of each, which the report does not keep: what
	// whoever writes the files puts there (a gzip'd file of 200 MB of
	// blank lines is 200 KB) cannot make verify's memory grow with it.
	MoreProblems, MoreWarnings int
}

// MaxReported is how many problems, and how many warnings, a Report
// keeps; the rest are counted (Report.MoreProblems, MoreWarnings).
const MaxReported = 1000

// addProblem keeps p, or counts it past MaxReported.
func (r *Report) addProblem(p Problem) {
	if len(r.Problems) >= MaxReported {
		r.MoreProblems++
		return
	}
	r.Problems = append(r.Problems, p)
}

// addWarning keeps w, or counts it past MaxReported.
func (r *Report) addWarning(w Problem) {
	if len(r.Warnings) >= MaxReported {
		r.MoreWarnings++
		return
	}
	r.Warnings = append(r.Warnings, w)
}

// OK reports whether every chain verified. A report with no chain is
// never OK (a KindEmpty problem says so).
func (r *Report) OK() bool { return len(r.Problems) == 0 && r.MoreProblems == 0 }

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Keys verify checkpoint signatures, chosen by key_id.
	Keys []ed25519.PublicKey
	// RequireSignedTail makes lines after a chain's last signed
	// checkpoint a problem.
	RequireSignedTail bool
	// RequireFinal makes a chain that does not end with a signed final
	// checkpoint a problem: for the files of replicas that have stopped,
	// it catches a tail cut right after a checkpoint, which
	// RequireSignedTail cannot tell from a replica still running. It
	// implies RequireSignedTail (a chain closed by its final checkpoint
	// has no unsigned tail).
	RequireFinal bool
	// Starts says, per replica id, where its retained log legitimately
	// starts, its older lines deleted under a retention policy. A chain
	// must start at seq 1 or at its replica's Start (or before it); a
	// replica named here must have lines in the files.
	Starts map[string]Start
	// MaxLineBytes is the longest line read (without its newline); a
	// longer one is a KindLongLine break, read no further than the bound.
	// Zero means DefaultMaxLineBytes.
	MaxLineBytes int
}

// Start anchors where a replica's retained log starts (`credgate audit
// verify --start REPLICA=SEQ[:PREV]`).
type Start struct {
	// Seq is the first seq kept (at least 1).
	Seq uint64
	// Prev, when not empty, is the prev field of line Seq (64 lower-case
	// hex digits, the hash of line Seq-1, recorded when the older files
	// were deleted): a line Seq forged to look like the start does not
	// carry it.
	Prev string
}

// ParseStart parses REPLICA=SEQ[:PREV], as `--start` takes it.
func ParseStart(s string) (replica string, st Start, err error) {
	i := strings.LastIndexByte(s, '=')
	if i <= 0 {
		return "", Start{}, fmt.Errorf("%s: want REPLICA=SEQ or REPLICA=SEQ:PREV (the replica id of the lines, the first seq kept, and optionally the prev field of that line)", inert(s))
	}
	replica, rest := s[:i], s[i+1:]
	seq, prev, _ := strings.Cut(rest, ":")
	st.Seq, err = strconv.ParseUint(seq, 10, 64)
	if err != nil || st.Seq == 0 {
		return "", Start{}, fmt.Errorf("%s: SEQ must be a whole number of at least 1 (the seq of the first line kept)", inert(s))
	}
	if prev != "" {
		if _, err := hex.DecodeString(prev); err != nil || len(prev) != 64 || strings.ToLower(prev) != prev {
			return "", Start{}, fmt.Errorf("%s: PREV must be 64 lower-case hex digits (the prev field of line SEQ)", inert(s))
		}
		st.Prev = prev
	}
	return replica, st, nil
}

// rec is one chained line.
type rec struct {
	pos  Pos
	seq  uint64
	prev [32]byte // decoded; prevOK is false when it was not 64 hex digits
	hash [32]byte
	// prevOK: prev was 64 lower-case hex digits.
	prevOK bool
	cp     *cpLine
	fi     int // index of the file, for grouping
	// oddType is the type of a line of the writer's own (checkpoint,
	// dropped) that is not byte for byte as the writer writes it; only
	// the last line of a chain, which no line hashes, is blamed for it.
	oddType string
}

// openLog opens an audit file for reading: as it is, or decompressed when
// it is gzip'd (a rotated file compressed by logrotate's compress).
func openLog(name string) (io.Reader, func(), error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, nameErr(name, err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			_ = f.Close()
			return nil, nil, fmt.Errorf("%s: a gzip file that does not decompress: %w", inertName(name), err)
		}
		zr.Multistream(true)
		return zr, func() { _ = f.Close() }, nil
	}
	return br, func() { _ = f.Close() }, nil
}

// canonical returns the bytes the writer writes for a line of its own
// (a checkpoint or a dropped line) with these fields, and false for a
// type the writer does not write. A line of the writer's own that is not
// byte for byte this was edited, even if its parsed content is the same:
// the last line of a chain (its final checkpoint) is hashed by no other
// line, so only this holds its bytes.
func canonical(lf *lineFields, raw map[string]json.RawMessage, seq uint64, replica string, prev *[32]byte) ([]byte, bool) {
	var obj []byte
	switch *lf.Type {
	case "checkpoint":
		obj = append(obj, `{"type":"checkpoint","time":"`...)
		obj = append(obj, lf.Time...)
		obj = append(obj, `","head_seq":`...)
		obj = strconv.AppendUint(obj, lf.HeadSeq, 10)
		obj = append(obj, `,"key_id":"`...)
		obj = append(obj, lf.KeyID...)
		obj = append(obj, `","sig":"`...)
		obj = append(obj, lf.Sig...)
		obj = append(obj, '"')
		if lf.Final {
			obj = append(obj, `,"final":true`...)
		}
	case "dropped":
		obj = append(obj, `{"type":"dropped","time":"`...)
		obj = append(obj, lf.Time...)
		obj = append(obj, `","count":`...)
		obj = append(obj, raw["count"]...)
	default:
		return nil, false
	}
	obj = append(obj, '}')
	return appendChain(nil, obj, seq, AppendString(nil, replica), prev), true
}

type cpLine struct {
	Time    string `json:"time"`
	HeadSeq uint64 `json:"head_seq"`
	KeyID   string `json:"key_id"`
	Sig     string `json:"sig"`
	Final   bool   `json:"final"`
}

type lineFields struct {
	Type    *string `json:"type"`
	Seq     *uint64 `json:"seq"`
	Replica *string `json:"replica"`
	Prev    *string `json:"prev"`
	cpLine
}

var zeroHash [32]byte

// links reports whether next's prev is the hash of r.
func (r *rec) links(next *rec) bool { return next.prevOK && next.prev == r.hash }

// Verify checks the audit lines in files: lines of several replicas may
// be interleaved in one file or split one file per replica, and a
// replica's rotated files may be given in any order (its lines are put in
// seq order file by file). It reports every line edited, deleted,
// inserted or reordered, with its file and line.
func Verify(files []string, opts VerifyOptions) (*Report, error) {
	rep := &Report{SignaturesChecked: len(opts.Keys) > 0}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range opts.Keys {
		keys[KeyID(k)] = k
	}
	byReplica := map[string][]rec{}
	var order []string
	var seen []os.FileInfo
	seenName := map[int]string{}
	for fi, name := range files {
		if st, err := os.Stat(name); err == nil {
			dup := -1
			for i, o := range seen {
				if o != nil && os.SameFile(o, st) {
					dup = i
				}
			}
			seen = append(seen, st)
			if dup >= 0 {
				rep.addProblem(Problem{Pos: Pos{File: name}, Kind: KindDuplicateFile,
					Msg: fmt.Sprintf("the same file as %s, given before: its lines would count twice; give each file once", inertName(seenName[dup]))})
				continue
			}
			seenName[len(seen)-1] = name
		} else {
			seen = append(seen, nil)
		}
		f, closeLog, err := openLog(name)
		if err != nil {
			return nil, fmt.Errorf("audit verify: %w", err)
		}
		whole, lines := 0, 0
		err = readLines(f, opts.MaxLineBytes, func(n int, line []byte, complete bool) {
			lines++
			pos := Pos{File: name, Line: n}
			var lf lineFields
			if !complete || json.Unmarshal(line, &lf) != nil {
				if !cutShort(line, complete) {
					rep.addProblem(Problem{Pos: pos, Kind: KindGarbled,
						Msg: "not an audit line (a JSON object) nor the start of one cut short by a crash: the line was overwritten or inserted"})
					return
				}
				rep.addWarning(Problem{Pos: pos, Kind: KindCut,
					Msg: "not a whole JSON line (a write cut short by a crash or a full disk); any line missing because of it shows as deleted"})
				return
			}
			whole++
			if lf.Seq == nil || lf.Replica == nil || lf.Prev == nil {
				rep.addProblem(Problem{Pos: pos, Kind: KindUnchained,
					Msg: "the line has no seq, replica or prev: it was not written by a chaining writer (inserted, or audit.chain is off)"})
				return
			}
			if *lf.Seq == 0 {
				rep.addProblem(Problem{Pos: pos, Kind: KindGarbled, Replica: *lf.Replica,
					Msg: "seq 0: the gateway numbers the lines of a chain from 1, so the line was edited or inserted"})
				return
			}
			sum := sha256.Sum256(line)
			r := rec{pos: pos, seq: *lf.Seq, hash: sum, fi: fi}
			if len(*lf.Prev) == 64 && strings.ToLower(*lf.Prev) == *lf.Prev {
				_, err := hex.Decode(r.prev[:], []byte(*lf.Prev))
				r.prevOK = err == nil
			}
			if lf.Type != nil {
				var raw map[string]json.RawMessage
				_ = json.Unmarshal(line, &raw)
				want, known := canonical(&lf, raw, r.seq, *lf.Replica, &r.prev)
				switch {
				case !known:
					rep.addProblem(Problem{Pos: pos, Kind: KindGarbled, Replica: *lf.Replica, Seq: r.seq,
						Msg: fmt.Sprintf("a line of type %s, which this version of credgate does not write (only checkpoint and dropped): it was inserted or edited, or written by a newer credgate (then verify with that version: credgate version shows it)", inert(*lf.Type))})
				case !r.prevOK || !bytes.Equal(want, line):
					r.oddType = *lf.Type
				}
				if *lf.Type == "checkpoint" {
					cp := lf.cpLine
					r.cp = &cp
				}
			}
			if _, ok := byReplica[*lf.Replica]; !ok {
				order = append(order, *lf.Replica)
			}
			byReplica[*lf.Replica] = append(byReplica[*lf.Replica], r)
		}, func(n int, size int64) {
			lines++
			rep.addProblem(Problem{Pos: Pos{File: name, Line: n}, Kind: KindLongLine,
				Msg: fmt.Sprintf("the line is %d bytes long, over the %d bytes verify reads of one line: no line the gateway writes is that long "+
					"(a request's path is at most limits.max_header_bytes), so it was inserted or overwritten; if limits.max_header_bytes "+
					"was raised past a few MiB, give --max-line-bytes", size, lineBound(opts.MaxLineBytes))})
		})
		closeLog()
		if err != nil {
			return nil, fmt.Errorf("audit verify: %w", nameErr(name, err))
		}
		if whole == 0 {
			rep.addProblem(Problem{Pos: Pos{File: name}, Kind: KindEmpty, Msg: emptyMsg(lines)})
		}
	}
	sort.Strings(order)
	for _, id := range order {
		rep.Chains = append(rep.Chains, verifyChain(rep, id, byReplica[id], keys, opts))
	}
	var anchored []string
	for id := range opts.Starts {
		if _, ok := byReplica[id]; !ok {
			anchored = append(anchored, id)
		}
	}
	sort.Strings(anchored)
	for _, id := range anchored {
		rep.addProblem(Problem{Pos: Pos{File: strings.Join(files, ", ")}, Kind: KindTruncated, Replica: id, Seq: opts.Starts[id].Seq,
			Msg: "--start names this replica, but the files given hold none of its lines: its whole log was deleted, or these are not its files"})
	}
	if len(rep.Chains) == 0 && len(rep.Problems) == 0 {
		// Not reached while every file needs a whole line (each is a
		// chain's or a problem); kept so that no change to the rules above
		// can turn "nothing verified" into OK.
		rep.addProblem(Problem{Pos: Pos{File: strings.Join(files, ", ")}, Kind: KindEmpty,
			Msg: "no chain in the files given: nothing was verified"})
	}
	return rep, nil
}

// emptyMsg says why a file with no whole audit line fails, and what to do
// when that is expected.
func emptyMsg(lines int) string {
	if lines > 0 {
		return "the file holds no whole audit line, so nothing in it can be verified: its lines were overwritten, " +
			"or a crash cut short the first write to it"
	}
	return "the file is empty, so nothing in it can be verified. The gateway writes nothing to its audit file until it " +
		"serves a request (there is no start line, and the checkpoint at shutdown follows only lines): this is " +
		"the file of a gateway that has served no request since the file was created, or an audit file that was " +
		"emptied. If it is the former, leave the file out of the command"
}

// cutShort reports whether line (not a whole JSON object, or the last
// line of its file without a newline) is what a crash leaves of one: the
// writer writes each line as a JSON object and its newline, so a write cut
// short leaves the start of an object (ended by a newline when the
// gateway reopens the file, so it may be anywhere), or, at the very end,
// a whole object without its newline. Anything else was put there.
func cutShort(line []byte, complete bool) bool {
	if len(line) == 0 || line[0] != '{' {
		return false
	}
	var v json.RawMessage
	err := json.NewDecoder(bytes.NewReader(line)).Decode(&v)
	if err == nil {
		// A whole object: fine only as the last line, missing its
		// newline (an object with text after it was edited).
		return !complete && len(bytes.TrimSpace(line)) == len(v)
	}
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// DefaultMaxLineBytes is the longest line Verify and ReadRecords read
// when no other bound is given (`audit verify --max-line-bytes`). A
// gateway's line holds a request's path, at most limits.max_header_bytes
// (64 KiB by default) and up to 6 times that JSON-escaped, and short
// fields: 16 MiB leaves room for limits.max_header_bytes up to 2 MiB.
const DefaultMaxLineBytes = 16 << 20

// lineBound is the line bound in force for a configured one (zero: the
// default).
func lineBound(n int) int {
	if n <= 0 {
		return DefaultMaxLineBytes
	}
	return n
}

// readLines calls fn for each line of r, without its newline; complete is
// false for a last line without its newline. line is valid only during the
// call. A line longer than maxLine bytes is read no further than that
// bound (zero: DefaultMaxLineBytes): long is called with its number and
// length instead of fn.
func readLines(r io.Reader, bound int, fn func(n int, line []byte, complete bool), long func(n int, size int64)) error {
	maxLine := lineBound(bound)
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for n := 1; ; n++ {
		buf = buf[:0]
		var size, read int64 // the line's bytes, and with its newline
		over := false
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			size += int64(len(chunk))
			read += int64(len(chunk))
			if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
				size-- // the newline
			}
			switch {
			case over:
			case len(buf)+len(chunk) > maxLine+1: // more than maxLine bytes and a newline
				over, buf = true, buf[:0]
			default:
				if len(buf)+len(chunk) > cap(buf) {
					// Double, not append's 1.25: a line near the bound
					// costs twice the bound in all, not five times.
					buf = append(make([]byte, 0, min(max(2*cap(buf), len(buf)+len(chunk)), maxLine+1)), buf...)
				}
				buf = append(buf, chunk...)
			}
			if err != bufio.ErrBufferFull {
				break
			}
		}
		if read > 0 {
			complete := !over && len(buf) > 0 && buf[len(buf)-1] == '\n'
			if over || (!complete && len(buf) > maxLine) {
				long(n, size)
			} else {
				fn(n, bytes.TrimSuffix(buf, []byte{'\n'}), complete)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func verifyChain(rep *Report, id string, recs []rec, keys map[string]ed25519.PublicKey, opts VerifyOptions) Chain {
	c := Chain{Replica: id, Lines: len(recs)}
	problem := func(r rec, kind, format string, args ...any) {
		if len(rep.Problems) >= MaxReported {
			rep.MoreProblems++ // not formatted: not printed
			return
		}
		rep.addProblem(Problem{Pos: r.pos, Kind: kind, Replica: id, Seq: r.seq, Msg: fmt.Sprintf(format, args...)})
	}
	// Stream order: the replica's lines file by file (files ordered by
	// the first seq they hold of it), in line order within a file.
	type seg struct {
		first uint64
		recs  []rec
	}
	var segs []*seg
	segOf := map[int]*seg{}
	for _, r := range recs {
		s := segOf[r.fi]
		if s == nil {
			s = &seg{first: r.seq}
			segOf[r.fi] = s
			segs = append(segs, s)
		}
		s.recs = append(s.recs, r)
	}
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	c.Files = len(segs)
	var stream []rec
	for _, s := range segs {
		stream = append(stream, s.recs...)
	}

	// Duplicates: the genuine one is the one the next line chains to.
	bySeq := map[uint64][]int{}
	for i, r := range stream {
		bySeq[r.seq] = append(bySeq[r.seq], i)
	}
	genuine := map[uint64]int{}
	for seq, idx := range bySeq {
		if len(idx) == 1 {
			genuine[seq] = idx[0]
		}
	}
	for seq, idx := range bySeq {
		if len(idx) == 1 {
			continue
		}
		g := -1
		if nx, ok := genuine[seq+1]; ok {
			for _, i := range idx {
				if stream[i].links(&stream[nx]) {
					g = i
				}
			}
		}
		for _, i := range idx {
			if i == g {
				continue
			}
			if g >= 0 {
				problem(stream[i], KindInserted, "repeats seq %d of %s, to which the chain does not continue", seq, stream[g].pos)
			} else {
				problem(stream[i], KindInserted, "seq %d appears %d times (inserted or edited copies)", seq, len(idx))
			}
		}
		if g >= 0 {
			genuine[seq] = g
		}
	}
	seqs := make([]uint64, 0, len(genuine))
	for s := range genuine {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	if len(seqs) == 0 {
		return c
	}
	c.FirstSeq, c.LastSeq = seqs[0], seqs[len(seqs)-1]
	// The head: every chain starts at seq 1 (a prev of zeros, checked
	// below), so a chain starting later lost its first lines, unless the
	// operator anchored where the retained log starts.
	first := stream[genuine[c.FirstSeq]]
	st, anchored := opts.Starts[id]
	switch {
	case anchored && c.FirstSeq > st.Seq:
		problem(first, KindTruncated, "the chain starts at seq %d, but the retained log starts at seq %d (--start): seq %d..%d were deleted, or a rotated file was left out", c.FirstSeq, st.Seq, st.Seq, c.FirstSeq-1)
	case !anchored && c.FirstSeq != 1:
		problem(first, KindTruncated, "the chain starts at seq %d: seq 1..%d are not in the files given, so its first lines were deleted, or older rotated files were left out. Give the older files too or, when retention deleted them, say where the retained log starts: --start %s=%d", c.FirstSeq, c.FirstSeq-1, inert(id), c.FirstSeq)
	}
	// The anchor's prev binds line st.Seq wherever the chain starts: a
	// chain that starts before the anchor (older files given too, or lines
	// forged before it) must still carry the recorded prev at st.Seq, or
	// the anchor would prove nothing about a log forged to start earlier.
	if i, ok := genuine[st.Seq]; anchored && st.Prev != "" && ok && c.FirstSeq <= st.Seq {
		if r := stream[i]; !r.prevOK || hex.EncodeToString(r.prev[:]) != st.Prev {
			problem(r, KindTruncated, "the prev of seq %d is not the one --start recorded for it: it is not the line the retained log starts at (edited, or the log was cut and forged)", st.Seq)
		}
	}

	// Walk the chain in seq order; the whole part ends at the first break.
	whole := true
	blamed := map[uint64]bool{} // link breaks already explained
	mark := func(r rec) {
		if whole {
			c.VerifiedSeq, c.VerifiedPos = r.seq, r.pos
		}
	}
	type signedAt struct {
		seq uint64
		pos Pos
	}
	var signed []signedAt
	// unmark takes seq and what follows out of the whole part.
	unmark := func(seq uint64) {
		c.VerifiedSeq, c.VerifiedPos = 0, Pos{}
		if i, ok := genuine[seq-1]; ok && seq-1 >= c.FirstSeq {
			c.VerifiedSeq, c.VerifiedPos = seq-1, stream[i].pos
		}
		for len(signed) > 0 && signed[len(signed)-1].seq >= seq {
			signed = signed[:len(signed)-1]
		}
		c.SignedSeq, c.SignedPos, c.Final = 0, Pos{}, false
		if len(signed) > 0 {
			c.SignedSeq, c.SignedPos = signed[len(signed)-1].seq, signed[len(signed)-1].pos
		}
	}
	for k, s := range seqs {
		i := genuine[s]
		r := stream[i]
		if len(bySeq[s]) > 1 {
			whole = false
		}
		switch {
		case k == 0 && s == 1 && (!r.prevOK || r.prev != zeroHash):
			problem(r, KindEdited, "the first line of the chain must have a prev of 64 zeros; its prev field was edited")
			whole = false
		case k > 0 && seqs[k-1] != s-1:
			p := stream[genuine[seqs[k-1]]]
			if s-1 == seqs[k-1]+1 {
				problem(r, KindDeleted, "seq %d is missing: deleted between %s (seq %d) and here", s-1, p.pos, p.seq)
			} else {
				problem(r, KindDeleted, "seq %d..%d are missing: deleted between %s (seq %d) and here", seqs[k-1]+1, s-1, p.pos, p.seq)
			}
			whole = false
		case k > 0:
			p := stream[genuine[s-1]]
			if !p.links(&r) && !blamed[s] {
				// Two breaks in a row around one line: that line was
				// edited (its prev with it). One break: the line before
				// it was edited.
				if n, ok := genuine[s+1]; ok && len(bySeq[s+1]) == 1 && !r.links(&stream[n]) {
					problem(r, KindEdited, "the line was edited: its prev is not the hash of seq %d (%s) and its hash is not the prev of seq %d (%s)", s-1, p.pos, s+1, stream[n].pos)
					blamed[s+1] = true
				} else {
					problem(p, KindEdited, "the line was edited: it does not hash to the prev of the next line of its chain (%s, seq %d)", r.pos, r.seq)
					if whole {
						unmark(s - 1)
					}
				}
				whole = false
			}
			if i < genuine[s-1] {
				problem(r, KindReordered, "comes before seq %d (%s), which precedes it in the chain", s-1, p.pos)
				whole = false
			}
		}
		if r.cp != nil {
			switch {
			case r.cp.HeadSeq != s-1:
				problem(r, KindCheckpoint, "head_seq %d is not the seq before the checkpoint's own (%d)", r.cp.HeadSeq, s)
				whole = false
			case len(keys) > 0:
				k, ok := keys[r.cp.KeyID]
				sig, err := base64.RawURLEncoding.DecodeString(r.cp.Sig)
				switch {
				case !ok:
					problem(r, KindCheckpoint, "signed by key %s, which is not among the --pubkey keys", inert(r.cp.KeyID))
					whole = false
				case err != nil || !ed25519.Verify(k, checkpointMessage(id, r.cp.HeadSeq, hex.EncodeToString(r.prev[:]), r.cp.Time, r.cp.Final), sig):
					problem(r, KindCheckpoint, "the signature does not verify: the checkpoint was forged or edited")
					whole = false
				case whole:
					c.SignedSeq, c.SignedPos = s, r.pos
					c.Final = r.cp.Final && s == c.LastSeq
					signed = append(signed, signedAt{s, r.pos})
				}
			}
		}
		mark(r)
	}
	// The last line is hashed by no other: a line of the writer's own
	// there must be byte for byte as the writer writes it.
	if last := stream[genuine[c.LastSeq]]; last.oddType != "" {
		problem(last, KindEdited, "the %s line is not byte for byte as this version of credgate writes it (its whitespace, key order, escapes or fields were changed): it was edited, or written by a newer credgate (then verify with that version: credgate version shows it)", inert(last.oddType))
		if whole {
			unmark(c.LastSeq)
		}
		whole = false
	}
	// The writer writes nothing after a final checkpoint but, when a line
	// comes after it (written through after Close), another final
	// checkpoint: a chain with a final checkpoint ends with one.
	lastFinal := uint64(0)
	for _, s := range seqs {
		if cp := stream[genuine[s]].cp; cp != nil && cp.Final {
			lastFinal = s
		}
	}
	if lastFinal != 0 && lastFinal != c.LastSeq {
		if i, ok := genuine[lastFinal+1]; ok {
			problem(stream[i], KindAfterFinal, "the chain goes on after its final checkpoint (%s, seq %d) with lines no final checkpoint closes: the gateway writes nothing after its last final checkpoint, so they were appended", stream[genuine[lastFinal]].pos, lastFinal)
			whole = false
			c.Final = false
		}
	}
	switch {
	case opts.RequireFinal && whole && !c.Final && c.VerifiedSeq > 0:
		r := stream[genuine[c.VerifiedSeq]]
		problem(r, KindNotFinal, "the chain does not end with a signed final checkpoint (last signed: seq %d): its replica is still running or crashed, or its tail was cut", c.SignedSeq)
	case (opts.RequireSignedTail || opts.RequireFinal) && whole && c.VerifiedSeq > c.SignedSeq:
		r := stream[genuine[c.VerifiedSeq]]
		problem(r, KindUnsigned, "%d lines after the last signed checkpoint (seq %d) are verified by the chain only", c.UnsignedTail(), c.SignedSeq)
	}
	return c
}

// WriteText prints the report as `credgate audit verify` does.
func (r *Report) WriteText(w io.Writer) {
	for _, p := range r.Problems {
		fmt.Fprintf(w, "BREAK %s\n", p)
	}
	if r.MoreProblems > 0 {
		fmt.Fprintf(w, "BREAK and %d more breaks, not listed (only the first %d are)\n", r.MoreProblems, MaxReported)
	}
	for _, p := range r.Warnings {
		fmt.Fprintf(w, "warning %s\n", p)
	}
	if r.MoreWarnings > 0 {
		fmt.Fprintf(w, "warning and %d more warnings, not listed (only the first %d are)\n", r.MoreWarnings, MaxReported)
	}
	for _, c := range r.Chains {
		fmt.Fprintf(w, "replica %s: %d lines in %d files, seq %d..%d; ", inert(c.Replica), c.Lines, c.Files, c.FirstSeq, c.LastSeq)
		if c.VerifiedSeq == 0 {
			fmt.Fprintf(w, "nothing verified")
		} else {
			fmt.Fprintf(w, "verified through seq %d (%s)", c.VerifiedSeq, c.VerifiedPos)
		}
		switch {
		case !r.SignaturesChecked:
			fmt.Fprintf(w, "; signatures not checked (no --pubkey)")
		case c.SignedSeq == 0:
			fmt.Fprintf(w, "; no signed checkpoint")
		default:
			fmt.Fprintf(w, "; signed through seq %d (%s)", c.SignedSeq, c.SignedPos)
		}
		if r.SignaturesChecked && c.UnsignedTail() > 0 && c.VerifiedSeq == c.LastSeq {
			fmt.Fprintf(w, "; unsigned tail: %d lines (chain only)", c.UnsignedTail())
		}
		if c.Final {
			fmt.Fprintf(w, "; closed by a final checkpoint")
		}
		fmt.Fprintln(w)
	}
	if r.OK() {
		fmt.Fprintf(w, "OK: %d chains verified\n", len(r.Chains))
	} else {
		fmt.Fprintf(w, "FAIL: %d breaks\n", len(r.Problems)+r.MoreProblems)
	}
}
