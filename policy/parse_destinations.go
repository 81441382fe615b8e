package policy

import (
	"fmt"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/yamlstrict"
)

func (ps *parser) parseDestinations(f field) map[string]*destination {
	ps.dests = map[string]*destination{}
	for _, e := range ps.entries(f.val, "destinations") {
		name := e.key.Value
		d := &destination{name: name, version: settingsHash("destination", e.val)}
		ps.dests[name] = d
		if msg := checkName(name); msg != "" {
			ps.errorf(e.key, "destination name %s", msg)
			continue
		}
		what := fmt.Sprintf("destination %q", name)
		if body := deref(e.val); !isNull(body) && body.Kind != yaml.MappingNode {
			ps.errorf(body, "%s must be a mapping with hosts and optionally ports, allow_private, path_case, encoded_slashes, encoded_delimiters and mode", what)
			continue
		}
		fs := ps.fields(e.val, what, "hosts", "ports", "allow_private", "path_case", "encoded_slashes", "encoded_delimiters", "mode")
		if h, ok := fs["hosts"]; ok {
			vals, nodes := ps.list(h.val, what+" hosts", false)
			for i, v := range vals {
				hp, msg := parseHostPattern(v)
				if msg != "" {
					ps.errorf(nodes[i], "%s: %s", what, msg)
					continue
				}
				d.hosts = append(d.hosts, hp)
			}
		} else {
			ps.errorf(e.key, "%s has no hosts; add hosts: [api.example.com]", what)
		}
		if pf, ok := fs["ports"]; ok {
			vals, nodes := ps.list(pf.val, what+" ports", false)
			for i, v := range vals {
				if _, err := strconv.Atoi(v); err == nil && nodes[i].Tag == "!!str" {
					ps.errorf(nodes[i], "%s: port %q is quoted; write it as a plain number", what, v)
					continue
				}
				if !yamlstrict.PlainInt(nodes[i]) {
					ps.errorf(nodes[i], "%s: port: %s", what, yamlstrict.NotPlainInt)
					continue
				}
				var n int
				if nodes[i].Tag != "!!int" || nodes[i].Decode(&n) != nil || n < 1 || n > 65535 {
					ps.errorf(nodes[i], "%s: port %q must be a number from 1 to 65535", what, v)
					continue
				}
				if !slices.Contains(d.ports, n) {
					d.ports = append(d.ports, n)
				}
			}
		}
		if ap, ok := fs["allow_private"]; ok {
			d.allowPrivate = ps.boolean(ap.val, what+" allow_private")
		}
		if es, ok := fs["encoded_slashes"]; ok {
			d.encodedSlashes = ps.boolean(es.val, what+" encoded_slashes")
		}
		if ed, ok := fs["encoded_delimiters"]; ok {
			d.encodedDelimiters = ps.boolean(ed.val, what+" encoded_delimiters")
		}
		if m, ok := fs["mode"]; ok && ps.parseMode(m, what) {
			ps.observeDests = append(ps.observeDests, d)
		}
		if pc, ok := fs["path_case"]; ok {
			if v, ok := ps.str(pc.val, what+" path_case"); ok {
				switch v {
				case "sensitive":
				case "insensitive":
					d.foldCase = true
				default:
					ps.errorf(deref(pc.val), "%s: path_case %q must be sensitive (the default) or insensitive (the API routes /V1/X and /v1/x alike)", what, v)
				}
			}
		}
	}
	return ps.dests
}
