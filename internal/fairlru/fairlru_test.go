package fairlru

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
)

// TestEvictionRule: which entry a full cache evicts, case by case.
func TestEvictionRule(t *testing.T) {
	type add struct{ key, owner string }
	tests := []struct {
		name string
		size int
		// ops: "a:o" adds key a for owner o; "a" gets a; "-a" removes a.
		ops []string
		// evicted are the keys evicted, in order.
		evicted []string
	}{
		{name: "one owner is an LRU", size: 3, ops: []string{"a:x", "b:x", "c:x", "a", "d:x", "e:x"}, evicted: []string{"b", "c"}},
		{name: "one entry per owner is an LRU", size: 3, ops: []string{"a:1", "b:2", "c:3", "a", "d:4", "e:5"}, evicted: []string{"b", "c"}},
		{name: "the largest owner loses its LRU entry", size: 4, ops: []string{"a:x", "b:x", "c:x", "v:y", "b", "d:z"}, evicted: []string{"a"}},
		{name: "a flood evicts its own once as large as the others", size: 4, ops: []string{"v:y", "w:y", "a:x", "b:x", "c:x", "d:x"}, evicted: []string{"a", "b"}},
		{name: "ties: the new key's owner first", size: 4, ops: []string{"v:y", "w:y", "a:x", "b:x", "c:x"}, evicted: []string{"a"}},
		{name: "ties among others: the owner used least recently", size: 4, ops: []string{"a:x", "b:x", "v:y", "w:y", "a", "c:z"}, evicted: []string{"v"}},
		{name: "equal owners not used lose entries in turn", size: 6, ops: []string{"a:x", "b:x", "v:y", "w:y", "p:z", "q:z", "r:1", "s:2", "t:3"}, evicted: []string{"a", "v", "p"}},
		{name: "a hit by key keeps the owner", size: 3, ops: []string{"a:x", "b:y", "a:y", "c:y", "d:y"}, evicted: []string{"b"}},
		{name: "removal frees room", size: 2, ops: []string{"a:x", "b:x", "-a", "c:y"}, evicted: nil},
		{name: "new owners never evict a single-entry owner while another holds more", size: 4, ops: []string{"a:x", "b:x", "c:x", "v:y", "d:z", "e:q"}, evicted: []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New[string, int, string](tc.size)
			var got []string
			for i, op := range tc.ops {
				var a add
				switch {
				case op[0] == '-':
					c.Remove(op[1:])
					continue
				case len(op) > 1 && op[len(op)-2] == ':':
					a = add{op[:len(op)-2], op[len(op)-1:]}
				default:
					if _, ok := c.Get(op); !ok {
						t.Fatalf("op %d: %s not cached", i, op)
					}
					continue
				}
				if ev, ok := c.Add(a.key, a.owner, i); ok {
					got = append(got, ev.Key)
				}
				if c.Len() > tc.size {
					t.Fatalf("op %d: %d entries, bound %d", i, c.Len(), tc.size)
				}
			}
			if !slices.Equal(got, tc.evicted) {
				t.Errorf("evicted %q, want %q", got, tc.evicted)
			}
		})
	}
}

// model is the rule written the slow way: per-owner lists and stamps,
// scanned on every eviction.
type model struct {
	size   int
	now    int
	owner  map[int]int   // key: owner
	order  map[int][]int // owner: keys, least recently used first
	stamps map[int]int   // owner: last used or lost an entry
}

func (m *model) use(o int) { m.now++; m.stamps[o] = m.now }

func (m *model) drop(k int) {
	o := m.owner[k]
	m.order[o] = slices.DeleteFunc(m.order[o], func(x int) bool { return x == k })
	delete(m.owner, k)
	if len(m.order[o]) == 0 {
		delete(m.order, o)
		delete(m.stamps, o)
	} else {
		m.use(o)
	}
}

func (m *model) touch(k int) {
	o := m.owner[k]
	m.order[o] = append(slices.DeleteFunc(m.order[o], func(x int) bool { return x == k }), k)
	m.use(o)
}

// add returns the key evicted, or -1.
func (m *model) add(k, o int) int {
	if _, ok := m.owner[k]; ok {
		m.touch(k)
		return -1
	}
	victim := -1
	if len(m.owner) >= m.size {
		most := 0
		for _, keys := range m.order {
			most = max(most, len(keys))
		}
		vo, found := o, len(m.order[o]) == most
		if !found {
			best := 0
			for ow, keys := range m.order {
				if len(keys) == most && (!found || m.stamps[ow] < best) {
					vo, best, found = ow, m.stamps[ow], true
				}
			}
		}
		victim = m.order[vo][0]
		m.drop(victim)
	}
	m.owner[k] = o
	m.order[o] = append(m.order[o], k)
	m.use(o)
	return victim
}

// FuzzAgainstModel: the cache evicts exactly what the slow model does,
// never holds more than its size, and every eviction takes the least
// recently used entry of an owner holding the most (the new key not
// counted): an owner at or under its share (the cache's size over the
// owners) is never evicted while another holds more than it.
func FuzzAgainstModel(f *testing.F) {
	f.Add(uint8(4), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	f.Add(uint8(16), []byte("a flood of keys from one owner against a few others, with hits and removals"))
	f.Add(uint8(1), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, size uint8, ops []byte) {
		n := int(size%32) + 1
		c := New[int, int, int](n)
		m := &model{size: n, owner: map[int]int{}, order: map[int][]int{}, stamps: map[int]int{}}
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i], int(ops[i+1])
			k, o := arg%48, int(op>>2)%6 // few owners, keys shared between them
			switch op % 4 {
			case 0, 1: // add
				mostOther := 0
				for ow, keys := range m.order {
					if ow != o {
						mostOther = max(mostOther, len(keys))
					}
				}
				ev, ok := c.Add(k, o, i)
				want := m.add(k, o)
				if ok != (want >= 0) || ok && ev.Key != want {
					t.Fatalf("op %d: add %d for %d evicted %v %v, model %d", i, k, o, ev, ok, want)
				}
				if ok && ev.Owner != o && c.Held(ev.Owner)+1 < mostOther {
					t.Fatalf("op %d: evicted from owner %d holding %d while another held %d", i, ev.Owner, c.Held(ev.Owner)+1, mostOther)
				}
			case 2: // get
				_, ok := c.Get(k)
				if _, in := m.owner[k]; in != ok {
					t.Fatalf("op %d: Get(%d) = %v, model %v", i, k, ok, in)
				}
				if ok {
					m.touch(k)
				}
			case 3: // remove
				_, ok := c.Remove(k)
				if _, in := m.owner[k]; in != ok {
					t.Fatalf("op %d: Remove(%d) = %v, model %v", i, k, ok, in)
				}
				if ok {
					m.drop(k)
				}
			}
			if c.Len() > n || c.Len() != len(m.owner) || c.Owners() != len(m.order) {
				t.Fatalf("op %d: %d entries of %d owners (bound %d), model %d of %d", i, c.Len(), c.Owners(), n, len(m.owner), len(m.order))
			}
			for ow, keys := range m.order {
				if c.Held(ow) != len(keys) {
					t.Fatalf("op %d: owner %d holds %d, model %d", i, ow, c.Held(ow), len(keys))
				}
			}
		}
	})
}

// TestFloodKeepsShares: one owner adding 10× the cache's size of keys
// leaves every other owner at least min(what it held, size/owners).
func TestFloodKeepsShares(t *testing.T) {
	const size = 64
	for _, victims := range []map[string]int{
		{"a": 1},
		{"a": 16, "b": 16, "c": 16, "d": 16},
		{"a": 60},
		{"a": 1, "b": 2, "c": 3, "d": 50},
	} {
		t.Run(fmt.Sprint(victims), func(t *testing.T) {
			c := New[string, int, string](size)
			for o, n := range victims {
				for i := range n {
					c.Add(fmt.Sprintf("%s%d", o, i), o, 0)
				}
			}
			for i := range 10 * size {
				c.Add(fmt.Sprintf("flood%d", i), "flood", 0)
				if c.Len() > size {
					t.Fatalf("%d entries, bound %d", c.Len(), size)
				}
			}
			share := size / (len(victims) + 1)
			for o, n := range victims {
				if got, want := c.Held(o), min(n, share); got < want {
					t.Errorf("%s holds %d, want at least %d", o, got, want)
				}
			}
		})
	}
}

// benchScenarios: the leaf cache's default size with 16 workloads of 32
// leaves each, and the credential cache's with 1,000 holders of 10
// entries; then one owner adds new keys (each evicting one) or everyone
// hits theirs.
var benchScenarios = []struct {
	name            string
	size, owners, n int
}{
	{"leaf-1024x16", 1024, 16, 32},
	{"cred-10000x1000", 10000, 1000, 10},
}

func benchFill(size, owners, n int) (*Cache[string, *int, string], []string) {
	c := New[string, *int, string](size)
	keys := make([]string, 0, owners*n)
	for o := range owners {
		for i := range n {
			k := fmt.Sprintf("%d/%d", o, i)
			keys = append(keys, k)
			c.Add(k, strconv.Itoa(o), new(int))
		}
	}
	return c, keys
}

// BenchmarkAdd: a new key into a full cache (one eviction each).
func BenchmarkAdd(b *testing.B) {
	for _, sc := range benchScenarios {
		b.Run(sc.name, func(b *testing.B) {
			c, _ := benchFill(sc.size, sc.owners, sc.n)
			keys := make([]string, b.N+sc.size)
			for i := range keys {
				keys[i] = "f" + strconv.Itoa(i)
			}
			k := 0
			for ; c.Len() < sc.size; k++ {
				c.Add(keys[k], "flood", new(int))
			}
			b.ResetTimer()
			for range b.N {
				c.Add(keys[k], "flood", new(int))
				k++
			}
		})
	}
}

// BenchmarkGet: a hit.
func BenchmarkGet(b *testing.B) {
	for _, sc := range benchScenarios {
		b.Run(sc.name, func(b *testing.B) {
			c, keys := benchFill(sc.size, sc.owners, sc.n)
			b.ResetTimer()
			for i := range b.N {
				c.Get(keys[i%len(keys)])
			}
		})
	}
}
