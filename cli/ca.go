package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/credgate/credgate/gateway/mitm"
)

func newCACmd() *cobra.Command {
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Manage the interception CA",
	}
	var out string
	var permit []string
	initCmd := &cobra.Command{
		Use:   "init --out DIR [--permit DOMAIN|CIDR]...",
		Short: "Write a new interception CA (ECDSA P-256) into DIR",
		Long: `Write a new interception CA into DIR: ca.pem (the certificate clients trust)
and ca-key.pem (the private key, mode 0600, which only the gateway reads).
Existing files are never overwritten.

--permit limits what the CA can sign (X.509 name constraints, critical):
each DOMAIN covers itself and every name below it, each CIDR its addresses;
without a CIDR no IP address is permitted. Clients refuse a certificate
outside them even if the key is stolen, and the gateway refuses a CONNECT
to a host outside them that it would intercept (403 ca_not_permitted).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("ca init: --out DIR is required")
			}
			for _, name := range []string{mitm.CertFile, mitm.KeyFile} {
				p := filepath.Join(out, name)
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("ca init: %s already exists and is never overwritten; keep using it, or remove %s and %s (clients trusting the old ca.pem must then trust the new one), or choose another directory with --out",
						p, filepath.Join(out, mitm.CertFile), filepath.Join(out, mitm.KeyFile))
				}
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("ca init: %w", err)
			}
			certPath, keyPath, err := mitm.WriteCAWith(out, mitm.CAOptions{Permit: permit})
			if err != nil {
				// mitm's errors start with the package name, which
				// means nothing to the user of this command.
				return fmt.Errorf("ca init: %s", strings.TrimPrefix(err.Error(), "mitm: "))
			}
			fmt.Fprintf(cmd.OutOrStdout(), `wrote %s (certificate: give this to clients)
wrote %s (private key, mode 0600: only the gateway reads it)

Point the gateway at them in its config:
  ca:
    cert: %s
    key: %s

Make clients trust the certificate, for example:
  curl:    curl --cacert %[1]s ...   or  CURL_CA_BUNDLE=%[1]s
  Python:  REQUESTS_CA_BUNDLE=%[1]s  (requests)  SSL_CERT_FILE=%[1]s  (urllib, ssl)
  Node:    NODE_EXTRA_CA_CERTS=%[1]s
  Go:      SSL_CERT_FILE=%[1]s  (replaces the system roots for that process)
  Java:    keytool -importcert -noprompt -alias credgate -file %[1]s -keystore credgate.jks -storepass changeit
           java -Djavax.net.ssl.trustStore=credgate.jks -Djavax.net.ssl.trustStorePassword=changeit ...
Keep ca-key.pem secret: anyone holding it can impersonate any site to clients that trust ca.pem.
`, certPath, keyPath, certPath, keyPath)
			return nil
		},
	}
	initCmd.Flags().StringVar(&out, "out", "", "directory to write ca.pem and ca-key.pem into (created if missing)")
	initCmd.Flags().StringSliceVar(&permit, "permit", nil, "limit the CA to this DNS domain (and names below it) or IP prefix; repeat or separate with commas")
	ca.AddCommand(initCmd)
	return ca
}
