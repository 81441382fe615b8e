package yamlstrict

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// MergeKeys returns one Problem per YAML merge key ("<<", the !!merge
// tag) anywhere in n's tree, in document order, at the key, with the
// message that says what to write instead; kind names the file ("policy",
// "gateway config"). Neither the policy nor the gateway config accepts
// merge keys: the policy's parser reads its mappings key by key, where a
// merged key would be silently missing, and in both files the position
// of a merged value (which validate, serve and the change report on
// SIGHUP name) is the anchor's, not the key's. Aliases are not followed:
// an anchor's content is visited where it is written, and an alias to a
// whole value (*name) stays allowed.
func MergeKeys(n *yaml.Node, kind string) []Problem {
	var out []Problem
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		if n == nil || depth > 1000 || n.Kind == yaml.AliasNode {
			return
		}
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
					out = append(out, Problem{Line: k.Line, Col: k.Column, Msg: MergeKeyMessage(kind)})
				}
			}
		}
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return out
}

// MergeKeyMessage is the error for a merge key in a file of that kind.
func MergeKeyMessage(kind string) string {
	return fmt.Sprintf("YAML merge keys (<<) are not supported in a %s; write the fields out (an alias such as *name may stand for a whole value)", kind)
}
