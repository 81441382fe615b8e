package helm_test

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
)

// TestDisruptionBudgetKeepsAReplica renders replica counts (replicaCount,
// or autoscaling.minReplicas) × podDisruptionBudget.maxUnavailable values,
// and checks the chart against the disruption controller's arithmetic (a
// percentage of the replicas, rounded up): with more than one replica, a
// budget that lets a drain take every replica at once fails the render
// naming the value, and every other renders a PDB selecting the
// gateway's pods with the value given. One replica renders (no budget
// can keep it up through a drain).
func TestDisruptionBudgetKeepsAReplica(t *testing.T) {
	type scale struct {
		name string
		n    int
		args []string
	}
	var scales []scale
	for _, n := range []int{1, 2, 3, 5} {
		scales = append(scales, scale{fmt.Sprintf("replicaCount=%d", n), n, []string{"--set", fmt.Sprintf("replicaCount=%d", n)}})
	}
	for _, n := range []int{2, 4} {
		scales = append(scales, scale{fmt.Sprintf("minReplicas=%d", n), n, []string{"--set", "autoscaling.enabled=true",
			"--set", fmt.Sprintf("autoscaling.minReplicas=%d", n), "--set", "replicaCount=1"}})
	}
	budgets := []string{"1", "2", "3", "4", "25%", "50%", "51%", "75%", "100%"}
	for _, s := range scales {
		for _, b := range budgets {
			t.Run(s.name+"/"+b, func(t *testing.T) {
				t.Parallel()
				args := append(append([]string(nil), s.args...), "--set-string", "podDisruptionBudget.maxUnavailable="+b)
				if !strings.HasSuffix(b, "%") {
					args[len(args)-2] = "--set"
				}
				out, err := runErr(helmBin, templateArgs(args...)...)
				down := disruptionAllowance(t, b, s.n)
				if s.n > 1 && down >= s.n {
					if err == nil || !strings.Contains(err.Error(), "podDisruptionBudget.maxUnavailable") {
						t.Fatalf("%d replicas, maxUnavailable %s (%d pods): want the render refused, got %v", s.n, b, down, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("%d replicas, maxUnavailable %s (%d pods): %v", s.n, b, down, err)
				}
				pdb := mustFind(t, parse(t, out), "PodDisruptionBudget", fullname)
				if got := fmt.Sprint(get(pdb, "spec.maxUnavailable")); got != b {
					t.Errorf("maxUnavailable = %s, want %s", got, b)
				}
				if get(pdb, "spec.selector.matchLabels.[app.kubernetes.io/instance]") != releaseName {
					t.Errorf("PDB selector %v does not select the release's pods", get(pdb, "spec.selector"))
				}
			})
		}
	}
}

// disruptionAllowance is how many of n pods a maxUnavailable value lets
// be down: a count, or a percentage of n rounded up (the disruption
// controller's intstr.GetScaledValueFromIntOrPercent(..., roundUp=true)).
func disruptionAllowance(t *testing.T, v string, n int) int {
	t.Helper()
	if p, ok := strings.CutSuffix(v, "%"); ok {
		pct, err := strconv.Atoi(p)
		if err != nil {
			t.Fatal(err)
		}
		return int(math.Ceil(float64(pct) * float64(n) / 100))
	}
	c, err := strconv.Atoi(v)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
