package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/gateway/replay"
)

// TestReplayMatchesServe is the differential test of `credgate policy
// diff`'s replay (gateway/replay) and serve (docs/cli.md#policy-diff): the
// running gateway of each scenario of TestExplainMatchesServe is sent
// every request of explainRequests that an audit line records whole, and
// each of its audit lines, read back with audit.ReadRecords and replayed
// under the same gateway config, must get the decision, code, rule and
// credential the gateway wrote. Left out are what a line does not record, and replay
// therefore documents as not replayed: request header fields (the
// x-ticket condition, method-override headers, placeholders), the query,
// a forged token (identity refusals), and kill switches.
func TestReplayMatchesServe(t *testing.T) {
	e := newExplainEnv(t)
	scenarios := []struct {
		name, mode string
		permit     bool
	}{
		{"replay-enforce", "", false},
		{"replay-observe", "mode: observe", false},
		{"replay-observe-destination", "#observe api", false},
		{"replay-ca-permit", "", true},
	}
	var failed, total atomic.Int64
	t.Cleanup(func() {
		t.Logf("%d of %d audit lines replayed to another outcome than the gateway's", failed.Load(), total.Load())
	})
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			cfgPath := e.config(t, sc.name, sc.mode, "", sc.permit)
			gw, buf := liveGateway(t, cfgPath)
			for i, p := range explainRequests(e.originPort) {
				if p.header != nil || strings.Contains(p.url, "?") || p.token == "forged" {
					continue
				}
				p.header = http.Header{"X-Probe-Id": {fmt.Sprintf("%s-%d", sc.name, i)}}
				e.live(t, gw, buf, p)
			}
			logPath := filepath.Join(t.TempDir(), "audit.log")
			if err := os.WriteFile(logPath, []byte(buf.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := load(context.Background(), cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			defer l.policy.Close()
			j, err := replayJudge(l)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			err = audit.ReadRecords([]string{logPath}, nil, func(r audit.Record) error {
				if r.Closed != "" {
					return nil
				}
				n++
				total.Add(1)
				got, err := replay.Decide(context.Background(), j, r)
				if err != nil {
					return err
				}
				if want := (replay.Outcome{Decision: r.Decision, Code: r.Code, Rule: r.Rule, Credential: r.Credential}); got != want {
					failed.Add(1)
					t.Errorf("%s: %s %s %s://%s:%d%s:\n replay %s\n serve  %s", r.Pos, r.Workload, r.Method, r.Scheme, r.Host, r.Port, r.Path, got, want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n < 50 {
				t.Errorf("only %d request lines replayed", n)
			}
		})
	}
}
