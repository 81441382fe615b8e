//go:build linux

package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePinning(t *testing.T) {
	for _, tc := range []struct {
		spec string
		ncpu int
		want pinning
		err  bool
	}{
		{spec: "auto", ncpu: 2, want: pinning{}},
		{spec: "none", ncpu: 8, want: pinning{}},
		{spec: "auto", ncpu: 4, want: pinning{origin: "0", loadgen: "1", proxy: "2-3"}},
		{spec: "auto", ncpu: 8, want: pinning{origin: "0-1", loadgen: "2-3", proxy: "4-7"}},
		{spec: "loadgen=0;proxy=1;origin=1", ncpu: 2, want: pinning{loadgen: "0", proxy: "1", origin: "1"}},
		{spec: "loadgen=0-1,3", ncpu: 4, want: pinning{loadgen: "0-1,3"}},
		{spec: "gateway=1", ncpu: 2, err: true},
		{spec: "loadgen=x", ncpu: 2, err: true},
		{spec: "loadgen", ncpu: 2, err: true},
	} {
		got, err := parsePinning(tc.spec, tc.ncpu)
		if (err != nil) != tc.err {
			t.Errorf("parsePinning(%q) error = %v, want error %v", tc.spec, err, tc.err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(pinning{})); diff != "" {
			t.Errorf("parsePinning(%q) (-want +got):\n%s", tc.spec, diff)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	got, err := parseCPUs("0-2,5")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{0, 1, 2, 5}, got); diff != "" {
		t.Errorf("parseCPUs (-want +got):\n%s", diff)
	}
}
