package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/internal/vaulttest"
)

// TestAuditVerifyCommand: exit 0 and a summary for a whole log, exit 1 and
// the edited line's FILE:LINE after an edit; audit pubkey prints the key
// verify takes.
func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	keyFile := writeCheckpointKey(t, dir)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"audit", "pubkey", "--key", keyFile}, &stdout, &stderr); code != 0 {
		t.Fatalf("audit pubkey: exit %d: %s", code, stderr.String())
	}
	pubFile := filepath.Join(dir, "audit.pub")
	if err := os.WriteFile(pubFile, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	logFile := filepath.Join(dir, "audit.log")
	f, err := audit.OpenFile(logFile, audit.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.LoadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	w := audit.NewWriter(f, audit.Options{Replica: "gw-0", Signer: signer})
	for i := 0; i < 3; i++ {
		w.Write(fmt.Appendf(nil, `{"path":"/v1/%d","status":200}`, i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	verify := func() (int, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"audit", "verify", "--pubkey", pubFile, "--require-signed-tail", logFile}, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := verify(); code != 0 || !strings.Contains(out, "replica gw-0: 4 lines in 1 files, seq 1..4; verified through seq 4 ("+logFile+":4); signed through seq 4 ("+logFile+":4); closed by a final checkpoint\nOK: 1 chains verified\n") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	data, _ := os.ReadFile(logFile)

	// --require-final: the whole log passes; without its final
	// checkpoint (a tail cut right after a checkpoint) it fails.
	noFinal := filepath.Join(dir, "nofinal.log")
	if err := os.WriteFile(noFinal, data[:bytes.LastIndexByte(data[:len(data)-1], '\n')+1], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, want string
		code       int
	}{{logFile, "OK: 1 chains verified", 0}, {noFinal, "BREAK " + noFinal + ":3: not_final: replica gw-0 seq 3:", 1}} {
		var out bytes.Buffer
		if code := run(context.Background(), []string{"audit", "verify", "--pubkey", pubFile, "--require-final", tc.file}, &out, &out); code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("--require-final %s: exit %d, want %d and %q:\n%s", tc.file, code, tc.code, tc.want, out.String())
		}
	}

	// The head cut (first line deleted): a break, exit 1, naming the
	// anchor that a legitimate retention start needs; with --start at
	// seq 2 it verifies, and a --start of the wrong form is an error.
	cut := filepath.Join(dir, "cut.log")
	if err := os.WriteFile(cut, data[bytes.IndexByte(data, '\n')+1:], 0o600); err != nil {
		t.Fatal(err)
	}
	verifyCut := func(extra ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append(append([]string{"audit", "verify", "--pubkey", pubFile}, extra...), cut), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := verifyCut(); code != 1 || !strings.Contains(out, "BREAK "+cut+":1: truncated: replica gw-0 seq 2:") || !strings.Contains(out, "--start gw-0=2") {
		t.Errorf("a log whose first line was deleted: exit %d:\n%s", code, out)
	}
	if code, out := verifyCut("--start", "gw-0=2"); code != 0 || !strings.Contains(out, "OK: 1 chains verified") {
		t.Errorf("with --start gw-0=2: exit %d:\n%s", code, out)
	}
	if code, out := verifyCut("--start", "gw-0=two"); code != 1 || !strings.Contains(out, "--start gw-0=two: SEQ must be") {
		t.Errorf("with --start gw-0=two: exit %d:\n%s", code, out)
	}

	if err := os.WriteFile(logFile, bytes.Replace(data, []byte(`"/v1/1"`), []byte(`"/v1/9"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := verify(); code != 1 || !strings.Contains(out, "BREAK "+logFile+":2: edited: replica gw-0 seq 2:") || !strings.Contains(out, "FAIL: 1 breaks") {
		t.Errorf("after an edit: exit %d:\n%s", code, out)
	}
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"audit", "verify", "--require-signed-tail", logFile}, &bytes.Buffer{}, &errOut); code != 1 || !strings.Contains(errOut.String(), "--require-signed-tail needs --pubkey") {
		t.Errorf("--require-signed-tail without --pubkey: exit %d: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"audit", "verify", "--require-final", logFile}, &bytes.Buffer{}, &errOut); code != 1 || !strings.Contains(errOut.String(), "--require-final needs --pubkey") {
		t.Errorf("--require-final without --pubkey: exit %d: %s", code, errOut.String())
	}
}

// TestAuditVerifyTransitKey: checkpoints signed by a Vault transit
// ed25519 key (audit.checkpoint.signer.vault_transit; here Vault is the
// in-repo emulator) verify with --transit-key, which reads the key's
// public halves from VAULT_ADDR with VAULT_TOKEN; audit pubkey
// --transit-key prints them.
func TestAuditVerifyTransitKey(t *testing.T) {
	emu := vaulttest.NewServer(vaulttest.Options{})
	t.Cleanup(emu.Close)
	if _, err := emu.MountTransit(t.Context(), map[string]string{"credgate-audit": "ed25519"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_ADDR", emu.URL)
	t.Setenv("VAULT_TOKEN", emu.RootToken)
	t.Setenv("VAULT_CACERT", "")

	var node yaml.Node
	if err := node.Encode(map[string]any{"server": map[string]any{"auth": map[string]any{"method": "token"}}, "key": "credgate-audit"}); err != nil {
		t.Fatal(err)
	}
	signer, err := audit.LoadSigner(t.Context(), "vault_transit", &node)
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "audit.log")
	f, err := audit.OpenFile(logFile, audit.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := audit.NewWriter(f, audit.Options{Replica: "gw-0", Signer: signer})
	for i := 0; i < 3; i++ {
		w.Write(fmt.Appendf(nil, `{"path":"/v1/%d","status":200}`, i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	_ = audit.CloseSigner(signer)

	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"audit", "verify", "--transit-key", "transit/credgate-audit", "--require-signed-tail", logFile}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "closed by a final checkpoint\nOK: 1 chains verified\n") {
		t.Fatalf("audit verify --transit-key: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run(t.Context(), []string{"audit", "pubkey", "--transit-key", "transit/credgate-audit"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "# key_id "+audit.KeyID(signer.Public())+"\n-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("audit pubkey --transit-key: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	errOut.Reset()
	if code := run(t.Context(), []string{"audit", "verify", "--transit-key", "transit/missing", logFile}, &bytes.Buffer{}, &errOut); code == 0 || !strings.Contains(errOut.String(), "vault write -f transit/keys/missing type=ed25519") {
		t.Errorf("a missing transit key: exit %d: %s", code, errOut.String())
	}
	if strings.Contains(out.String()+errOut.String(), emu.RootToken) {
		t.Error("the Vault token appears in the output")
	}
}

// TestAuditVerifyMutations runs audit verify on mutations of a real
// signed log written by the audit writer: nothing verified is never OK, a
// line that is not an audit line is a break unless it is what a crash
// leaves (the start of a line), and every edit, deletion or reordering
// fails.
func TestAuditVerifyMutations(t *testing.T) {
	dir := t.TempDir()
	keyFile := writeCheckpointKey(t, dir)
	var pub bytes.Buffer
	if code := run(t.Context(), []string{"audit", "pubkey", "--key", keyFile}, &pub, &bytes.Buffer{}); code != 0 {
		t.Fatal("audit pubkey failed")
	}
	pubFile := filepath.Join(dir, "audit.pub")
	if err := os.WriteFile(pubFile, pub.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	signer, err := audit.LoadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// writeLog appends n events and a final checkpoint to path, as one
	// gateway process (replica) does.
	writeLog := func(path, replica string, n int) {
		t.Helper()
		f, err := audit.OpenFile(path, audit.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w := audit.NewWriter(f, audit.Options{Replica: replica, Signer: signer, CheckpointLines: 2})
		for i := 0; i < n; i++ {
			w.Write(fmt.Appendf(nil, `{"path":"/v1/%d","status":200}`, i))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	orig := filepath.Join(dir, "orig.log")
	writeLog(orig, "gw-0", 5)
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	lines = lines[:len(lines)-1] // after the last newline
	if len(lines) < 6 {
		t.Fatalf("the log has %d lines, want at least 6:\n%s", len(lines), data)
	}
	mid := len(lines) / 2
	last := len(lines) - 1
	replace := func(i int, s string) func() string {
		return func() string {
			l := append([]string(nil), lines...)
			l[i] = s
			return strings.Join(l, "")
		}
	}
	tests := []struct {
		name        string
		file        func() string // the file's content
		path        string        // instead of a file with that content
		requireTail bool
		wantCode    int
		want        []string // in the output
	}{
		{name: "untouched", file: func() string { return string(data) }, requireTail: true, wantCode: 0, want: []string{"closed by a final checkpoint", "OK: 1 chains verified"}},
		{name: "empty file", file: func() string { return "" }, requireTail: true, wantCode: 1, want: []string{": empty: the file is empty", "leave the file out of the command", "FAIL"}},
		{name: "empty file, no flags", file: func() string { return "" }, wantCode: 1, want: []string{": empty: "}},
		{name: "/dev/null", path: os.DevNull, requireTail: true, wantCode: 1, want: []string{os.DevNull + ": empty: "}},
		{name: "every line x", file: func() string { return strings.Repeat("x\n", len(lines)) }, requireTail: true, wantCode: 1, want: []string{":1: garbled:", ": empty: the file holds no whole audit line"}},
		{name: "middle line garbage", file: replace(mid, "garbage\n"), wantCode: 1, want: []string{fmt.Sprintf(":%d: garbled:", mid+1), "deleted"}},
		{name: "middle line a cut-looking prefix", file: replace(mid, `{"time":"2026`+"\n"), wantCode: 1, want: []string{"cut_line", "deleted"}},
		{name: "middle line blank", file: replace(mid, "\n"), wantCode: 1, want: []string{"garbled"}},
		{name: "middle line JSON array", file: replace(mid, "[1,2]\n"), wantCode: 1, want: []string{"garbled"}},
		{name: "middle line object with junk after it", file: replace(mid, lines[mid][:len(lines[mid])-1]+" x\n"), wantCode: 1, want: []string{"garbled"}},
		{name: "last line cut mid-JSON", file: replace(last, lines[last][:len(lines[last])/2]), wantCode: 0, want: []string{fmt.Sprintf(":%d: cut_line:", last+1), "OK: 1 chains verified"}},
		{name: "last line cut mid-JSON, signed tail required", file: replace(last, lines[last][:len(lines[last])/2]), requireTail: true, wantCode: 1, want: []string{"cut_line", "unsigned_tail"}},
		{name: "last line whole without its newline", file: replace(last, strings.TrimSuffix(lines[last], "\n")), wantCode: 0, want: []string{"cut_line", "OK"}},
		{name: "last line garbage with newline", file: replace(last, "x\n"), wantCode: 1, want: []string{fmt.Sprintf(":%d: garbled:", last+1)}},
		{name: "last line garbage without newline", file: replace(last, "x"), wantCode: 1, want: []string{fmt.Sprintf(":%d: garbled:", last+1)}},
		{name: "only a cut line", file: func() string { return lines[0][:10] }, wantCode: 1, want: []string{"cut_line", "empty: the file holds no whole audit line"}},
		{name: "middle line deleted", file: replace(mid, ""), wantCode: 1, want: []string{"deleted"}},
		{name: "lines reordered", file: func() string {
			l := append([]string(nil), lines...)
			l[mid], l[mid+1] = l[mid+1], l[mid]
			return strings.Join(l, "")
		}, wantCode: 1, want: []string{"reordered"}},
		{name: "middle line edited", file: replace(mid, strings.Replace(lines[mid], `"seq":`, `"seq": `, 1)), wantCode: 1, want: []string{"edited"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = filepath.Join(t.TempDir(), "audit.log")
				if err := os.WriteFile(path, []byte(tt.file()), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{"audit", "verify", "--pubkey", pubFile}
			if tt.requireTail {
				args = append(args, "--require-signed-tail")
			}
			var out, errOut bytes.Buffer
			code := run(t.Context(), append(args, path), &out, &errOut)
			got := out.String() + errOut.String()
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d:\n%s", code, tt.wantCode, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("the output lacks %q:\n%s", w, got)
				}
			}
		})
	}

	// What a crash leaves: a line cut short, ended with a newline when
	// the next gateway process reopens the file and writes its own chain
	// after it. A warning, not a break.
	crashed := filepath.Join(dir, "crashed.log")
	if err := os.WriteFile(crashed, append(append([]byte(nil), data[:len(data)-len(lines[last])]...), lines[last][:20]...), 0o600); err != nil {
		t.Fatal(err)
	}
	writeLog(crashed, "gw-1", 3)
	var out bytes.Buffer
	if code := run(t.Context(), []string{"audit", "verify", "--pubkey", pubFile, crashed}, &out, &bytes.Buffer{}); code != 0 ||
		!strings.Contains(out.String(), fmt.Sprintf("warning %s:%d: cut_line:", crashed, last+1)) || !strings.Contains(out.String(), "OK: 2 chains verified") {
		t.Errorf("a line cut by a crash, then a restart: exit %d:\n%s", code, out.String())
	}
}

// writeCheckpointKey writes a new Ed25519 checkpoint key (PKCS #8 PEM) to
// dir/audit.key and returns its path.
func writeCheckpointKey(t *testing.T, dir string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "audit.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile
}
