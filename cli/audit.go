package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/audit"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify audit logs and print the checkpoint public key",
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditPubkeyCmd())
	return cmd
}

func newAuditVerifyCmd() *cobra.Command {
	var (
		pubkeys     []string
		transitKeys []string
		requireTail bool
		requireFin  bool
		starts      []string
		maxLine     int
	)
	cmd := &cobra.Command{
		Use:   "verify [--pubkey FILE]... [--transit-key MOUNT/KEY]... [--require-signed-tail | --require-final] [--start REPLICA=SEQ[:PREV]]... [--max-line-bytes N] FILE...",
		Short: "Check the hash chains and signed checkpoints of audit files",
		Long: `Check the audit lines in FILE... (rotated files in any order, gzip'd ones as
they are; lines of several replicas interleaved in a file, or one file per
replica): every replica's
lines must be numbered without gap or repeat, in order, each hashing to the
next one's prev; with --pubkey, every checkpoint's Ed25519 signature must
verify against one of the keys (PEM "PUBLIC KEY" files); with --transit-key,
against every version of that ed25519 key of Vault's transit engine
(audit.checkpoint.signer.vault_transit), read from the Vault at VAULT_ADDR
with VAULT_TOKEN (VAULT_CACERT: the CA of Vault's certificate).

Each break is printed as "BREAK FILE:LINE: KIND: replica ID seq N: what",
KIND one of edited, deleted, inserted, reordered, unchained, bad_checkpoint,
garbled (not an audit line, nor the start of one cut short by a crash, which
is only a warning), empty (a file with no whole audit line: nothing to
verify; leave out the file of a gateway that served no request), truncated
(a chain that does not start at seq 1: its first lines were deleted, or older
rotated files were left out), after_final (lines appended after a chain's
final checkpoint), duplicate_file (a file given twice), line_too_long (a line
over --max-line-bytes, 16 MiB by default, read no further), unsigned_tail with
--require-signed-tail or --require-final, and not_final with --require-final;
then one summary line per replica with the last verified and last signed
position.

When retention deleted a replica's oldest files, say where its retained log
legitimately starts with --start REPLICA=SEQ (repeatable, one per replica),
or REPLICA=SEQ:PREV with the prev field of line SEQ recorded when the older
files were deleted, which a forged start line does not carry. A chain that
starts later than that is still truncated.

Lines after a replica's last signed checkpoint are an "unsigned tail",
verified by the chain only; they fail only with --require-signed-tail. A tail
cut right after a checkpoint passes that too: --require-final, for the files
of replicas that have stopped, fails every chain not closed by its signed
final checkpoint. Without a key, whoever can write the files can rewrite a
chain so that it verifies: only signed checkpoints prove who wrote the lines.

Exit 0 when everything verifies (and something did), 1 on any break or error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			var keys []ed25519.PublicKey
			for _, f := range pubkeys {
				data, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("audit verify: --pubkey: %w", err)
				}
				ks, err := audit.ParsePublicKey(data)
				if err != nil {
					return fmt.Errorf("audit verify: --pubkey %s: %w", f, err)
				}
				keys = append(keys, ks...)
			}
			for _, tk := range transitKeys {
				ks, err := transitPublicKeys(cmd.Context(), tk)
				if err != nil {
					return fmt.Errorf("audit verify: --transit-key %s: %w", tk, err)
				}
				keys = append(keys, ks...)
			}
			if requireTail && len(keys) == 0 {
				return errors.New("audit verify: --require-signed-tail needs --pubkey FILE or --transit-key MOUNT/KEY (the checkpoint key's public half)")
			}
			if requireFin && len(keys) == 0 {
				return errors.New("audit verify: --require-final needs --pubkey FILE or --transit-key MOUNT/KEY (the checkpoint key's public half)")
			}
			anchors := map[string]audit.Start{}
			for _, a := range starts {
				id, st, err := audit.ParseStart(a)
				if err != nil {
					return fmt.Errorf("audit verify: --start %w", err)
				}
				if _, dup := anchors[id]; dup {
					return fmt.Errorf("audit verify: --start names replica %q twice: give one start per replica", id)
				}
				anchors[id] = st
			}
			if maxLine < 0 {
				return fmt.Errorf("audit verify: --max-line-bytes %d: want a number of bytes (0: the default, %d)", maxLine, audit.DefaultMaxLineBytes)
			}
			rep, err := audit.Verify(files, audit.VerifyOptions{Keys: keys, RequireSignedTail: requireTail, RequireFinal: requireFin, Starts: anchors, MaxLineBytes: maxLine})
			if err != nil {
				return err
			}
			rep.WriteText(cmd.OutOrStdout())
			if !rep.OK() {
				return &exitCode{code: exitError, reported: true}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&pubkeys, "pubkey", nil, "PEM public key that verifies checkpoint signatures (repeatable)")
	cmd.Flags().StringArrayVar(&transitKeys, "transit-key", nil, "Vault transit ed25519 key MOUNT/KEY whose versions verify checkpoint signatures (VAULT_ADDR, VAULT_TOKEN; repeatable)")
	cmd.Flags().BoolVar(&requireTail, "require-signed-tail", false, "fail when lines follow a replica's last signed checkpoint")
	cmd.Flags().BoolVar(&requireFin, "require-final", false, "fail a chain not closed by its signed final checkpoint (for the files of replicas that have stopped; implies --require-signed-tail)")
	cmd.Flags().IntVar(&maxLine, "max-line-bytes", audit.DefaultMaxLineBytes, "longest line read; a longer one is a line_too_long break (raise it only if limits.max_header_bytes is over 2 MiB)")
	cmd.Flags().StringArrayVar(&starts, "start", nil, "REPLICA=SEQ[:PREV]: the replica's retained log starts at SEQ (older files deleted by retention); without it a chain must start at seq 1 (repeatable)")
	return cmd
}

func newAuditPubkeyCmd() *cobra.Command {
	var keyFile, transitKey string
	cmd := &cobra.Command{
		Use:   "pubkey --key FILE | --transit-key MOUNT/KEY",
		Short: "Print the public key (PEM) and key id of an audit checkpoint key",
		Long: `Print the public key (PEM) and key id of the checkpoint key in FILE
(audit.checkpoint.key_file), or of every version of an ed25519 key of Vault's
transit engine (audit.checkpoint.signer.vault_transit), read from the Vault at
VAULT_ADDR with VAULT_TOKEN (VAULT_CACERT: the CA of Vault's certificate).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var keys []ed25519.PublicKey
			switch {
			case (keyFile == "") == (transitKey == ""):
				return errors.New("audit pubkey: give --key FILE (audit.checkpoint.key_file) or --transit-key MOUNT/KEY (audit.checkpoint.signer.vault_transit)")
			case keyFile != "":
				s, err := audit.LoadKeyFile(keyFile)
				if err != nil {
					return err
				}
				keys = []ed25519.PublicKey{s.Public()}
			default:
				var err error
				if keys, err = transitPublicKeys(cmd.Context(), transitKey); err != nil {
					return fmt.Errorf("audit pubkey: --transit-key %s: %w", transitKey, err)
				}
			}
			out := cmd.OutOrStdout()
			for _, k := range keys {
				fmt.Fprintf(out, "# key_id %s\n", audit.KeyID(k))
				if _, err := out.Write(audit.MarshalPublicKey(k)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "the Ed25519 private key (PEM PKCS#8)")
	cmd.Flags().StringVar(&transitKey, "transit-key", "", "Vault transit ed25519 key MOUNT/KEY (VAULT_ADDR, VAULT_TOKEN)")
	return cmd
}

// transitPublicKeys reads every version's public key of the ed25519
// transit key MOUNT/KEY through the registered vault_transit checkpoint
// signer (the CLI knows no provider package), logging in with the token
// method: VAULT_ADDR, VAULT_TOKEN, and VAULT_CACERT when set.
func transitPublicKeys(ctx context.Context, spec string) ([]ed25519.PublicKey, error) {
	i := strings.LastIndexByte(spec, '/')
	if i <= 0 || i == len(spec)-1 {
		return nil, errors.New("want MOUNT/KEY, e.g. transit/credgate-audit")
	}
	server := map[string]any{"auth": map[string]any{"method": "token"}}
	if ca := os.Getenv("VAULT_CACERT"); ca != "" {
		server["ca_cert"] = ca
	}
	var node yaml.Node
	if err := node.Encode(map[string]any{"server": server, "mount": spec[:i], "key": spec[i+1:]}); err != nil {
		return nil, err
	}
	s, err := audit.LoadSigner(ctx, "vault_transit", &node)
	if err != nil {
		return nil, err
	}
	defer audit.CloseSigner(s)
	return audit.PublicKeys(s), nil
}
