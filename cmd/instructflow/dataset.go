package main

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/internal/jsonl"
	"github.com/instructflow/instructflow/internal/printable"
	"github.com/instructflow/instructflow/storage/postgres"
)

// DefaultHeldoutFraction is the share of prompts 'data import' holds out
// when no split is given.
const DefaultHeldoutFraction = 0.05

func newDataImportCmd(a *app) *cobra.Command {
	var (
		opts         dataset.Options
		name, format string
		kind, split  string
		dryRun       bool
		showProblems int
	)
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Import demonstrations or prompts into a dataset (TRL, OpenAI messages, Alpaca or HH JSONL; gzip read transparently)",
		Long: `import validates every line before anything is written, then adds all
accepted rows to the dataset --dataset (made if new) in one transaction, or
none. Importing the same content again adds nothing and says so.

Formats (one JSON object a line; other fields are ignored):
  prompt-completion  {"prompt": s, "completion": s}, or conversational (TRL):
                     {"prompt": [{"role", "content"}, ...], "completion": [{"role": "assistant", ...}]}
  messages           {"messages": [{"role": "system"|"user"|"assistant", "content": s}, ...]}
                     (OpenAI, TRL): the last assistant turn is the target;
                     --all-turns makes every assistant turn one, the turns before it its prompt
  prompt             {"prompt": s or turns} (TRL prompt-only): prompts for labeling and PPO
  alpaca             {"instruction": s, "input"?: s, "output": s}: the prompt is the
                     instruction, then a blank line and the input when there is one
  hh                 {"chosen": transcript, "rejected"?: transcript} (Anthropic HH-RLHF):
                     the chosen side as a demonstration of the prompt both share

--kind prompt stores the prompts alone (a demonstration format's targets are
dropped). A prompt's split comes from the SHA-256 of its text
(--heldout-fraction, default 5% held out), so a prompt lands in the same split
on every import and in every dataset; --split puts the whole file in one. A
prompt stored before in the other split refuses the file (a prompt is never on
both sides). Chat templates render the turns (data.template in a run spec).

Validation rules and what each does:
` + dataset.RulesHelp() + `
By default the first "refuse file" problem refuses the whole file: reading
stops there, the problem is listed with its line number and nothing is
written. --dry-run reads on and counts every problem; --skip-invalid imports
the rest instead (and leaves out rows whose prompt is in the other split).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := dataset.ParseFormat(format)
			if err != nil {
				return errkind.BadInputf("data import: --format: %v", err)
			}
			if err := postgres.CheckDatasetName(name); err != nil {
				return errkind.BadInputf("data import: --dataset: %v", err)
			}
			opts.Format, opts.Kind, opts.Split = f, dataset.Kind(kind), dataset.Split(split)
			if split != "" && !cmd.Flags().Changed("heldout-fraction") {
				opts.HeldoutFraction = 0
			}
			opts.KeepReading, opts.MaxProblems = dryRun, showProblems
			in, file := io.Reader(cmd.InOrStdin()), "-"
			if args[0] != "-" {
				fh, err := os.Open(args[0])
				if err != nil {
					return errkind.BadInputf("data import: %v", err)
				}
				defer fh.Close()
				in, file = fh, args[0]
			}
			shown := printable.String(file)
			h := sha256.New()
			rd, err := dataset.NewReader(io.TeeReader(in, h), opts)
			if err != nil {
				return errkind.BadInputf("data import %s: %v", shown, err)
			}
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			res, err := db.ImportDataset(cmd.Context(), rd, postgres.DatasetImportInfo{
				Dataset: name, Name: file, Format: f, DryRun: dryRun, SkipConflicts: opts.SkipInvalid,
				FileSHA256: func() (s [32]byte) { h.Sum(s[:0]); return s },
			})
			report := dataImportReport{DatasetImportResult: res, Dataset: name, AcceptedLines: rd.Lines,
				problems: problemsOf(file, rd.Reader)}
			refused := errors.Is(err, postgres.ErrImportRefused)
			if err != nil && !refused {
				report.print(cmd.ErrOrStderr())
				return err
			}
			if e := a.printer(cmd).Print(report, func(w io.Writer) error {
				report.print(cmd.ErrOrStderr())
				report.printConflicts(cmd.ErrOrStderr())
				if err == nil {
					report.printSummary(w)
				}
				return nil
			}); e != nil {
				return e
			}
			if refused {
				if res.SplitConflicts > 0 && !rd.Refused() {
					return errkind.BadInputf("data import %s: refused: %d rows have a prompt stored in the other split; nothing was written: import them with the --split or --heldout-fraction of their first import, or leave them out with --skip-invalid", shown, res.SplitConflicts)
				}
				return errkind.BadInputf("data import %s: %s", shown, report.refusal(dryRun))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "dataset", "", "the dataset to add to (made if new; lower-case letters, digits, '_', '-', '.')")
	cmd.Flags().StringVar(&format, "format", "", "prompt-completion, messages, prompt, alpaca or hh (required)")
	_ = cmd.MarkFlagRequired("dataset")
	_ = cmd.MarkFlagRequired("format")
	cmd.Flags().StringVar(&kind, "kind", "", "store demonstration rows or prompt rows (default: prompt for the prompt format, else demonstration)")
	cmd.Flags().BoolVar(&opts.AllTurns, "all-turns", false, "messages: every assistant turn is a target, not only the last")
	cmd.Flags().StringVar(&opts.PromptKey, "prompt-key", "prompt", "field of the prompt (prompt-completion, prompt)")
	cmd.Flags().StringVar(&opts.CompletionKey, "completion-key", "completion", "field of the completion (prompt-completion)")
	cmd.Flags().StringVar(&opts.MessagesKey, "messages-key", "messages", "field of the turns (messages)")
	cmd.Flags().StringVar(&split, "split", "", "put every prompt in this split: train or heldout (instead of --heldout-fraction)")
	cmd.Flags().Float64Var(&opts.HeldoutFraction, "heldout-fraction", DefaultHeldoutFraction, "share of prompts held out, drawn from each prompt's hash")
	cmd.Flags().IntVar(&opts.MaxChars, "max-chars", dataset.DefaultMaxChars, "longest prompt or target accepted, in characters (longer rows are skipped)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and count what would be added, write nothing")
	cmd.Flags().BoolVar(&opts.SkipInvalid, "skip-invalid", false, `skip rows with "refuse file" problems instead of refusing the file`)
	cmd.Flags().IntVar(&showProblems, "show-problems", jsonl.DefaultMaxProblems, "how many problems to list (the rest are counted by rule)")
	return cmd
}

type dataImportReport struct {
	postgres.DatasetImportResult
	Dataset       string `json:"dataset"`
	AcceptedLines int    `json:"accepted_lines"` // lines with accepted rows (Accepted counts rows)
	problems[dataset.Rule]
}

func (r dataImportReport) printConflicts(errw io.Writer) {
	file := printable.String(r.File)
	for _, c := range r.Conflicts {
		fmt.Fprintf(errw, "%s: line %d: the prompt is stored in split %s already; this import puts it in %s\n", file, c.Line, c.Stored, c.Split)
	}
	if more := r.SplitConflicts - int64(len(r.Conflicts)); more > 0 {
		fmt.Fprintf(errw, "%s: ... and %d more rows whose prompt is in the other split\n", file, more)
	}
}

func (r dataImportReport) printSummary(w io.Writer) {
	file := printable.String(r.File)
	fmt.Fprintf(w, "%s: %d lines read, %d accepted", file, r.Rows, r.AcceptedLines)
	if r.Accepted != int64(r.AcceptedLines) {
		fmt.Fprintf(w, " (%d rows)", r.Accepted)
	}
	fmt.Fprintf(w, ", %d skipped", r.Rows-r.AcceptedLines)
	if r.SplitConflicts > 0 {
		fmt.Fprintf(w, ", %d rows left out (prompt in the other split)", r.SplitConflicts)
	}
	fmt.Fprintln(w)
	verb := "added"
	if r.DryRun {
		verb = "dry run: would add"
	}
	if r.Inserted == 0 && r.Accepted > 0 {
		fmt.Fprintf(w, "dataset %s: nothing new: all %d rows are in it already (%d repeated within the file)\n", r.Dataset, r.Accepted, r.DuplicateInFile)
		return
	}
	fmt.Fprintf(w, "dataset %s: %s %d rows (%d train, %d held out) and %d new prompts; %d rows were in it already, %d repeated within the file\n",
		r.Dataset, verb, r.Inserted, r.Train, r.Heldout, r.PromptsAdded, r.AlreadyPresent, r.DuplicateInFile)
}

func newDataListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the datasets with their rows by kind and split",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			ds, err := db.Datasets(cmd.Context())
			if err != nil {
				return err
			}
			if ds == nil {
				ds = []postgres.DatasetInfo{}
			}
			return a.printer(cmd).Print(ds, func(w io.Writer) error {
				if len(ds) == 0 {
					_, err := fmt.Fprintln(w, "no datasets yet: `instructflow data import FILE --dataset NAME --format F`")
					return err
				}
				fmt.Fprintf(w, "%-24s %10s %14s %10s %10s %10s %7s  %s\n", "NAME", "ROWS", "DEMONSTRATIONS", "PROMPTS", "TRAIN", "HELDOUT", "IMPORTS", "CREATED")
				for _, d := range ds {
					fmt.Fprintf(w, "%-24s %10d %14d %10d %10d %10d %7d  %s\n", d.Name, d.Rows, d.Demonstrations, d.Prompts,
						d.Train, d.Heldout, d.Imports, d.CreatedAt.UTC().Format("2006-01-02 15:04:05"))
				}
				return nil
			})
		},
	}
}

func newDataShowCmd(a *app) *cobra.Command {
	var modelName, templ string
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a dataset: rows by split and kind, repeats, lengths (in a model's tokens), three samples",
		Long: `show reads every row of the dataset and prints its rows by split and kind,
prompts that have more than one row, rows that repeat another up to white
space, the 50th, 90th and 99th percentiles and the longest of the prompts'
and targets' lengths, and the rows at the quartiles as samples.

Lengths are in characters, or in tokens of an imported model (--model NAME),
with prompts rendered by --template (plain, hh, chatml or a Go template) as a
run with that data.template would render them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			tmpl, err := chat.ParseTemplate(templ)
			if err != nil {
				return errkind.BadInputf("data show: --template: %v", err)
			}
			db, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			info, err := db.Dataset(ctx, args[0])
			if errors.Is(err, errkind.NotFound) {
				return errkind.BadInputf("data show: no dataset %q ('data list' lists them)", args[0])
			}
			if err != nil {
				return err
			}
			unit, length := "characters", utf8.RuneCountInString
			var encodeErr error
			if modelName != "" {
				s, closeAll, err := a.modelStore(ctx)
				if err != nil {
					return err
				}
				defer closeAll()
				tok, err := s.Tokenizer(ctx, modelName)
				if err != nil {
					return fmt.Errorf("data show: --model %s: %w", modelName, err)
				}
				unit = "tokens of " + modelName
				length = func(s string) int {
					ids, err := tok.Encode(s)
					if err != nil && encodeErr == nil {
						encodeErr = err
					}
					return len(ids)
				}
			}
			b := dataset.NewStats(info.Rows, unit, length)
			err = db.DatasetRows(ctx, args[0], "", func(ex dataset.Example) error {
				rendered, err := tmpl.Render(chat.Turns(ex.Prompt, ex.Turns), ex.Prompt)
				if err != nil {
					return err
				}
				b.Add(ex, rendered)
				return encodeErr
			})
			if err != nil {
				return fmt.Errorf("data show %s: %w", args[0], err)
			}
			out := struct {
				Dataset postgres.DatasetInfo `json:"dataset"`
				Stats   dataset.Stats        `json:"stats"`
			}{info, b.Stats()}
			return a.printer(cmd).Print(out, func(w io.Writer) error { return writeDatasetStats(w, info, out.Stats) })
		},
	}
	cmd.Flags().StringVar(&modelName, "model", "", "measure lengths in tokens of this imported model (default: characters)")
	cmd.Flags().StringVar(&templ, "template", "plain", "render prompts with this chat template before measuring them")
	return cmd
}

func writeDatasetStats(w io.Writer, d postgres.DatasetInfo, s dataset.Stats) error {
	fmt.Fprintf(w, "dataset %s: %d rows from %d imports, made %s\n", d.Name, d.Rows, d.Imports, d.CreatedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
	for _, sp := range []dataset.Split{dataset.Train, dataset.Heldout} {
		fmt.Fprintf(w, "  %-8s %d demonstrations, %d prompts\n", sp+":", s.Counts[sp][dataset.Demonstration], s.Counts[sp][dataset.Prompt])
	}
	fmt.Fprintf(w, "  repeats: %d prompts have more than one row; %d rows repeat another up to white space\n", s.RepeatedPrompts, s.NearDuplicates)
	fmt.Fprintf(w, "  lengths in %s: prompt p50 %d, p90 %d, p99 %d, max %d", s.Unit, s.Prompt.P50, s.Prompt.P90, s.Prompt.P99, s.Prompt.Max)
	if d.Demonstrations > 0 {
		fmt.Fprintf(w, "; target p50 %d, p90 %d, p99 %d, max %d", s.Target.P50, s.Target.P90, s.Target.P99, s.Target.Max)
	}
	fmt.Fprintln(w)
	for i, ex := range s.Samples {
		fmt.Fprintf(w, "  sample %d (%s, %s):\n    prompt: %s\n", i+1, ex.Kind(), ex.Split, clip(ex.Prompt))
		if ex.Target != "" {
			fmt.Fprintf(w, "    target: %s\n", clip(ex.Target))
		}
	}
	return nil
}

// clip quotes s, cut to 160 characters.
func clip(s string) string {
	if utf8.RuneCountInString(s) <= 160 {
		return printable.String(s)
	}
	r := []rune(s)
	return printable.String(string(r[:160])) + fmt.Sprintf(" ... (%d characters)", len(r))
}

func newDataExportCmd(a *app) *cobra.Command {
	var out, kind string
	cmd := &cobra.Command{
		Use:   "export NAME",
		Short: "Write a dataset as TRL prompt-completion JSONL (the same bytes every time)",
		Long: `export writes every row of the dataset, in the order the rows were added, one
JSON object a line: {"prompt": ..., "completion": ..., "split": ...}, with the
prompt as turns (and the completion as one assistant turn) where the prompt is
a conversation, and no completion in a prompt row. 'data import --format
prompt-completion' reads it back (--kind prompt for prompt rows; export one
kind at a time with --kind to re-import a mixed dataset). The split is
written for reference; an import draws it again from the prompt's hash.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k := dataset.Kind(kind)
			if k != "" && k != dataset.Demonstration && k != dataset.Prompt {
				return errkind.BadInputf("data export: --kind %q: use demonstration or prompt", kind)
			}
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := db.Dataset(cmd.Context(), args[0]); errors.Is(err, errkind.NotFound) {
				return errkind.BadInputf("data export: no dataset %q ('data list' lists them)", args[0])
			} else if err != nil {
				return err
			}
			return writeOut(cmd, out, func(w io.Writer) error {
				return db.DatasetRows(cmd.Context(), args[0], k, func(ex dataset.Example) error { return dataset.WriteJSONL(w, ex) })
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "-", "file to write (- is stdout); written whole or not at all")
	cmd.Flags().StringVar(&kind, "kind", "", "only rows of this kind: demonstration or prompt")
	return cmd
}

// writeOut writes to stdout (file "-" or ""), or to file through a
// temporary file renamed into place when all is written: never half a file.
func writeOut(cmd *cobra.Command, file string, write func(io.Writer) error) error {
	if file == "-" || file == "" {
		bw := bufio.NewWriterSize(cmd.OutOrStdout(), 1<<20)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		tmp.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}
