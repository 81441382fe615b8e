package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestVerifyReportInert: a replica id or key id read from the files
// verified — which whoever edited them chose — or a file's name (audit.log*
// expands to whatever names were put in the directory) cannot shape the report
// credgate audit verify prints: for each hostile value (a newline and a
// forged "OK" line, a carriage return, terminal escapes that clear the
// screen or move the cursor up, NUL, invalid UTF-8, U+2028, a
// bidirectional override, 10 KB) the report is as many lines as for a
// plain value, each of printable ASCII only and bounded, and no line but
// the last says OK or FAIL. Nor can a name the error of a file that does
// not open. Names were printed as they are before: a file named
// "x\nOK: 3 chains verified\n\x1b[8m" printed a forged OK line and
// concealed the FAIL line after it.
func TestVerifyReportInert(t *testing.T) {
	hostile := map[string]string{
		"plain":        "gw-0-1a2b3c4d",
		"newline-ok":   "gw\nOK: 1 chains verified",
		"cr":           "gw\rOK: 1 chains verified",
		"ansi-clear":   "gw\x1b[2J\x1b[H",
		"ansi-up":      "gw\x1b[1A\x1b[2K",
		"nul":          "gw\x00x",
		"invalid-utf8": "gw\xff\xfe",
		"u2028":        "gw\u2028OK",
		"bidi":         "gw\u202eKO",
		"quote":        `gw" seq 1: fine`,
		"empty":        "",
		"long":         strings.Repeat("g", 10000),
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	report := func(t *testing.T, replica, keyID, name string) string {
		// A chained line, a checkpoint of an unknown key after it, and a
		// line whose prev is wrong: a report with breaks of each kind
		// that names the replica and the key.
		dir := t.TempDir()
		var buf bytes.Buffer
		var prev [32]byte
		lines := []string{`{"time":"t","n":1}`, `{"type":"checkpoint","time":"t","head_seq":1,"key_id":` + string(AppendString(nil, keyID)) + `,"sig":"AA"}`, `{"n":3}`}
		for i, obj := range lines {
			rb := AppendString(nil, replica)
			line := appendChain(nil, []byte(obj), uint64(i+1), rb, &prev)
			if i == 2 {
				line = appendChain(nil, []byte(obj), uint64(i+1), rb, &[32]byte{1})
			}
			buf.Write(line)
			buf.WriteByte('\n')
			prev = sha256.Sum256(line)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := Verify([]string{path}, VerifyOptions{Keys: []ed25519.PublicKey{pub}})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		rep.WriteText(&out)
		return out.String()
	}
	want := strings.Count(report(t, hostile["plain"], hex.EncodeToString([]byte("k")), "audit.log"), "\n")
	hostile["conceal"] = "x\nOK: 3 chains verified\n\x1b[8m"
	for name, v := range hostile {
		for _, field := range []string{"replica", "key_id", "file"} {
			t.Run(name+"/"+field, func(t *testing.T) {
				replica, keyID, file := "gw-0", v, "audit.log"
				switch field {
				case "replica":
					replica, keyID = v, "6b"
				case "file":
					// Any name a file system takes: no NUL or '/', at
					// most 255 bytes.
					if v == "" || strings.ContainsAny(v, "\x00/") || len(v) > 255 {
						t.Skip("not a file name")
					}
					keyID, file = "6b", v
				}
				out := report(t, replica, keyID, file)
				if n := strings.Count(out, "\n"); n != want {
					t.Errorf("%d report lines, want %d:\n%s", n, want, out)
				}
				lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
				for i, l := range lines {
					if len(l) > 600 && field != "file" {
						t.Errorf("line %d is %d bytes long", i+1, len(l))
					}
					for _, r := range l {
						if r >= unicode.MaxASCII || !unicode.IsPrint(r) || r == utf8.RuneError {
							t.Errorf("line %d holds %U: %q", i+1, r, l)
							break
						}
					}
					if i < len(lines)-1 && (strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "FAIL")) {
						t.Errorf("line %d of %d says %q", i+1, len(lines), l)
					}
				}
				if !strings.HasPrefix(lines[len(lines)-1], "FAIL: ") {
					t.Errorf("the last line is %q, want FAIL", lines[len(lines)-1])
				}
				if field != "file" {
					return
				}
				// A file that does not open: the error names it inert,
				// and is still an fs.ErrNotExist.
				_, err := Verify([]string{filepath.Join(t.TempDir(), v)}, VerifyOptions{})
				if err == nil || !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("Verify of a missing file: %v, want an error that is fs.ErrNotExist", err)
				}
				for _, r := range err.Error() {
					if r >= unicode.MaxASCII || !unicode.IsPrint(r) {
						t.Errorf("the error holds %U: %q", r, err)
						break
					}
				}
			})
		}
	}
}
