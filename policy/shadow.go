package policy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Shadowed returns one warning per rule that can never decide a request
// because an earlier rule always does first, at the later rule's line,
// naming both rules and the fix; nil when there is none. Decide takes the
// first rule, in file order, that matches a request (a more specific rule
// later in the file does not win), so a rule B is shadowed by an earlier
// rule A when A has no when: condition and matches every request B can
// match:
//
//   - from: A names every caller B names (or "*", which covers every
//     named workload; anonymous is covered only by anonymous);
//   - to: each of B's destinations is one of A's, or each of its hosts is
//     covered by one of A's destinations (the same name, or a wildcard
//     over it) on the same ports;
//   - methods: A has none or lists each of B's (an inject rule without
//     methods does not take TRACE, so it does not cover a TRACE of B);
//   - paths: A has none, or each of B's globs is within one of A's
//     (decided exactly: every path B's glob matches, A's matches), with
//     case folding taken into account (a B that matches case-insensitively,
//     a deny rule or one to a path_case: insensitive destination, is
//     covered only by an A that does on every destination) and a deny
//     rule's trailing-slash forms (a deny B with paths is covered only by
//     a deny A or one without paths).
//
// Only such provable cases are reported: a rule that some requests reach
// is not, even if most are taken earlier. They are warnings, not errors:
// the policy is valid and the gateway runs it as written.
func (p *Policy) Shadowed() ErrorList {
	var out ErrorList
	for _, b := range p.rules {
		if len(b.to) == 0 || len(b.to[0].hosts) == 0 {
			continue
		}
		// The rules that may cover b's first host, earlier ones first:
		// the index already merged every rule listing it or a wildcard
		// over it.
		h := b.to[0].hosts[0]
		var cands []candidate
		if h.wildcard {
			cands = p.index.wild[h.name]
		} else {
			cands = p.index.lookup(h.name, h.ip)
		}
		for _, c := range cands {
			a := c.r
			if a.index >= b.index {
				break
			}
			if shadows(a, b) {
				out = append(out, &Error{File: p.file, Line: b.line, Col: b.col,
					Msg: fmt.Sprintf("warning: %s can never decide a request: %s, line %d, comes first and matches every request %q matches (from, to, methods and paths), and has no when: condition; remove rule %q, or move it above rule %q if it should take precedence (rules are tried in file order)",
						b.label(), a.label(), a.line, b.name, b.name, a.name)})
				break
			}
		}
	}
	return out
}

// shadows reports whether a, earlier in the file, decides every request
// that b matches.
func shadows(a, b *rule) bool {
	return a.cond == nil && coversFrom(a, b) && coversTo(a, b) && coversMethods(a, b) && coversPaths(a, b)
}

func coversFrom(a, b *rule) bool {
	if b.fromAnon && !a.fromAnon || b.fromAny && !a.fromAny {
		return false
	}
	if a.fromAny {
		return true
	}
	for _, w := range b.from {
		if !slices.Contains(a.from, w) {
			return false
		}
	}
	return true
}

func coversTo(a, b *rule) bool {
	for _, db := range b.to {
		if slices.Contains(a.to, db) {
			continue
		}
		for _, hb := range db.hosts {
			if !slices.ContainsFunc(a.to, func(da *destination) bool { return coversHostOf(da, db, hb) }) {
				return false
			}
		}
	}
	return true
}

// coversHostOf reports whether da admits host hb on every port db admits
// it, treating encoded slashes and delimiters alike. (Path case is
// coversPaths'.)
func coversHostOf(da, db *destination, hb hostPattern) bool {
	if da.encodedSlashes != db.encodedSlashes || da.encodedDelimiters != db.encodedDelimiters || (da.ports == nil) != (db.ports == nil) {
		return false
	}
	for _, port := range db.ports {
		if !slices.Contains(da.ports, port) {
			return false
		}
	}
	return slices.ContainsFunc(da.hosts, func(ha hostPattern) bool { return coversHost(ha, hb) })
}

// coversHost reports whether every host hb matches, ha matches.
func coversHost(ha, hb hostPattern) bool {
	switch {
	case !ha.wildcard:
		return !hb.wildcard && ha.name == hb.name && ha.ip == hb.ip
	case hb.ip:
		return false
	default: // "*.s" covers x.s, *.s and *.x.s
		return hb.wildcard && hb.name == ha.name || strings.HasSuffix(hb.name, "."+ha.name)
	}
}

func coversMethods(a, b *rule) bool {
	// takes reports whether r takes method m (Decide's method test).
	takes := func(r *rule, m string) bool {
		return r.matchesMethod(m) && !(m == http.MethodTrace && r.act == ruleInject && !r.namesMethod(m))
	}
	if b.methods == nil {
		// b takes every method (but TRACE when it is an inject rule).
		return a.methods == nil && (a.act != ruleInject || b.act == ruleInject)
	}
	for _, m := range b.methods {
		if takes(b, m) && !takes(a, m) {
			return false
		}
	}
	return true
}

func coversPaths(a, b *rule) bool {
	if a.paths == nil {
		return true
	}
	if b.paths == nil {
		return false
	}
	if b.act == ruleDeny && a.act != ruleDeny {
		// b also matches the trailing-slash forms and other cases.
		return false
	}
	// Does b match case-insensitively on some destination, and does a on
	// every one?
	bFolds := b.act == ruleDeny || slices.ContainsFunc(b.to, func(d *destination) bool { return d.foldCase })
	aFolds := a.act == ruleDeny || !slices.ContainsFunc(a.to, func(d *destination) bool { return !d.foldCase })
	if bFolds && !aFolds {
		return false
	}
	for i := range b.paths {
		// Every path b's glob matches is matched by a's glob exactly when
		// a's glob matches b's with each '*' replaced by a byte no glob
		// contains (NUL): a's stars must absorb them, and so absorb
		// anything b's stars match.
		witness := strings.ReplaceAll(b.paths[i].src, "*", "\x00")
		if !slices.ContainsFunc(a.paths, func(g glob) bool {
			if bFolds {
				return g.matchFolded(foldPath(witness))
			}
			return g.match(witness)
		}) {
			return false
		}
	}
	return true
}
