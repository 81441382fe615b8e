package cli

import (
	"github.com/credgate/credgate/gateway"
)

// loadConfig is gateway.LoadConfig plus Config.CheckFiles: what serve,
// validate and explain load, so that validate fails where serve would
// (a missing or unparsable file, an unset variable), with the same
// message, at the line that names the file.
func loadConfig(path string) (*gateway.Config, error) {
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.CheckFiles(); err != nil {
		return nil, err
	}
	return cfg, nil
}
