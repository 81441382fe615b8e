package cli

import (
	"fmt"

	"github.com/credgate/credgate/gateway"
)

// loadConfig is gateway.LoadConfig plus Config.CheckFiles: what serve,
// validate and explain load, so that validate fails where serve would
// (a missing or unparsable file, an unset variable), with the same
// message, at the line that names the file.
func loadConfig(path string) (*gateway.Config, error) {
	data, err := readInput(path)
	if err != nil {
		return nil, err
	}
	if kind, err := detectKind(path, data); err == nil && kind == kindPolicy {
		return nil, fmt.Errorf("%s: this is a policy (workloads, rules, ...), not a gateway config; give the gateway config with -c, and name this file in its policy: key (credgate validate -c %s checks the policy alone)", path, path)
	}
	cfg, err := gateway.ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	if err := cfg.CheckFiles(); err != nil {
		return nil, err
	}
	return cfg, nil
}
