package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

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
		requireTail bool
	)
	cmd := &cobra.Command{
		Use:   "verify [--pubkey FILE]... [--require-signed-tail] FILE...",
		Short: "Check the hash chains and signed checkpoints of audit files",
		Long: `Check the audit lines in FILE... (rotated files in any order; lines of several
replicas interleaved in a file, or one file per replica): every replica's
lines must be numbered without gap or repeat, in order, each hashing to the
next one's prev; with --pubkey, every checkpoint's Ed25519 signature must
verify against one of the keys (PEM "PUBLIC KEY" files).

Each break is printed as "BREAK FILE:LINE: KIND: replica ID seq N: what",
KIND one of edited, deleted, inserted, reordered, unchained, bad_checkpoint
(and unsigned_tail with --require-signed-tail); then one summary line per
replica with the last verified and last signed position.

Lines after a replica's last signed checkpoint are an "unsigned tail",
verified by the chain only; they fail only with --require-signed-tail.

Exit 0 when everything verifies, 1 on any break or error.`,
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
			if requireTail && len(keys) == 0 {
				return errors.New("audit verify: --require-signed-tail needs --pubkey FILE (the checkpoint key's public half)")
			}
			rep, err := audit.Verify(files, audit.VerifyOptions{Keys: keys, RequireSignedTail: requireTail})
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
	cmd.Flags().BoolVar(&requireTail, "require-signed-tail", false, "fail when lines follow a replica's last signed checkpoint")
	return cmd
}

func newAuditPubkeyCmd() *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "pubkey --key FILE",
		Short: "Print the public key (PEM) and key id of an audit checkpoint key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" {
				return errors.New("audit pubkey: --key FILE is required (audit.checkpoint.key_file)")
			}
			s, err := audit.LoadKeyFile(keyFile)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "# key_id %s\n", audit.KeyID(s.Public()))
			_, err = out.Write(audit.MarshalPublicKey(s.Public()))
			return err
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "the Ed25519 private key (PEM PKCS#8)")
	return cmd
}
