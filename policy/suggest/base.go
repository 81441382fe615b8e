package suggest

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// readBase reads the base policy's YAML. It does not build the base's
// providers (which may log in to Vault, say): the caller validates the
// base as it sees fit, and the suggested policy is validated on its own.
func readBase(opts Options) (*base, error) {
	if opts.Base == nil {
		return nil, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(opts.Base, &doc); err != nil {
		return nil, fmt.Errorf("suggest: base policy %s: %w", opts.BaseFile, err)
	}
	b := &base{workloads: map[string]*yaml.Node{}, credentials: map[string]*yaml.Node{},
		injects: map[string]*yaml.Node{}, plaintext: map[string]bool{}, injCred: map[string]string{}, injFrom: map[string][]string{}}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	for k, v := range pairs(root) {
		switch k {
		case "workloads":
			for name, n := range pairs(v) {
				b.workloads[name] = n
			}
		case "credentials":
			for name, n := range pairs(v) {
				b.credentials[name] = n
			}
		case "destinations":
			for _, n := range pairs(v) {
				var d baseDest
				for dk, dv := range pairs(n) {
					switch dk {
					case "hosts":
						for _, h := range dv.Content {
							d.hosts = append(d.hosts, strings.ToLower(strings.TrimSuffix(h.Value, ".")))
						}
					case "allow_private", "path_case", "encoded_slashes", "encoded_delimiters":
						d.settings = append(d.settings, &yaml.Node{Kind: yaml.ScalarNode, Value: dk}, dv)
					}
				}
				b.dests = append(b.dests, d)
			}
		case "rules":
			for _, rn := range v.Content {
				fs := map[string]*yaml.Node{}
				for rk, rv := range pairs(rn) {
					fs[rk] = rv
				}
				name, inj := fs["name"], fs["inject"]
				if name == nil || inj == nil {
					continue
				}
				b.injects[name.Value] = inj
				for ik, iv := range pairs(inj) {
					if ik == "credential" {
						b.injCred[name.Value] = iv.Value
					}
				}
				if pt := fs["plaintext"]; pt != nil && pt.Value == "true" {
					b.plaintext[name.Value] = true
				}
				if from := fs["from"]; from != nil {
					for from.Kind == yaml.AliasNode {
						from = from.Alias
					}
					if from.Kind == yaml.ScalarNode {
						b.injFrom[name.Value] = []string{from.Value}
					}
					for _, f := range from.Content {
						b.injFrom[name.Value] = append(b.injFrom[name.Value], f.Value)
					}
				}
			}
		}
	}
	return b, nil
}

// pairs iterates over a mapping node's entries (aliases resolved).
func pairs(n *yaml.Node) func(func(string, *yaml.Node) bool) {
	return func(yield func(string, *yaml.Node) bool) {
		for n != nil && n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			v := n.Content[i+1]
			for v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			if !yield(n.Content[i].Value, v) {
				return
			}
		}
	}
}

// destFor returns the first base destination listing host (exactly or
// by a "*." wildcard), or nil.
func (b *base) destFor(host string) *baseDest {
	for i := range b.dests {
		for _, h := range b.dests[i].hosts {
			if h == host || strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:]) {
				return &b.dests[i]
			}
		}
	}
	return nil
}
