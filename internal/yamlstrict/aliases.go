package yamlstrict

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// MinAliasBudget is the number of nodes aliases may add to a document
// whatever its size: AliasExpansion allows aliases to add as many nodes
// as the document holds as written, or this many, whichever is more.
const MinAliasBudget = 1_000_000

// AliasExpansion returns a Problem, at the alias that crosses the
// budget, when the aliases in n's tree (*name, standing for the value
// of an anchor &name) make the document, expanded, larger than twice
// its written size or its written size plus MinAliasBudget nodes,
// whichever is more; nil otherwise. kind names the file ("policy",
// "gateway config").
//
// It exists because credgate parses its files into a yaml.Node tree,
// where an alias is one node however much it stands for, and then walks
// that tree following aliases (the policy's parser, UnknownKeys, the
// gateway config's checks): yaml.v3's own guard against excessive
// aliasing applies only when it decodes into Go values, after those
// walks. A file of a few kilobytes whose aliases nest (a list of aliases
// to a mapping holding a list of aliases: the "billion laughs") would
// otherwise hold a load or reload, and credgate validate, for minutes or
// more with an error list thousands of times the file's size. Checked
// first, it bounds every later walk by the size of the file. It counts
// each anchor's expanded size once (memoised), so it runs in time linear
// in the written tree.
func AliasExpansion(n *yaml.Node, kind string) *Problem {
	if n == nil {
		return nil
	}
	a := &aliasCount{size: map[*yaml.Node]uint64{}}
	written := a.written(n, 0)
	budget := max(written, MinAliasBudget)
	var added uint64
	var at *yaml.Node
	var walk func(n *yaml.Node, depth int) bool
	walk = func(n *yaml.Node, depth int) bool {
		if n == nil || depth > maxDepth {
			return false
		}
		if n.Kind == yaml.AliasNode {
			added = satAdd(added, a.expanded(n.Alias, 0))
			if added > budget {
				at = n
				return true
			}
			return false
		}
		for _, c := range n.Content {
			if walk(c, depth+1) {
				return true
			}
		}
		return false
	}
	if !walk(n, 0) {
		return nil
	}
	return &Problem{Line: at.Line, Col: at.Column, Msg: AliasExpansionMessage(kind, budget)}
}

// AliasExpansionMessage is AliasExpansion's error for a file of that
// kind and its budget of added nodes.
func AliasExpansionMessage(kind string, budget uint64) string {
	return fmt.Sprintf("YAML aliases (*name) expand this %s by more than %d values, more than it holds as written (aliases that repeat aliases multiply: a \"billion laughs\"); write the values out, or alias fewer, larger values", kind, budget)
}

// maxDepth bounds the walks' recursion; yaml.v3 refuses documents
// nested far less deeply.
const maxDepth = 10_000

// aliasCount counts nodes, memoising each anchor's expanded size.
type aliasCount struct {
	size map[*yaml.Node]uint64
}

// written is the number of nodes in n's tree as written, an alias
// counting as one.
func (a *aliasCount) written(n *yaml.Node, depth int) uint64 {
	if n == nil || depth > maxDepth {
		return 0
	}
	s := uint64(1)
	if n.Kind == yaml.AliasNode {
		return s
	}
	for _, c := range n.Content {
		s = satAdd(s, a.written(c, depth+1))
	}
	return s
}

// expanded is the number of nodes n's tree stands for with every alias
// replaced by its anchor's value.
func (a *aliasCount) expanded(n *yaml.Node, depth int) uint64 {
	if n == nil || depth > maxDepth {
		return 0
	}
	if n.Kind == yaml.AliasNode {
		return a.expanded(n.Alias, depth+1)
	}
	if s, ok := a.size[n]; ok {
		return s
	}
	// A value that contains itself (which yaml.v3 refuses to parse)
	// would count as nothing rather than recurse.
	a.size[n] = 0
	s := uint64(1)
	for _, c := range n.Content {
		s = satAdd(s, a.expanded(c, depth+1))
	}
	a.size[n] = s
	return s
}

// satAdd adds without wrapping around.
func satAdd(x, y uint64) uint64 {
	if s := x + y; s >= x {
		return s
	}
	return ^uint64(0)
}
