package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/internal/printable"
	"github.com/instructflow/instructflow/preference"
	"github.com/instructflow/instructflow/storage/postgres"
)

func newLabelsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "labels",
		Short: "Import, validate, snapshot, export and audit preference labels",
	}
	cmd.AddCommand(newLabelsImportCmd(a), newLabelsSnapshotCmd(a), newLabelsExportCmd(a),
		newLabelsLineageCmd(a), newLabelsAuditCmd(a), newLabelsSimulateCmd(a))
	return cmd
}

// openDB opens the configured database as the runtime role.
func (a *app) openDB(ctx context.Context) (*postgres.DB, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	return postgres.Open(ctx, cfg.Postgres.URL)
}

// dbCmd builds a command that works on the database: do gets it open.
func dbCmd(a *app, use, short string, args cobra.PositionalArgs, do func(cmd *cobra.Command, db *postgres.DB, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			return do(cmd, db, args)
		},
	}
}

func newLabelsImportCmd(a *app) *cobra.Command {
	var (
		format  string
		opts    preference.ReaderOptions
		dryRun  bool
		heldout float64
	)
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Import preference data (ranking, pairwise or hh JSONL; gzip read transparently)",
		Long: `import validates every line before anything is written, then stores all
accepted rows in one transaction, or none. Re-importing the same content adds
nothing. The order of responses in a ranking is the order they were shown.

Formats (one JSON object a line):
  ranking   {"prompt": s, "responses": [s, ...], "ranking": [i, ...] best first, "labeler": s}
  pairwise  {"prompt": s, "chosen": s, "rejected": s, "labeler"?: s}     (TRL style)
  hh        {"chosen": transcript, "rejected": transcript}                (Anthropic HH-RLHF;
            prompt = the shared prefix up to the last "\n\nAssistant:")

A new prompt's split comes from the SHA-256 of its text (--heldout-fraction,
default 5% held out), as 'data import' draws it, so the same prompt lands on
the same side in labels and datasets; the reward model trains on the
comparisons of train prompts and is evaluated on the held-out ones.

Validation rules and what each does:
` + preference.RulesHelp() + `
By default the first "refuse file" problem refuses the whole file: reading
stops there, the problem is listed with its line number and nothing is
written. --dry-run reads on and counts every problem (listing the first
--show-problems); --skip-invalid imports the rest instead. "keep, flagged" rows
are stored with the rule's name, reported by 'labels audit' and can be left
out of snapshots (--exclude-flagged).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := preference.ParseFormat(format)
			if err != nil {
				return fmt.Errorf("labels import: --format: %w", err)
			}
			if !(heldout >= 0 && heldout < 1) {
				return errkind.BadInputf("labels import: --heldout-fraction %v: use 0 or more and less than 1", heldout)
			}
			ctx := cmd.Context()
			db, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			in, name := io.Reader(cmd.InOrStdin()), "-"
			if args[0] != "-" {
				file, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("labels import: %w", err)
				}
				defer file.Close()
				in, name = file, args[0]
			}
			shown := printable.String(name)
			h := sha256.New()
			opts.KeepReading = dryRun
			rd, err := preference.NewReader(io.TeeReader(in, h), f, opts)
			if err != nil {
				return fmt.Errorf("labels import %s: %w", shown, err)
			}
			res, err := db.Import(ctx, rd, postgres.ImportInfo{
				Name: name, Format: f, DryRun: dryRun, HeldoutFraction: heldout,
				FileSHA256: func() (s [32]byte) { h.Sum(s[:0]); return s },
			})
			report := importReport{ImportResult: res,
				problems: problemsOf(name, rd.Reader)}
			refused := errors.Is(err, postgres.ErrImportRefused)
			// A summary only for an import that worked; a refused one gets
			// its problems and the reason, any other failure only the error.
			if err != nil && !refused {
				report.print(cmd.ErrOrStderr())
				return err
			}
			if e := a.printer(cmd).Print(report, func(w io.Writer) error {
				report.print(cmd.ErrOrStderr())
				if err == nil {
					report.printSummary(w)
				}
				return nil
			}); e != nil {
				return e
			}
			if refused {
				return fmt.Errorf("labels import %s: %s", shown, report.refusal(dryRun))
			}
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "ranking, pairwise or hh (required)")
	_ = cmd.MarkFlagRequired("format")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and count what would be added, write nothing")
	cmd.Flags().Float64Var(&heldout, "heldout-fraction", DefaultHeldoutFraction, "share of new prompts held out (the reward model is evaluated on their comparisons), drawn from each prompt's hash as 'data import' draws it")
	cmd.Flags().BoolVar(&opts.SkipInvalid, "skip-invalid", false, `skip rows with "refuse file" problems instead of refusing the file`)
	cmd.Flags().IntVar(&opts.MaxChars, "max-chars", preference.DefaultMaxChars, "longest prompt or response accepted, in characters")
	cmd.Flags().IntVar(&opts.MaxK, "max-k", preference.DefaultMaxK, "most responses in one ranking (audit, reward model and export are quadratic in K)")
	cmd.Flags().StringVar(&opts.Labeler, "labeler", preference.DefaultLabeler, "labeler for rows that name none (pairwise, hh)")
	cmd.Flags().IntVar(&opts.MaxProblems, "show-problems", preference.DefaultMaxProblems, "how many problems to list (the rest are counted by rule)")
	return cmd
}

type importReport struct {
	postgres.ImportResult
	problems[preference.Rule]
}

// printSummary says what a successful import did.
func (r importReport) printSummary(out io.Writer) {
	file := printable.String(r.File)
	verb := "imported"
	if r.DryRun {
		verb = "dry run: would import"
	}
	fmt.Fprintf(out, "%s: %d rows read, %d accepted (%d flagged), %d skipped\n",
		file, r.Rows, r.Accepted, r.Flagged, int64(r.Rows)-r.Accepted)
	switch {
	case r.Inserted == 0 && r.Accepted > 0:
		fmt.Fprintf(out, "%s: nothing new: all %d comparisons are stored already (%d repeated within the file)\n",
			file, r.Accepted, r.DuplicateInFile)
	default:
		fmt.Fprintf(out, "%s: %s %d new comparisons (%d already stored, %d repeated within the file)\n",
			file, verb, r.Inserted, r.AlreadyPresent, r.DuplicateInFile)
	}
}

func newLabelsSnapshotCmd(a *app) *cobra.Command {
	var (
		f            postgres.SnapshotFilter
		since, until string
	)
	cmd := &cobra.Command{
		Use:   "snapshot NAME",
		Short: "Freeze the current comparisons that match a filter (ids + SHA-256), for reward-model training",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, t := range []struct {
				flag string
				s    string
				dst  **time.Time
			}{{"--since", since, &f.Since}, {"--until", until, &f.Until}} {
				if t.s == "" {
					continue
				}
				v, err := time.Parse(time.RFC3339, t.s)
				if err != nil {
					return fmt.Errorf("labels snapshot: %s %q: use RFC 3339, e.g. 2026-01-31T00:00:00Z", t.flag, t.s)
				}
				*t.dst = &v
			}
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			s, err := db.SnapshotWhere(cmd.Context(), args[0], f)
			if err != nil {
				return err
			}
			out := struct {
				Name        string `json:"name"`
				ID          int64  `json:"id"`
				Comparisons int    `json:"comparisons"`
				SHA256      string `json:"sha256"`
			}{s.Name, s.ID, len(s.ComparisonIDs), hex.EncodeToString(s.SHA256[:])}
			return a.printer(cmd).Print(out, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "snapshot %s: %d comparisons, sha256 %s\n", printable.String(out.Name), out.Comparisons, out.SHA256)
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.Labelers, "labeler", nil, "only these labelers (repeat or comma-separate)")
	fl.StringSliceVar(&f.ExcludeLabelers, "exclude-labeler", nil, "leave out these labelers (e.g. those the audit flags)")
	fl.BoolVar(&f.ExcludeFlagged, "exclude-flagged", false, "leave out rows kept with import flags (empty responses, HH prompt mismatches)")
	fl.StringVar(&f.Split, "split", "", "only prompts of this split (train, heldout, test)")
	fl.StringVar(&since, "since", "", "only comparisons created at or after this time (RFC 3339)")
	fl.StringVar(&until, "until", "", "only comparisons created before this time (RFC 3339)")
	return cmd
}

func newLabelsExportCmd(a *app) *cobra.Command {
	var snapshot, format, output string
	cmd := &cobra.Command{
		Use:   "export --snapshot NAME --format ranking|pairwise [-o FILE]",
		Short: "Write a snapshot back out, byte-stable (the same snapshot always gives the same bytes)",
		Long: `export writes a snapshot's comparisons in id order. ranking: one line per
comparison, responses in shown order, "ranking" best first (ties broken by
shown order, with "ranks" added to say which are tied). pairwise: one line per
pair of responses with different ranks; tied pairs are left out and counted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "ranking" && format != "pairwise" {
				return fmt.Errorf("labels export: --format %q: use ranking or pairwise", format)
			}
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			var n, ties int
			err = writeOut(cmd, output, func(w io.Writer) error {
				return db.ExportSnapshot(cmd.Context(), snapshot, func(r postgres.ExportRow) error {
					lines, t := preference.ExportJudged(preference.Format(format), r.Prompt, r.Responses, r.Ranks, r.Labeler, r.Judged)
					ties += t
					for _, l := range lines {
						n++
						if _, err := w.Write(l); err != nil {
							return err
						}
					}
					return nil
				})
			})
			if err != nil {
				return fmt.Errorf("labels export: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "labels export: %d lines from snapshot %s", n, printable.String(snapshot))
			if ties > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), " (%d tied pairs left out)", ties)
			}
			fmt.Fprintln(cmd.ErrOrStderr())
			return nil
		},
	}
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "snapshot name (required)")
	_ = cmd.MarkFlagRequired("snapshot")
	cmd.Flags().StringVar(&format, "format", "ranking", "ranking or pairwise")
	cmd.Flags().StringVarP(&output, "output", "o", "-", "output file (- for stdout)")
	return cmd
}

func newLabelsLineageCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lineage RUN_ID",
		Short: "Show the base model and the label snapshot (its hash, labelers and imports) behind a run's models",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			ls, err := db.Lineage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			run, err := db.GetRun(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			base, err := control.BaseOf(run.Spec)
			if err != nil {
				return fmt.Errorf("run %s: %w", run.ID, err)
			}
			v := struct {
				Base      *control.BaseModel `json:"base_model"`
				Snapshots []postgres.Lineage `json:"snapshots"`
			}{base, ls}
			return a.printer(cmd).Print(v, func(out io.Writer) error {
				if base != nil {
					fmt.Fprintf(out, "run %s <- base model %s (manifest sha256 %s)\n", printable.String(run.ID), base.Name, base.ManifestSHA)
				} else {
					fmt.Fprintf(out, "run %s <- no base model (fresh weights)\n", printable.String(run.ID))
				}
				return writeLineage(out, args[0], ls)
			})
		},
	}
	return cmd
}

func writeLineage(out io.Writer, run string, ls []postgres.Lineage) error {
	if len(ls) == 0 {
		fmt.Fprintf(out, "run %s: no stage records a label snapshot yet\n", printable.String(run))
	}
	for _, l := range ls {
		fmt.Fprintf(out, "run %s stage %s <- snapshot %s (%d comparisons, %d flagged, sha256 %s, created %s)\n",
			printable.String(l.Run), printable.String(l.Stage), printable.String(l.Snapshot),
			l.Comparisons, l.Flagged, l.SHA256, l.CreatedAt.Format(time.RFC3339))
		fmt.Fprintf(out, "  filter: %s\n", printable.String(string(l.Filter)))
		for _, lc := range l.Labelers {
			fmt.Fprintf(out, "  labeler %-24s %d comparisons\n", printable.String(lc.Labeler), lc.Comparisons)
		}
		for _, im := range l.Imports {
			fmt.Fprintf(out, "  import #%d %s (%s, file sha256 %s): %d comparisons\n",
				im.ID, printable.String(im.Name), im.Format, im.FileSHA256, im.Comparisons)
		}
	}
	return nil
}

func newLabelsAuditCmd(a *app) *cobra.Command {
	var snapshot string
	cmd := &cobra.Command{
		Use:   "audit [--snapshot NAME]",
		Short: "Report on label quality: agreement, labeler reliability and biases, duplicates, broken pairs",
		Long: `audit reports, over a snapshot or all current comparisons:
  - volume per labeler; agreement between labelers on items judged by several
    (pairwise agreement rate and Krippendorff's alpha, nominal);
  - per labeler: agreement with the leave-one-out majority, position bias
    (first shown ranked best vs chance), length bias (longer preferred vs the
    other labelers), tie rate, self-contradictions;
  - exact and near-duplicate judgements, degenerate pairs, rows kept with
    import flags;
  - for labels given in the labeling app (instructflow serve): each
    labeler's share of responses flagged, of items skipped, and of rated
    pairs whose ratings order them against the ranks;
  - with a snapshot whose reward model scored its responses: the pairs it
    most confidently disagrees with;
and lists the findings, most severe first, each with its evidence. A labeler
is flagged when a rate differs from its reference with p < 0.001 by at least
15 points on at least 20 observations (flags, skips and ratings against the
ranks: when it exceeds the other labelers' by that much).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			counts, err := db.AuditCounts(cmd.Context(), snapshot)
			if err != nil {
				return err
			}
			rep := preference.Audit(counts)
			return a.printer(cmd).Print(rep, func(w io.Writer) error { rep.WriteText(w); return nil })
		},
	}
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "audit this snapshot (default: all current comparisons)")
	return cmd
}
