package cli

// The `credgate policy` subcommands: cobra wiring only; the logic is in
// policy/suggest, gateway/replay and audit.FileLines (audit.ReadRecords).

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/gateway"
	"github.com/credgate/credgate/gateway/replay"
	"github.com/credgate/credgate/policy/suggest"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Write a least-privilege policy from audit logs, and compare policies over recorded traffic",
	}
	cmd.AddCommand(newPolicySuggestCmd(), newPolicyDiffCmd())
	return cmd
}

func newPolicySuggestCmd() *cobra.Command {
	var (
		auditFiles  []string
		basePath    string
		outPath     string
		maxLiterals int
	)
	cmd := &cobra.Command{
		Use:   "suggest --audit FILE... [--policy FILE] [-o FILE]",
		Short: "Write a least-privilege policy from the traffic in audit logs",
		Long: `Read the audit lines of FILE... and write a policy that allows, per workload and
destination host, only the methods and path templates that were let through
(inject, forward, tunnel, and would_deny in observe mode; refused requests
are never allowed). ID-like path segments (numbers, UUIDs, hex, prefixed IDs
like cus_...) and segments with more than --max-literals values under one
prefix become '*'. Each path carries its methods, counts and first/last
seen as a comment.

--policy is the policy in force when the traffic was recorded: its
workloads and credentials are copied, and injected requests keep the
credential and injector of the rule that injected them (required when any
line was injected). Without it, workloads are written with the source
addresses seen. Check the result with credgate validate and credgate
policy diff.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(auditFiles) == 0 {
				return fmt.Errorf("policy suggest: --audit FILE is required")
			}
			opts := suggest.Options{MaxLiterals: maxLiterals}
			if basePath != "" {
				var err error
				opts.BaseFile = basePath
				if opts.Base, err = os.ReadFile(basePath); err != nil {
					return fmt.Errorf("policy suggest: --policy: %w", err)
				}
			}
			out := cmd.OutOrStdout()
			if outPath != "" {
				f, err := os.Create(outPath)
				if err != nil {
					return fmt.Errorf("policy suggest: -o: %w", err)
				}
				defer f.Close()
				out = f
			}
			var cut audit.Cut
			if err := suggest.WriteFrom(out, audit.FileLines(auditFiles, &cut), opts); err != nil {
				return err
			}
			warnCut(cmd, "policy suggest", cut)
			if f, ok := out.(*os.File); ok && outPath != "" {
				if err := f.Close(); err != nil {
					return fmt.Errorf("policy suggest: -o: %w", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&auditFiles, "audit", nil, "audit log file(s) to read (repeat or comma-separate)")
	cmd.Flags().StringVar(&basePath, "policy", "", "the policy in force when the traffic was recorded")
	cmd.Flags().StringVarP(&outPath, "output", "o", "", "write the policy to FILE instead of stdout")
	cmd.Flags().IntVar(&maxLiterals, "max-literals", suggest.DefaultMaxLiterals, "distinct values of a path segment under one prefix before it becomes '*'")
	return cmd
}

func newPolicyDiffCmd() *cobra.Command {
	var auditFiles []string
	cmd := &cobra.Command{
		Use:   "diff OLD NEW --audit FILE...",
		Short: "List the recorded requests whose outcome changes from policy OLD to NEW",
		Long: `Replay the requests recorded in the audit lines of FILE... against the
policies (or gateway configs) OLD and NEW, with the decision code of the
gateway and credgate explain, and list every request whose outcome
(decision, code or rule) changes, grouped by change.

The caller is the workload the audit line names: identity factors cannot be
replayed, so changes to a workload's selectors do not show, and when:
conditions see no factor attributes, posture or request headers (now is the
line's time).

Exit 0 when no request changes outcome, 1 when any does (and on errors,
which print "credgate: ..." on stderr).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(auditFiles) == 0 {
				return fmt.Errorf("policy diff: --audit FILE is required")
			}
			oldL, err := load(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("policy diff: %s: %w", args[0], err)
			}
			defer oldL.policy.Close()
			newL, err := load(cmd.Context(), args[1])
			if err != nil {
				return fmt.Errorf("policy diff: %s: %w", args[1], err)
			}
			defer newL.policy.Close()
			oldJ, err := replayJudge(oldL)
			if err != nil {
				return fmt.Errorf("policy diff: %s: %w", args[0], err)
			}
			newJ, err := replayJudge(newL)
			if err != nil {
				return fmt.Errorf("policy diff: %s: %w", args[1], err)
			}
			var cut audit.Cut
			changes, skipped, read, err := replay.DiffFrom(cmd.Context(), oldJ, newJ, audit.FileLines(auditFiles, &cut))
			if err != nil {
				return fmt.Errorf("policy diff: %w", err)
			}
			if err := replay.WriteText(cmd.OutOrStdout(), changes, read, skipped); err != nil {
				return fmt.Errorf("policy diff: %w", err)
			}
			warnCut(cmd, "policy diff", cut)
			if len(changes) > 0 {
				return &exitCode{code: exitError, reported: true}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&auditFiles, "audit", nil, "audit log file(s) to replay (repeat or comma-separate)")
	return cmd
}

// warnCut tells the operator, on stderr, that the audit files cmd (named
// what) read held lines that are not JSON (cut short), which it skipped:
// its output covers an incomplete log. The exit status is not changed.
func warnCut(cmd *cobra.Command, what string, cut audit.Cut) {
	if cut.Lines > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "credgate %s: warning: %s; run credgate audit verify to learn whether the log was cut\n", what, cut)
	}
}

// replayJudge is the gateway's decision path for l: its policy and, for a
// gateway config, its resolve map and its interception CA's names.
func replayJudge(l *loaded) (gateway.Judge, error) {
	j := gateway.Judge{Policy: l.policy, Config: l.config}
	if l.config != nil {
		var err error
		if j.Issuer, err = l.config.Issuer(); err != nil {
			return j, err
		}
	}
	return j, nil
}
