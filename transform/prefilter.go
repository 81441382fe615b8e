package transform

import "bytes"

// maxRare is the most rare bytes a prefilter looks for: each is one pass
// of bytes.IndexByte (vectorised by the runtime) over the text, so a set
// of needles that needs more is searched by Wu-Manber alone.
const maxRare = 4

// maxRareCost is the highest summed byteCost of a prefilter's bytes: past
// it the candidates they yield would cost more than a Wu-Manber scan.
const maxRareCost = 600

// prefilter finds match candidates with bytes.IndexByte: every needle
// holds one of a few bytes chosen for being rare in HTTP bodies (JSON,
// forms, text), at a known offset, so text between two occurrences of
// those bytes cannot hold the start of a match and is skipped at vector
// speed. A few needles (placeholders, which share their prefix; the forms
// of one secret) usually need one to three such bytes.
type prefilter struct {
	// rare are the bytes looked for; cands[k] are the needles holding
	// rare[k], and where.
	rare  []byte
	cands [][]candidate
	// maxOff is the largest offset of a rare byte in its needle.
	maxOff int
	// perVisit is how many bytes of text one visited occurrence of a
	// rare byte may stand for before the search goes on with Wu-Manber
	// (prefiltered): eight of its steps, each of up to the shortest
	// needle's length minus one. A visit (a call of bytes.IndexByte, the
	// candidates' checks) costs about as much as eight steps: 7.7 plus
	// 0.26 per candidate in BenchmarkMatcherSearch. In binary bodies
	// (archives, images: every byte as frequent as any other) each rare
	// byte occurs every 256 bytes, which for the 48-byte forms of a hex
	// token made the prefilter three times slower than Wu-Manber
	// (BenchmarkMatcherSearch/forms-binary).
	perVisit int
}

// candidate is a needle (an index into matcher.needles) whose byte at off
// is one of the prefilter's rare bytes.
type candidate struct {
	needle, off int
}

// newPrefilter chooses the rare bytes for needles (none empty) greedily:
// each time the byte that covers the most needles not yet covered per
// unit of byteCost. It returns nil when the needles need more than
// maxRare bytes, or bytes too common to be worth it.
func newPrefilter(needles []needle) *prefilter {
	covered := make([]bool, len(needles))
	left := len(needles)
	var rare []byte
	cost := 0
	for left > 0 {
		if len(rare) == maxRare {
			return nil
		}
		var count [256]int
		for i, n := range needles {
			if covered[i] {
				continue
			}
			var in [256]bool
			for _, c := range n.find {
				if !in[c] {
					in[c] = true
					count[c]++
				}
			}
		}
		best, bestScore := -1, 0.0
		for c, k := range count {
			if k == 0 {
				continue
			}
			if s := float64(k) / float64(byteCost(byte(c))); best < 0 || s > bestScore {
				best, bestScore = c, s
			}
		}
		rare = append(rare, byte(best))
		cost += byteCost(byte(best))
		for i, n := range needles {
			if !covered[i] && bytes.IndexByte(n.find, byte(best)) >= 0 {
				covered[i] = true
				left--
			}
		}
	}
	if cost > maxRareCost {
		return nil
	}
	p := &prefilter{rare: rare, cands: make([][]candidate, len(rare)), perVisit: 8 * max(1, len(needles[len(needles)-1].find)-1)}
	for i, n := range needles {
		// The cheapest chosen byte the needle holds, at its first offset.
		k, off := -1, 0
		for j, c := range rare {
			if o := bytes.IndexByte(n.find, c); o >= 0 && (k < 0 || byteCost(c) < byteCost(rare[k])) {
				k, off = j, o
			}
		}
		p.cands[k] = append(p.cands[k], candidate{needle: i, off: off})
		p.maxOff = max(p.maxOff, off)
	}
	return p
}

// byteCost estimates what looking for c costs: one pass over the text
// (the constant) plus a verification for each occurrence, taken from how
// often c appears in typical HTTP bodies, in occurrences per 10,000
// bytes. A guess is enough: search falls back to Wu-Manber when the text
// proves it wrong (see matcher.first).
func byteCost(c byte) int {
	const pass = 50
	switch {
	case c == ' ':
		return pass + 1500
	case 'a' <= c && c <= 'z':
		// English letter frequency, most common first.
		const order = "etaoinshrdlcumwfgypbvkjxqz"
		return pass + 900 - 34*bytes.IndexByte([]byte(order), c)
	case '0' <= c && c <= '9':
		return pass + 300
	case c == '"' || c == ':' || c == ',' || c == '.' || c == '\n':
		return pass + 250
	case c == '{' || c == '}' || c == '-' || c == '/' || c == '=' || c == '&' || c == '\t' || c == '\r':
		return pass + 120
	case c == '_': // snake_case keys and identifiers
		return pass + 150
	case c == '[' || c == ']' || c == '%' || c == '+' || c == '\'' || c == '(' || c == ')' || c == ';' || c == '\\':
		return pass + 60
	case 'A' <= c && c <= 'Z':
		const order = "ETAOINSHRDLCUMWFGYPBVKJXQZ"
		return pass + 50 - bytes.IndexByte([]byte(order), c)
	case c >= 0x80:
		return pass + 30 // UTF-8 of non-English text
	case c < 0x20 || c == 0x7f:
		return pass + 1
	}
	return pass + 15 // other punctuation
}

// prefiltered is matcher.first through m's prefilter. It visits the rare
// bytes' occurrences in order and verifies each needle they stand for;
// once a match is found, only occurrences up to maxOff past its start can
// still yield an earlier (or, at the same start, longer) one. When
// candidates fail too often (text full of the "rare" bytes), it searches
// the rest of b with m.scan, and reports that it gave way.
func (m *matcher) prefiltered(b []byte) (at, which int, gaveWay bool) {
	p, needles := m.pf, m.needles
	rare := p.rare
	// next[k] is the next occurrence of rare[k] not yet visited, or, when
	// miss[k], the end of the stretch searched in vain: a byte is looked
	// for a window at a time, so that one absent from the text does not
	// cost a pass over all of it for each match.
	var next [maxRare]int
	var miss [maxRare]bool
	for k, c := range rare {
		next[k], miss[k] = indexWithin(b, 0, c)
	}
	at, which = -1, -1
	bound := len(b) // occurrences at or past bound cannot matter
	fails, visits := 0, 0
	for {
		k := 0
		for j := 1; j < len(rare); j++ {
			if next[j] < next[k] {
				k = j
			}
		}
		pos := next[k]
		if pos >= bound {
			return at, which, false
		}
		if miss[k] {
			next[k], miss[k] = indexWithin(b, pos, rare[k])
			continue
		}
		visits++
		for _, c := range p.cands[k] {
			s := pos - c.off
			if s < 0 || at >= 0 && (s > at || s == at && c.needle > which) {
				continue
			}
			if bytes.HasPrefix(b[s:], needles[c.needle].find) {
				at, which = s, c.needle
				bound = min(bound, s+p.maxOff+1)
			} else {
				fails++
			}
		}
		next[k], miss[k] = indexWithin(b, pos+1, rare[k])
		// More than one failed candidate per 16 bytes (as bytes.Index
		// tolerates), or visits that cost more than the steps Wu-Manber
		// would have taken: the bytes are not rare enough in this text.
		if at < 0 && (fails > 16+pos>>4 || visits > 16 && (visits-16)*p.perVisit > pos) {
			// Every occurrence before the next one was verified, so no
			// match starts more than maxOff before it.
			from := len(b)
			for j := range rare {
				from = min(from, next[j])
			}
			from = max(0, from-p.maxOff)
			if at, which = m.scan(b[from:]); at >= 0 {
				at += from
			}
			return at, which, true
		}
	}
}

// window is how far indexWithin looks at a time.
const window = 4 << 10

// indexWithin returns the index of the first c in b at or after i and
// false, or, when there is none in the window from i, the window's end
// (at most len(b)) and true.
func indexWithin(b []byte, i int, c byte) (int, bool) {
	end := min(len(b), i+window)
	if j := bytes.IndexByte(b[i:end], c); j >= 0 {
		return i + j, false
	}
	return end, true
}
