package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/policy"
)

// fileKind is what a YAML file given to validate or explain holds.
type fileKind int

const (
	kindPolicy fileKind = iota
	kindConfig
	// kindUnparsed is a file that is not YAML: either parser reports
	// its syntax error, in the same words (yamlstrict.Syntax.Problem).
	kindUnparsed
)

// Top-level keys that only one kind of file has: a policy's, and every
// key of gateway.Config (from its yaml tags, so a new section counts).
var (
	policyKeys = []string{"workloads", "destinations", "credentials", "rules", "default"}
	configKeys = gatewayConfigKeys()
)

// gatewayConfigKeys lists the top-level keys of a gateway config.
func gatewayConfigKeys() []string {
	var keys []string
	t := reflect.TypeFor[gateway.Config]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// readInput reads the file given with -c, with an error that names it
// and the flag.
func readInput(path string) ([]byte, error) {
	data, err := cfgfile.Read(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once, first
		}
		return nil, fmt.Errorf("%s: cannot read it (%w); give the gateway config or policy file with -c", path, err)
	}
	return data, nil
}

// detectKind tells a gateway config from a policy by its top-level keys.
// A file that does not parse is kindUnparsed, and one that is not a YAML
// mapping is treated as a policy, so that the loader reports the problem
// with its position.
func detectKind(path string, data []byte) (fileKind, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return kindUnparsed, nil
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return kindPolicy, nil
	}
	var isPolicy, isConfig bool
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i].Value
		isPolicy = isPolicy || slices.Contains(policyKeys, k)
		isConfig = isConfig || slices.Contains(configKeys, k)
	}
	switch {
	case isConfig && !isPolicy:
		return kindConfig, nil
	case isPolicy && !isConfig:
		return kindPolicy, nil
	case isConfig && isPolicy:
		return 0, fmt.Errorf("%s: has both gateway config keys (listen, policy, ca, ...) and policy keys (workloads, rules, ...); keep them in two files", path)
	}
	return 0, fmt.Errorf("%s: neither a gateway config (no policy: key) nor a policy (no rules: key)", path)
}

// loaded is what validate and explain work on.
type loaded struct {
	kind       fileKind
	config     *gateway.Config // nil for a policy file
	policyPath string
	policy     *policy.Policy
}

// load reads path as a gateway config or a policy. A config's policy is
// loaded too. The caller closes l.policy.
func load(ctx context.Context, path string) (*loaded, error) {
	data, err := readInput(path)
	if err != nil {
		return nil, err
	}
	kind, err := detectKind(path, data)
	if err != nil {
		return nil, err
	}
	if kind == kindUnparsed {
		kind = kindPolicy // its syntax error, as serve words it too
	}
	l := &loaded{kind: kind, policyPath: path}
	if kind == kindConfig {
		cfg, err := loadConfig(path)
		if err != nil {
			return nil, err
		}
		l.config = cfg
		l.policyPath = cfg.PolicyPath()
		l.policy, err = policy.LoadFile(ctx, l.policyPath)
		if err != nil {
			return l, err
		}
		return l, nil
	}
	l.policy, err = policy.Parse(ctx, path, data)
	if err != nil {
		return l, err
	}
	return l, nil
}

// errorLines splits err into one message per line: a policy ErrorList
// prints one "FILE:LINE:COL: message" line per problem.
func errorLines(err error) []string {
	return strings.Split(strings.TrimRight(err.Error(), "\n"), "\n")
}
