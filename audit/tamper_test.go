package audit

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// verifyMode is one way an operator runs `credgate audit verify`.
type verifyMode int

const (
	modeNoKey verifyMode = iota // chains only
	modeKey                     // --pubkey
	modeTail                    // --pubkey --require-signed-tail
	modeFinal                   // --pubkey --require-final
	numModes
)

func (m verifyMode) String() string {
	return [...]string{"no key", "--pubkey", "--require-signed-tail", "--require-final"}[m]
}

func (m verifyMode) opts(keys []ed25519.PublicKey) VerifyOptions {
	switch m {
	case modeKey:
		return VerifyOptions{Keys: keys}
	case modeTail:
		return VerifyOptions{Keys: keys, RequireSignedTail: true}
	case modeFinal:
		return VerifyOptions{Keys: keys, RequireFinal: true}
	}
	return VerifyOptions{}
}

// outcome is what verify must make of a tampering in one mode: detect it
// (a break of Kind, or an error naming the file), or pass it, which is
// allowed only when the docs say plainly that it is undetectable by design
// (Design is a phrase of docs/audit-and-metrics.md that says so).
type outcome struct {
	Kind   string
	Design string
}

// Phrases of docs/audit-and-metrics.md that state what verify cannot see.
const (
	designNoKey     = "Without a key, anyone who can write the files can rewrite a chain so that it verifies"
	designTail      = "whoever can write the file can change or cut them undetected"
	designAtCP      = "tail cut right after a checkpoint passes `--require-signed-tail`"
	designWhole     = "A whole chain copied in from other files"
	designDropChain = "and can drop a whole chain"
	designCut       = "a cut line carries nothing that verifies"
)

func detect(kind string) [numModes]outcome {
	return [numModes]outcome{{Kind: kind}, {Kind: kind}, {Kind: kind}, {Kind: kind}}
}

// keyed: undetectable without a key (anyone can rewrite an unkeyed chain),
// detected as kind with one.
func keyed(kind string) [numModes]outcome {
	return [numModes]outcome{{Design: designNoKey}, {Kind: kind}, {Kind: kind}, {Kind: kind}}
}

// tamperEnv holds what a tampering may splice in.
type tamperEnv struct {
	other    []string // another run's log: replica gw-c, same key
	otherKey []string // a log of replica gw-a signed by another key
}

// writeRun writes one chain of n events of replica to a file of its own,
// with a checkpoint every 4 lines and a final one.
func writeRun(t testing.TB, dir, replica string, signer Signer, n int) []string {
	t.Helper()
	path := filepath.Join(dir, replica+".log")
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC)
	w := NewWriter(f, Options{Replica: replica, Signer: signer, CheckpointLines: 4, FlushInterval: time.Hour,
		Now: func() time.Time { clock = clock.Add(time.Millisecond); return clock }})
	for i := 1; i <= n; i++ {
		w.Write(event(i, "gamma"))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return []string{path}
}

// line returns the line of replica with seq, without its newline.
func (l *logFiles) line(t *testing.T, replica string, seq uint64) string {
	t.Helper()
	fi, li := l.find(t, replica, seq)
	return strings.TrimSuffix(l.lines[fi][li], "\n")
}

// set replaces the line of replica with seq by s (a newline is added).
func (l *logFiles) set(t *testing.T, replica string, seq uint64, s string) {
	t.Helper()
	fi, li := l.find(t, replica, seq)
	l.lines[fi][li] = s + "\n"
}

// appendLine adds s (and a newline) to the end of the last file.
func (l *logFiles) appendLine(s string) {
	last := len(l.lines) - 1
	l.lines[last] = append(l.lines[last], s+"\n")
}

// hashOf is the prev a line's successor carries.
func hashOf(line string) [32]byte { return sha256.Sum256([]byte(line)) }

// chained closes obj with chain fields, as the writer does.
func chained(obj string, seq uint64, replica string, prev [32]byte) string {
	return string(appendChain(nil, []byte(obj), seq, AppendString(nil, replica), &prev))
}

// flipField changes one byte of the value of "field" in line.
func flipField(t *testing.T, line, field string) string {
	t.Helper()
	i := strings.Index(line, `"`+field+`":`)
	if i < 0 {
		t.Fatalf("no field %s in %s", field, line)
	}
	i += len(field) + 3
	if line[i] == '"' {
		i++
	}
	c := line[i] ^ 1
	if c == '"' || c == '\\' {
		c = line[i] ^ 2
	}
	return line[:i] + string(c) + line[i+1:]
}

// TestVerifyTamperTable runs every tampering an attacker with write access
// to the audit files could do through Verify, in each way an operator
// runs it (no key, --pubkey, --require-signed-tail, --require-final):
// each is detected, with a break naming the file, the line and the cause,
// or the docs say plainly that it is undetectable by design. Before the
// fixes of the probeaudit branch, 30 of the 204 mode×case checks failed:
// bytes of a final checkpoint changed without changing its parsed content
// (whitespace, key order, escapes, CRLF, an added or repeated field),
// forged lines appended after a final checkpoint, an unknown line type,
// a gzip'd rotated file, a file given twice, and no --require-final.
func TestVerifyTamperTable(t *testing.T) {
	signer, pub := newKey(t)
	otherSigner, _ := newKey(t)
	files := writeLog(t, t.TempDir(), signer, 12)
	env := &tamperEnv{
		other:    writeRun(t, t.TempDir(), "gw-c", signer, 6),
		otherKey: writeRun(t, t.TempDir(), "gw-a", otherSigner, 6),
	}
	keys := []ed25519.PublicKey{pub}
	docs, err := os.ReadFile("../docs/audit-and-metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	docText := strings.Join(strings.Fields(string(docs)), " ")

	// The layout the cases rely on: gw-a has events 1-4, checkpoint 5,
	// events 6-9, checkpoint 10, events 11-14, checkpoint 15, final 16.
	base := readLog(t, files)
	finalSeq := lastSeq(t, base, "gw-a")
	if finalSeq != 16 || !isCheckpoint(t, base, "gw-a", 5) || !isCheckpoint(t, base, "gw-a", 15) || !strings.Contains(base.line(t, "gw-a", 16), `"final":true`) {
		t.Fatalf("unexpected layout: gw-a ends at seq %d", finalSeq)
	}
	for m := verifyMode(0); m < numModes; m++ {
		rep, err := Verify(files, m.opts(keys))
		if err != nil || !rep.OK() {
			t.Fatalf("%s: the untouched log does not verify: %v %+v", m, err, rep)
		}
	}

	type tcase struct {
		name   string
		tamper func(t *testing.T, l *logFiles)
		want   [numModes]outcome
	}
	var cases []tcase
	// A byte of every field of a middle event, a middle checkpoint and
	// the final checkpoint.
	for _, f := range []string{"time", "workload", "path", "status", "seq", "replica", "prev"} {
		cases = append(cases, tcase{"edit a byte of an event's " + f, func(t *testing.T, l *logFiles) {
			l.set(t, "gw-a", 7, flipField(t, l.line(t, "gw-a", 7), f))
		}, detect("")})
	}
	for _, f := range []string{"type", "time", "head_seq", "key_id", "sig", "seq", "replica", "prev"} {
		cases = append(cases, tcase{"edit a byte of a middle checkpoint's " + f, func(t *testing.T, l *logFiles) {
			l.set(t, "gw-a", 10, flipField(t, l.line(t, "gw-a", 10), f))
		}, detect("")})
	}
	for _, f := range []string{"type", "time", "head_seq", "key_id", "sig", "final", "seq", "replica", "prev"} {
		want := detect("")
		switch f {
		case "time", "key_id", "sig":
			want = keyed(KindCheckpoint)
		}
		cases = append(cases, tcase{"edit a byte of the final checkpoint's " + f, func(t *testing.T, l *logFiles) {
			l.set(t, "gw-a", finalSeq, flipField(t, l.line(t, "gw-a", finalSeq), f))
		}, want})
	}
	sameContent := func(name string, edit func(string) string) {
		cases = append(cases,
			tcase{name + " in a middle event", func(t *testing.T, l *logFiles) {
				l.set(t, "gw-a", 7, edit(l.line(t, "gw-a", 7)))
			}, detect(KindEdited)},
			tcase{name + " in the final checkpoint", func(t *testing.T, l *logFiles) {
				l.set(t, "gw-a", finalSeq, edit(l.line(t, "gw-a", finalSeq)))
			}, detect("")})
	}
	sameContent("whitespace", func(s string) string { return strings.Replace(s, `,"seq":`, `, "seq": `, 1) })
	sameContent("key order", func(s string) string {
		j := strings.Index(s, `,`) // the first field moves to the end
		return `{` + s[j+1:len(s)-1] + `,` + s[1:j] + `}`
	})
	sameContent("a unicode escape", func(s string) string { return strings.Replace(s, `"replica":"gw-a"`, `"replica":"gw\u002da"`, 1) })
	sameContent("a key in another case", func(s string) string { return strings.Replace(s, `"time":`, `"TIME":`, 1) })
	sameContent("an added field", func(s string) string { return s[:len(s)-1] + `,"note":"x"}` })
	sameContent("a repeated field", func(s string) string {
		return strings.Replace(s, `"time":`, `"time":"2000-01-01T00:00:00.000Z","time":`, 1)
	})
	sameContent("a CR before the newline", func(s string) string { return s + "\r" })
	cases = append(cases,
		tcase{"CRLF line endings throughout", func(t *testing.T, l *logFiles) {
			for _, lines := range l.lines {
				for i := range lines {
					lines[i] = strings.TrimSuffix(lines[i], "\n") + "\r\n"
				}
			}
		}, detect(KindEdited)},
		tcase{"delete a middle line", func(t *testing.T, l *logFiles) { l.deleteSeqs(t, "gw-a", 7, 7) }, detect(KindDeleted)},
		tcase{"delete a middle checkpoint", func(t *testing.T, l *logFiles) { l.deleteSeqs(t, "gw-a", 10, 10) }, detect(KindDeleted)},
		tcase{"duplicate a line", func(t *testing.T, l *logFiles) {
			fi, li := l.find(t, "gw-b", 7)
			l.lines[fi] = append(l.lines[fi][:li+1:li+1], l.lines[fi][li:]...)
		}, detect(KindInserted)},
		tcase{"insert a forged line chained to the one before", func(t *testing.T, l *logFiles) {
			prev := hashOf(l.line(t, "gw-a", 7))
			fi, li := l.find(t, "gw-a", 7)
			forged := chained(string(event(99, "mallory")), 8, "gw-a", prev)
			l.lines[fi] = append(l.lines[fi][:li+1:li+1], append([]string{forged + "\n"}, l.lines[fi][li+1:]...)...)
		}, detect(KindInserted)},
		tcase{"insert an unchained line", func(t *testing.T, l *logFiles) {
			l.lines[0] = append([]string{string(event(99, "mallory")) + "\n"}, l.lines[0]...)
		}, detect(KindUnchained)},
		tcase{"insert a blank line", func(t *testing.T, l *logFiles) {
			l.lines[0] = append([]string{"\n"}, l.lines[0]...)
		}, detect(KindGarbled)},
		tcase{"insert a line of 2 MiB that is not JSON", func(t *testing.T, l *logFiles) {
			l.lines[0] = append([]string{strings.Repeat("A", 2<<20) + "\n"}, l.lines[0]...)
		}, detect(KindGarbled)},
		tcase{"insert an unchained line of 2 MiB", func(t *testing.T, l *logFiles) {
			l.lines[0] = append([]string{`{"path":"` + strings.Repeat("A", 2<<20) + `"}` + "\n"}, l.lines[0]...)
		}, detect(KindUnchained)},
		tcase{"insert a line of an unknown type, chained", func(t *testing.T, l *logFiles) {
			prev := hashOf(l.line(t, "gw-a", finalSeq))
			l.appendLine(chained(`{"type":"note","time":"2026-12-02T05:00:00.000Z"}`, finalSeq+1, "gw-a", prev))
		}, detect("")},
		tcase{"swap two lines", func(t *testing.T, l *logFiles) {
			f1, l1 := l.find(t, "gw-a", 7)
			f2, l2 := l.find(t, "gw-a", 8)
			l.lines[f1][l1], l.lines[f2][l2] = l.lines[f2][l2], l.lines[f1][l1]
		}, detect(KindReordered)},
		tcase{"delete the first line", func(t *testing.T, l *logFiles) { l.deleteSeqs(t, "gw-a", 1, 1) }, detect(KindTruncated)},
		tcase{"delete the oldest file", func(t *testing.T, l *logFiles) { l.names, l.lines = l.names[1:], l.lines[1:] }, detect(KindTruncated)},
		tcase{"delete a middle file", func(t *testing.T, l *logFiles) {
			l.names = append(l.names[:1:1], l.names[2:]...)
			l.lines = append(l.lines[:1:1], l.lines[2:]...)
		}, detect(KindDeleted)},
		tcase{"cut the tail inside the unsigned part", func(t *testing.T, l *logFiles) {
			l.deleteSeqs(t, "gw-a", 14, finalSeq)
		}, [numModes]outcome{{Design: designTail}, {Design: designTail}, {Kind: KindUnsigned}, {Kind: KindNotFinal}}},
		tcase{"cut the tail right after a checkpoint (the final one deleted)", func(t *testing.T, l *logFiles) {
			l.deleteSeqs(t, "gw-a", finalSeq, finalSeq)
		}, [numModes]outcome{{Design: designTail}, {Design: designTail}, {Design: designAtCP}, {Kind: KindNotFinal}}},
		tcase{"cut the final checkpoint's newline", func(t *testing.T, l *logFiles) {
			fi, li := l.find(t, "gw-b", lastSeq(t, l, "gw-b"))
			if fi != len(l.lines)-1 || li != len(l.lines[fi])-1 {
				t.Fatal("gw-b's final checkpoint is not the last line")
			}
			l.lines[fi][li] = strings.TrimSuffix(l.lines[fi][li], "\n")
		}, [numModes]outcome{{Design: designTail}, {Design: designTail}, {Design: designAtCP}, {Kind: KindNotFinal}}},
		tcase{"cut the tail and forge an unsigned tail after it", func(t *testing.T, l *logFiles) {
			l.deleteSeqs(t, "gw-a", 12, finalSeq)
			l.appendLine(chained(string(event(99, "mallory")), 12, "gw-a", hashOf(l.line(t, "gw-a", 11))))
		}, [numModes]outcome{{Design: designTail}, {Design: designTail}, {Kind: KindUnsigned}, {Kind: KindNotFinal}}},
		tcase{"append forged lines after the final checkpoint", func(t *testing.T, l *logFiles) {
			l.appendLine(chained(string(event(99, "mallory")), finalSeq+1, "gw-a", hashOf(l.line(t, "gw-a", finalSeq))))
		}, detect(KindAfterFinal)},
		tcase{"append a forged chain of a new replica", func(t *testing.T, l *logFiles) {
			l.appendLine(chained(string(event(99, "mallory")), 1, "gw-x", zeroHash))
		}, [numModes]outcome{{Design: designTail}, {Design: designTail}, {Kind: KindUnsigned}, {Kind: KindNotFinal}}},
		tcase{"append a forged chain of a new replica with a forged final checkpoint", func(t *testing.T, l *logFiles) {
			first := chained(string(event(99, "mallory")), 1, "gw-x", zeroHash)
			l.appendLine(first)
			cp := chained(`{"type":"checkpoint","time":"2026-12-02T05:00:00.000Z","head_seq":1,"key_id":"`+KeyID(pub)+`","sig":"AAAA","final":true}`, 2, "gw-x", hashOf(first))
			l.appendLine(cp)
		}, keyed(KindCheckpoint)},
		tcase{"splice a whole chain of another run", func(t *testing.T, l *logFiles) {
			other := readLog(t, env.other)
			l.lines[0] = append(l.lines[0], other.lines[0]...)
		}, [numModes]outcome{{Design: designWhole}, {Design: designWhole}, {Design: designWhole}, {Design: designWhole}}},
		tcase{"splice lines from the middle of another run's chain", func(t *testing.T, l *logFiles) {
			other := readLog(t, env.other)
			l.lines[0] = append(l.lines[0], other.lines[0][3:6]...)
		}, detect(KindTruncated)},
		tcase{"splice another replica's line, its replica rewritten", func(t *testing.T, l *logFiles) {
			s := strings.Replace(l.line(t, "gw-b", 7), `"replica":"gw-b"`, `"replica":"gw-a"`, 1)
			fi, li := l.find(t, "gw-a", 7)
			l.lines[fi] = append(l.lines[fi][:li+1:li+1], append([]string{s + "\n"}, l.lines[fi][li+1:]...)...)
		}, detect(KindInserted)},
		tcase{"drop a whole replica's chain", func(t *testing.T, l *logFiles) {
			l.deleteSeqs(t, "gw-b", 1, lastSeq(t, l, "gw-b"))
		}, [numModes]outcome{{Design: designDropChain}, {Design: designDropChain}, {Design: designDropChain}, {Design: designDropChain}}},
		tcase{"replay a checkpoint of another chain at the end, rechained", func(t *testing.T, l *logFiles) {
			var cp struct {
				Time    string `json:"time"`
				HeadSeq uint64 `json:"head_seq"`
				KeyID   string `json:"key_id"`
				Sig     string `json:"sig"`
			}
			if err := json.Unmarshal([]byte(l.line(t, "gw-b", lastSeq(t, l, "gw-b"))), &cp); err != nil {
				t.Fatal(err)
			}
			l.deleteSeqs(t, "gw-a", finalSeq, finalSeq)
			obj := fmt.Sprintf(`{"type":"checkpoint","time":%q,"head_seq":%d,"key_id":%q,"sig":%q,"final":true}`, cp.Time, finalSeq-1, cp.KeyID, cp.Sig)
			l.appendLine(chained(obj, finalSeq, "gw-a", hashOf(l.line(t, "gw-a", finalSeq-1))))
		}, keyed(KindCheckpoint)},
		tcase{"replay an older checkpoint of the same chain as a final one", func(t *testing.T, l *logFiles) {
			var cp struct {
				Time  string `json:"time"`
				KeyID string `json:"key_id"`
				Sig   string `json:"sig"`
			}
			if err := json.Unmarshal([]byte(l.line(t, "gw-a", 5)), &cp); err != nil {
				t.Fatal(err)
			}
			l.deleteSeqs(t, "gw-a", finalSeq, finalSeq)
			obj := fmt.Sprintf(`{"type":"checkpoint","time":%q,"head_seq":%d,"key_id":%q,"sig":%q,"final":true}`, cp.Time, finalSeq-1, cp.KeyID, cp.Sig)
			l.appendLine(chained(obj, finalSeq, "gw-a", hashOf(l.line(t, "gw-a", finalSeq-1))))
		}, keyed(KindCheckpoint)},
		tcase{"replace a chain by one signed with an unknown (or rotated-out) key", func(t *testing.T, l *logFiles) {
			l.deleteSeqs(t, "gw-a", 1, finalSeq)
			other := readLog(t, env.otherKey)
			l.lines[0] = append(l.lines[0], other.lines[0]...)
		}, keyed(KindCheckpoint)},
		tcase{"insert a cut line (the start of an object) mid-chain", func(t *testing.T, l *logFiles) {
			fi, li := l.find(t, "gw-a", 7)
			l.lines[fi] = append(l.lines[fi][:li+1:li+1], append([]string{`{"workload":"mallory","path":"/v1/secret` + "\n"}, l.lines[fi][li+1:]...)...)
		}, [numModes]outcome{{Design: designCut}, {Design: designCut}, {Design: designCut}, {Design: designCut}}},
		tcase{"give a file twice", func(t *testing.T, l *logFiles) {
			l.names = append(l.names, l.names[0])
			l.lines = append(l.lines, l.lines[0])
		}, detect(KindDuplicateFile)},
		tcase{"a gzip'd rotated file with a byte of its content edited", func(t *testing.T, l *logFiles) {
			fi, li := l.find(t, "gw-a", 2)
			if fi == len(l.lines)-1 {
				t.Fatal("seq 2 is in the live file")
			}
			l.lines[fi][li] = flipField(t, l.lines[fi][li], "path")
			l.gzip[fi] = true
		}, detect(KindEdited)},
		tcase{"a gzip'd rotated file whose compressed bytes were edited", func(t *testing.T, l *logFiles) {
			l.gzip[0] = true
			l.corrupt[0] = true
		}, detect("")},
	)

	// Legitimate: these must verify in every mode.
	legit := []tcase{
		{"files given newest first", func(t *testing.T, l *logFiles) {
			for i, j := 0, len(l.names)-1; i < j; i, j = i+1, j-1 {
				l.names[i], l.names[j] = l.names[j], l.names[i]
				l.lines[i], l.lines[j] = l.lines[j], l.lines[i]
			}
		}, [numModes]outcome{}},
		{"rotated files gzip'd (logrotate's compress)", func(t *testing.T, l *logFiles) {
			for i := 0; i < len(l.names)-1; i++ {
				l.gzip[i] = true
			}
		}, [numModes]outcome{}},
	}

	missed, checks := 0, 0
	run := func(tc tcase, isLegit bool) {
		t.Run(tc.name, func(t *testing.T) {
			copies := copyLog(t, files)
			l := readLog(t, copies)
			l.gzip, l.corrupt = map[int]bool{}, map[int]bool{}
			tc.tamper(t, l)
			names := l.writeAll(t)
			for m := verifyMode(0); m < numModes; m++ {
				checks++
				want := tc.want[m]
				rep, err := Verify(names, m.opts(keys))
				var text bytes.Buffer
				if rep != nil {
					rep.WriteText(&text)
				}
				switch {
				case isLegit:
					if err != nil || !rep.OK() {
						missed++
						t.Errorf("%s: a legitimate log does not verify: %v\n%s", m, err, text.String())
					}
				case err != nil:
					if want.Design != "" || !strings.Contains(err.Error(), filepath.Base(names[0])) {
						missed++
						t.Errorf("%s: want %+v, got the error %v", m, want, err)
					}
				case want.Design != "":
					if !strings.Contains(docText, want.Design) {
						t.Errorf("%s: passes by design, but the docs do not say %q", m, want.Design)
					}
					if !rep.OK() {
						t.Logf("%s: documented as undetectable, but detected:\n%s", m, text.String())
					}
				case rep.OK():
					missed++
					t.Errorf("%s: not detected:\n%s", m, text.String())
				default:
					kinds := map[string]bool{}
					for _, p := range rep.Problems {
						kinds[p.Kind] = true
						if p.Pos.File == "" || p.Msg == "" || (p.Pos.Line == 0 && p.Kind != KindEmpty && p.Kind != KindDuplicateFile) {
							t.Errorf("%s: a break that does not name its file, line and cause: %+v", m, p)
						}
						if !regexp.MustCompile(`(?m)^BREAK \S+(:\d+)?: ` + regexp.QuoteMeta(p.Kind) + `: `).MatchString(text.String()) {
							t.Errorf("%s: the report does not print the break %s as BREAK FILE:LINE: KIND:\n%s", m, p.Kind, text.String())
						}
					}
					if want.Kind != "" && !kinds[want.Kind] {
						missed++
						t.Errorf("%s: detected, but not as %s:\n%s", m, want.Kind, text.String())
					}
				}
			}
		})
	}
	for _, tc := range cases {
		run(tc, false)
	}
	for _, tc := range legit {
		run(tc, true)
	}
	t.Logf("%d of %d mode×case checks missed", missed, checks)
}

// writeAll writes the files, gzip'ing those marked (as NAME.gz, the
// compressed bytes edited for those marked corrupt), and returns their
// names.
func (l *logFiles) writeAll(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	var names []string
	for i, f := range l.names {
		data := []byte(strings.Join(l.lines[i], ""))
		if l.gzip[i] {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			if _, err := zw.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			data = b.Bytes()
			if l.corrupt[i] {
				data[len(data)/2] ^= 0x40
			}
			if !seen[f] {
				_ = os.Remove(f)
			}
			f += ".gz"
		}
		if !seen[f] {
			if err := os.WriteFile(f, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		seen[f] = true
		names = append(names, f)
	}
	return names
}

// FuzzVerifyTamper changes, inserts or deletes one byte anywhere in a
// signed log closed by its final checkpoints: with --require-final, every
// such change must fail verification (or make Verify return an error),
// and no input may panic it.
func FuzzVerifyTamper(f *testing.F) {
	signer, pub := newKey(f)
	dir := f.TempDir()
	files := writeRun(f, dir, "gw-f", signer, 9)
	data, err := os.ReadFile(files[0])
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct {
		off int
		op  byte
		b   byte
	}{{0, 0, '['}, {len(data) - 1, 2, 0}, {len(data) - 2, 0, ' '}, {len(data) - 3, 1, '\r'}, {len(data) / 2, 0, '1'}, {len(data) - 40, 0, 'A'}} {
		f.Add(s.off, s.op, s.b)
	}
	f.Fuzz(func(t *testing.T, off int, op, b byte) {
		if off < 0 {
			off = -off
		}
		off %= len(data)
		var mut []byte
		switch op % 3 {
		case 0: // replace
			if data[off] == b {
				return
			}
			mut = append(append(append([]byte{}, data[:off]...), b), data[off+1:]...)
		case 1: // insert
			mut = append(append(append([]byte{}, data[:off]...), b), data[off:]...)
		default: // delete
			mut = append(append([]byte{}, data[:off]...), data[off+1:]...)
		}
		name := filepath.Join(t.TempDir(), "audit.log")
		if err := os.WriteFile(name, mut, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := Verify([]string{name}, VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireFinal: true})
		if err == nil && rep.OK() {
			t.Errorf("%s of byte %d (%q) by %q passes verification", [...]string{"replacing", "inserting before", "deleting"}[op%3], off, data[off], b)
		}
	})
}

// TestWriteAfterCloseEndsFinal: a line written after Close (a tunnel that
// ends during shutdown) is followed by another final checkpoint, so the
// chain still ends with one and verifies with --require-final; lines
// appended after it by hand would be after_final.
func TestWriteAfterCloseEndsFinal(t *testing.T) {
	signer, pub := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewWriter(f, Options{Replica: "gw-z", Signer: signer, FlushInterval: time.Hour})
	w.Write(event(1, "alpha"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Write(event(2, "alpha"))
	rep, err := Verify([]string{path}, VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireFinal: true})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.WriteText(&b)
	if !rep.OK() || len(rep.Chains) != 1 || !rep.Chains[0].Final || rep.Chains[0].LastSeq != 4 {
		t.Errorf("want seq 1..4 (line, final, line, final) closed by a final checkpoint:\n%s", b.String())
	}
}

// TestVerifyLongLine: a line of over 1 MiB (a request with a long path)
// is read whole and verifies; one byte of it edited is found.
func TestVerifyLongLine(t *testing.T) {
	signer, pub := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(f, Options{Replica: "gw-l", Signer: signer, FlushInterval: time.Hour})
	w.Write([]byte(`{"path":"/` + strings.Repeat("a", 2<<20) + `"}`))
	w.Write(event(2, "alpha"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	opts := VerifyOptions{Keys: []ed25519.PublicKey{pub}, RequireFinal: true}
	if rep, err := Verify([]string{path}, opts); err != nil || !rep.OK() {
		t.Fatalf("a log with a 2 MiB line does not verify: %v %+v", err, rep)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[1<<20] = 'b'
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify([]string{path}, opts)
	if err != nil || rep.OK() || rep.Problems[0].Kind != KindEdited || rep.Problems[0].Pos.Line != 1 {
		t.Errorf("a byte of the 2 MiB line edited: want edited at line 1, got %v %+v", err, rep)
	}
}
