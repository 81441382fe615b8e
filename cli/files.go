package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/gateway"
)

// configFile is one file a gateway config names, with the key path that
// names it and what writes it.
type configFile struct {
	keys []string
	path string
	hint string
}

// checkConfigFiles reports, as "FILE:LINE:COL: message" lines, every file
// the gateway config at path names that does not exist or cannot be read,
// so that validate fails where serve would, and says where. data is the
// config's text (for positions); cfg is it loaded, with relative paths
// already resolved against the config's directory.
func checkConfigFiles(path string, data []byte, cfg *gateway.Config) error {
	files := []configFile{
		{[]string{"policy"}, cfg.Policy, "the policy file (workloads, destinations, credentials, rules)"},
		{[]string{"ca", "cert"}, cfg.CA.Cert, "write it with: credgate ca init --out DIR"},
		{[]string{"ca", "key"}, cfg.CA.Key, "write it with: credgate ca init --out DIR"},
		{[]string{"tls", "cert"}, cfg.TLS.Cert, "the TLS listener's certificate"},
		{[]string{"tls", "key"}, cfg.TLS.Key, "the TLS listener's private key"},
		{[]string{"tls", "client_ca"}, cfg.TLS.ClientCA, "the CA bundle client certificates are verified against"},
		{[]string{"upstream", "ca_bundle"}, cfg.Upstream.CABundle, "PEM certificates of the CAs upstream servers are verified against"},
		{[]string{"cache", "redis", "password_file"}, cfg.Cache.Redis.PasswordFile, "the Redis password"},
		{[]string{"cache", "redis", "tls", "ca"}, cfg.Cache.Redis.TLS.CA, "the CA of the Redis server's certificate"},
		{[]string{"cache", "redis", "tls", "cert"}, cfg.Cache.Redis.TLS.Cert, "the gateway's Redis client certificate"},
		{[]string{"cache", "redis", "tls", "key"}, cfg.Cache.Redis.TLS.Key, "the gateway's Redis client key"},
	}
	for _, k := range cfg.Cache.Redis.EncryptionKeys {
		if k.File != "" {
			files = append(files, configFile{[]string{"cache", "redis", "encryption_keys"}, k.File,
				"32 random bytes, base64: head -c32 /dev/urandom | base64 > FILE"})
		}
	}
	var root *yaml.Node
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) == nil && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	var errs []error
	for _, f := range files {
		if f.path == "" {
			continue
		}
		st, err := os.Stat(f.path)
		var msg string
		switch {
		case errors.Is(err, fs.ErrNotExist):
			msg = fmt.Sprintf("%s: %s does not exist (%s; a relative path is relative to the config file's directory)", keyName(f.keys), f.path, f.hint)
		case err != nil:
			msg = fmt.Sprintf("%s: %s cannot be read: %v", keyName(f.keys), f.path, errors.Unwrap(err))
		case st.IsDir():
			msg = fmt.Sprintf("%s: %s is a directory; name the file in it (%s)", keyName(f.keys), f.path, f.hint)
		default:
			fh, err := os.Open(f.path)
			if err != nil {
				msg = fmt.Sprintf("%s: %s cannot be read: %v (the gateway's user must be able to read it)", keyName(f.keys), f.path, errors.Unwrap(err))
			} else {
				fh.Close()
				continue
			}
		}
		line, col := keyPosition(root, f.keys)
		errs = append(errs, &gateway.ConfigError{File: path, Line: line, Col: col, Msg: msg})
	}
	return errors.Join(errs...)
}

func keyName(keys []string) string { return strings.Join(keys, ".") }

// loadConfig is gateway.LoadConfig plus checkConfigFiles: what serve,
// validate and explain load, so all three report a missing file the same
// way, at the line that names it.
func loadConfig(path string) (*gateway.Config, error) {
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := checkConfigFiles(path, data, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// keyPosition is the line and column of the value at keys under the
// mapping n (as deep as the keys are found); 0, 0 without a document.
func keyPosition(n *yaml.Node, keys []string) (int, int) {
	if n == nil {
		return 0, 0
	}
	line, col := n.Line, n.Column
	for _, k := range keys {
		if n.Kind != yaml.MappingNode {
			break
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				n = n.Content[i+1]
				line, col = n.Line, n.Column
				found = true
				break
			}
		}
		if !found {
			break
		}
	}
	return line, col
}
