package policy

import (
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/batch"
)

// BatchMark marks paths of an inject rule's destination as a batch
// endpoint the gateway's table (internal/batch.Lookup) does not know: a
// request of the rule to one of them has its sub-requests, spelled in
// Format, judged as every batch's are (the rule's `inject: {batch:
// {format: odata-json, paths: [/odata/batch]}}`).
type BatchMark struct {
	// Format names how the endpoint spells its sub-requests (a
	// batch.Format).
	Format string
	paths  []glob
}

// Matches reports whether path, decoded and canonical, is one of the
// marked paths.
func (m *BatchMark) Matches(path string) bool {
	if m == nil {
		return false
	}
	for i := range m.paths {
		if m.paths[i].match(path) {
			return true
		}
	}
	return false
}

// parseBatchMark reads an inject block's batch setting.
func (ps *parser) parseBatchMark(f field, what string) *BatchMark {
	what += " inject batch"
	formats := make([]string, 0, 8)
	for _, f := range batch.Formats() {
		formats = append(formats, string(f))
	}
	if deref(f.val).Kind != yaml.MappingNode {
		ps.errorf(deref(f.val), "%s must be a mapping like {format: odata-json, paths: [/odata/$batch]} (formats: %s)", what, strings.Join(formats, ", "))
		return nil
	}
	fs := ps.fields(f.val, what, "format", "paths")
	ff, ok1 := fs["format"]
	pf, ok2 := fs["paths"]
	if !ok1 || !ok2 {
		ps.errorf(deref(f.val), "%s needs format and paths, like {format: odata-json, paths: [/odata/$batch]}", what)
		return nil
	}
	format, ok := ps.str(ff.val, what+" format")
	if !ok {
		return nil
	}
	if !slices.Contains(formats, format) {
		ps.errorf(deref(ff.val), "%s: unknown format %q; use one of %s", what, format, strings.Join(formats, ", "))
		return nil
	}
	m := &BatchMark{Format: format}
	vals, nodes := ps.list(pf.val, what+" paths", false)
	for i, v := range vals {
		g, msg := compileGlob(v)
		if msg != "" {
			ps.errorf(nodes[i], "%s: %s", what, msg)
			continue
		}
		m.paths = append(m.paths, g)
	}
	return m
}
