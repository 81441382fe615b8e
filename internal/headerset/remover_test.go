package headerset

import (
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestRemoverSameAsDelete compares Remover.Remove with deleting each name
// of the set from the header (the code it replaced), on random headers
// made of the sets' names, their other spellings (lower case, upper case,
// a byte changed or added), common fields and the empty name.
func TestRemoverSameAsDelete(t *testing.T) {
	sets := map[string][][]string{
		"hop":          {Hop},
		"proxy scoped": {ProxyScoped, {"X-Credgate-Reason"}},
		"both":         {Hop, ProxyScoped},
		"empty":        {},
		"with empty":   {{"", "Te"}},
	}
	var pool []string
	for _, l := range [][]string{Hop, ProxyScoped, framing, {"X-Credgate-Reason"}} {
		for _, n := range l {
			pool = append(pool, n, strings.ToLower(n), strings.ToUpper(n), n+"x", n[:len(n)-1], "X"+n)
		}
	}
	pool = append(pool, "", "Accept", "Authorization", "Content-Type", "User-Agent", "Cookie", "X-Api-Key", "P", "T", "X")
	rng := rand.New(rand.NewPCG(1, 2))
	for name, lists := range sets {
		r := NewRemover(lists...)
		for i := range 2000 {
			h := map[string][]string{}
			for range rng.IntN(12) {
				h[pool[rng.IntN(len(pool))]] = []string{"v"}
			}
			want := maps.Clone(h)
			for _, l := range lists {
				for _, n := range l {
					delete(want, n)
				}
			}
			got := maps.Clone(h)
			r.Remove(got)
			if !maps.EqualFunc(got, want, func(a, b []string) bool { return len(a) == len(b) }) {
				t.Fatalf("%s, header %d %v: Remove left %v, deleting each name leaves %v", name, i, keys(h), keys(got), keys(want))
			}
			for k := range h {
				_, kept := want[k]
				if r.Has(k) == kept {
					t.Fatalf("%s: Has(%q) = %v, but deleting each name keeps it: %v", name, k, r.Has(k), kept)
				}
			}
		}
	}
}

func keys(h map[string][]string) []string {
	var out []string
	for k := range h {
		out = append(out, k)
	}
	return out
}

func TestRemoverNoAllocs(t *testing.T) {
	r := NewRemover(Hop, ProxyScoped)
	base := map[string][]string{"Accept": {"*/*"}, "Connection": {"close"}, "X-Forwarded-For": {"1.2.3.4"}, "User-Agent": {"x"}, "Proxy-Authorization": {"y"}}
	h := map[string][]string{}
	if n := testing.AllocsPerRun(100, func() {
		maps.Copy(h, base)
		r.Remove(h)
	}); n != 0 {
		t.Errorf("Remove allocated %v times per call, want 0", n)
	}
}
