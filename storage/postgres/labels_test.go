package postgres

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/preference"
	"github.com/instructflow/instructflow/tasks"
)

func importString(t *testing.T, db *DB, input string, f preference.Format, opts preference.ReaderOptions, dry bool) (ImportResult, *preference.Reader, error) {
	t.Helper()
	rd, err := preference.NewReader(strings.NewReader(input), f, opts)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(input))
	res, err := db.Import(context.Background(), rd, ImportInfo{Name: t.Name(), Format: f, DryRun: dry, FileSHA256: func() [32]byte { return sum }})
	return res, rd, err
}

func count(t *testing.T, db *DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

const pairwiseFile = `{"prompt":"reverse abc=","chosen":"cba","rejected":"abc","labeler":"ada"}
{"prompt":"reverse abc=","chosen":"cba","rejected":"cb","labeler":"bo"}
{"prompt":"upper ab=","chosen":"AB","rejected":"Ab"}
{"prompt":"reverse abc=","chosen":"cba","rejected":"abc","labeler":"ada"}
`

func TestImportAllOrNothingAndReimport(t *testing.T) {
	db := openFresh(t)
	tables := []string{"comparisons", "prompts", "responses", "labelers", "imports"}
	before := map[string]int64{}
	for _, tb := range tables {
		before[tb] = count(t, db, tb)
	}
	// One bad line refuses the whole file: nothing is written.
	bad := pairwiseFile + `{"prompt":"p","chosen":"x","rejected":"x"}` + "\n"
	res, rd, err := importString(t, db, bad, preference.FormatPairwise, preference.ReaderOptions{}, false)
	if !errors.Is(err, ErrImportRefused) || !res.Refused {
		t.Fatalf("import of a bad file: %v, want refused", err)
	}
	if len(rd.Problems) != 1 || rd.Problems[0].Line != 5 || rd.Problems[0].Rule != preference.RuleIdenticalPair {
		t.Fatalf("problems %v", rd.Problems)
	}
	for _, tb := range tables {
		if n := count(t, db, tb); n != before[tb] {
			t.Errorf("refused import left %d rows in %s (had %d)", n, tb, before[tb])
		}
	}
	// A dry run counts but writes nothing.
	res, _, err = importString(t, db, pairwiseFile, preference.FormatPairwise, preference.ReaderOptions{}, true)
	if err != nil || res.Inserted != 3 || !res.DryRun {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if n := count(t, db, "comparisons"); n != 0 {
		t.Fatalf("dry run wrote %d comparisons", n)
	}
	// The real import: 4 rows, one repeated in the file.
	res, _, err = importString(t, db, pairwiseFile, preference.FormatPairwise, preference.ReaderOptions{Labeler: "anon"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 4 || res.Inserted != 3 || res.DuplicateInFile != 1 || res.AlreadyPresent != 0 {
		t.Fatalf("import: %+v", res)
	}
	if n := count(t, db, "prompts"); n != 2 {
		t.Errorf("%d prompts, want 2 (shared)", n)
	}
	if n := count(t, db, "responses"); n != 5 {
		t.Errorf("%d responses, want 5 (cba shared)", n)
	}
	var labelers []string
	rows, _ := db.pool.Query(context.Background(), "SELECT name FROM labelers ORDER BY name")
	labelers, _ = pgx.CollectRows(rows, pgx.RowTo[string])
	if fmt.Sprint(labelers) != "[ada anon bo]" {
		t.Errorf("labelers %v", labelers)
	}
	// Re-importing adds nothing and says so.
	res, _, err = importString(t, db, pairwiseFile, preference.FormatPairwise, preference.ReaderOptions{Labeler: "anon"}, false)
	if err != nil || res.Inserted != 0 || res.AlreadyPresent != 3 {
		t.Fatalf("re-import: %+v %v", res, err)
	}
	if n := count(t, db, "comparisons"); n != 3 {
		t.Fatalf("%d comparisons after re-import, want 3", n)
	}
	// --skip-invalid imports the good rows of the bad file.
	res, _, err = importString(t, db, bad+`{"prompt":"sort ba=","chosen":"ab","rejected":"ba"}`+"\n", preference.FormatPairwise,
		preference.ReaderOptions{SkipInvalid: true, Labeler: "anon"}, false)
	if err != nil || res.Inserted != 1 || res.Accepted != 5 {
		t.Fatalf("skip-invalid: %+v %v", res, err)
	}
}

// TestImportRefusesWhatPostgresWouldReject: rows Postgres cannot store are
// refused by a rule with their line number, never by a failed COPY, and
// nothing is written.
func TestImportRefusesWhatPostgresWouldReject(t *testing.T) {
	db := openFresh(t)
	good := `{"prompt":"p","responses":["a","b"],"ranking":[0,1],"labeler":"ada"}` + "\n"
	for _, tc := range []struct {
		name, line string
		rule       preference.Rule
	}{
		{"NUL", `{"prompt":"q","responses":["a\u0000","b"],"ranking":[0,1],"labeler":"ada"}`, preference.RuleNUL},
		{"empty labeler", `{"prompt":"q","responses":["a","b"],"ranking":[0,1],"labeler":""}`, preference.RuleEmptyLabeler},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, rd, err := importString(t, db, good+tc.line+"\n"+good, preference.FormatRanking, preference.ReaderOptions{}, false)
			if !errors.Is(err, ErrImportRefused) || !res.Refused {
				t.Fatalf("import: %v, want refused", err)
			}
			if len(rd.Problems) != 1 || rd.Problems[0].Line != 2 || rd.Problems[0].Rule != tc.rule || rd.Rows != 2 {
				t.Fatalf("problems %v after %d rows, want one %s on line 2 and reading stopped there", rd.Problems, rd.Rows, tc.rule)
			}
			if n := count(t, db, "comparisons") + count(t, db, "labelers") + count(t, db, "imports"); n != 0 {
				t.Errorf("a refused import wrote %d rows", n)
			}
		})
	}
	// A file that cannot be read fails with the reader's error, not with
	// Postgres's "COPY from stdin failed".
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(strings.Repeat(good, 100)))
	w.Close()
	rd, err := preference.NewReader(bytes.NewReader(gz.Bytes()[:gz.Len()-12]), preference.FormatRanking, preference.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Import(context.Background(), rd, ImportInfo{Name: "cut.jsonl.gz", Format: preference.FormatRanking})
	if !errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "COPY") {
		t.Fatalf("import of a truncated gzip: %v, want the read error", err)
	}
}

func TestImportRankingKeepsShownOrderAndTies(t *testing.T) {
	db := openFresh(t)
	file := `{"prompt":"sort cab=","responses":["abc","cab","acb"],"ranking":[0,2,1],"labeler":"cy"}` + "\n"
	if _, _, err := importString(t, db, file, preference.FormatRanking, preference.ReaderOptions{}, false); err != nil {
		t.Fatal(err)
	}
	var texts []string
	var ranks []int16
	var orderKnown bool
	var line int
	err := db.pool.QueryRow(context.Background(), `
		SELECT (SELECT array_agg(r.text ORDER BY u.o) FROM unnest(c.response_ids) WITH ORDINALITY u(id, o) JOIN responses r ON r.id = u.id),
		       c.ranks, c.order_known, c.import_line FROM comparisons c`).Scan(&texts, &ranks, &orderKnown, &line)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(texts) != "[abc cab acb]" || fmt.Sprint(ranks) != "[1 3 2]" || !orderKnown || line != 1 {
		t.Fatalf("stored %v %v order_known=%v line=%d", texts, ranks, orderKnown, line)
	}
}

func TestSnapshotExportLineage(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	file := `{"prompt":"sort cab=","responses":["abc","cab","acb"],"ranking":[0,2,1],"labeler":"cy"}
{"prompt":"upper x=","responses":["X","x"],"ranking":[0,1],"labeler":"dee"}
{"prompt":"upper y=","responses":["Y"," "],"ranking":[0,1],"labeler":"dee"}
`
	if _, _, err := importString(t, db, file, preference.FormatRanking, preference.ReaderOptions{}, false); err != nil {
		t.Fatal(err)
	}
	all, err := db.SnapshotWhere(ctx, "all", SnapshotFilter{})
	if err != nil || len(all.ComparisonIDs) != 3 {
		t.Fatalf("snapshot all: %+v %v", all, err)
	}
	clean, err := db.SnapshotWhere(ctx, "clean-dee", SnapshotFilter{Labelers: []string{"dee"}, ExcludeFlagged: true})
	if err != nil || len(clean.ComparisonIDs) != 1 {
		t.Fatalf("filtered snapshot: %+v %v", clean, err)
	}
	if _, err := db.SnapshotWhere(ctx, "typo", SnapshotFilter{ExcludeLabelers: []string{"dea"}}); !errors.Is(err, errkind.NotFound) {
		t.Errorf("unknown labeler in a filter: %v", err)
	}
	if _, err := db.SnapshotWhere(ctx, "none", SnapshotFilter{Split: "test"}); err == nil {
		t.Error("an empty snapshot was created")
	}

	export := func(name string, f preference.Format) []byte {
		var b bytes.Buffer
		err := db.ExportSnapshot(ctx, name, func(r ExportRow) error {
			lines, _ := preference.Export(f, r.Prompt, r.Responses, r.Ranks, r.Labeler)
			for _, l := range lines {
				b.Write(l)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	first := export("all", preference.FormatRanking)
	if !bytes.Equal(first, export("all", preference.FormatRanking)) {
		t.Fatal("two exports of one snapshot differ")
	}
	if string(first) != file {
		t.Errorf("ranking export differs from the imported file:\n%s\nwant\n%s", first, file)
	}
	// Importing the export adds nothing: the content is the same.
	res, _, err := importString(t, db, string(first), preference.FormatRanking, preference.ReaderOptions{}, false)
	if err != nil || res.Inserted != 0 {
		t.Fatalf("re-import of export: %+v %v", res, err)
	}
	pairs := export("all", preference.FormatPairwise)
	if n := bytes.Count(pairs, []byte("\n")); n != 5 {
		t.Errorf("pairwise export has %d lines, want 3+1+1", n)
	}

	// Lineage: the run's reward-model stage records the snapshot.
	if err := db.CreateRun(ctx, "run-l", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := db.BeginStage(ctx, "run-l", "rm", ""); err != nil {
		t.Fatal(err)
	}
	if err := db.SetStageSnapshot(ctx, "run-l", "rm", "all"); err != nil {
		t.Fatal(err)
	}
	ls, err := db.Lineage(ctx, "run-l")
	if err != nil || len(ls) != 1 {
		t.Fatalf("lineage: %+v %v", ls, err)
	}
	l := ls[0]
	if l.Snapshot != "all" || l.Comparisons != 3 || l.Flagged != 1 || fmt.Sprintf("%x", all.SHA256) != l.SHA256 {
		t.Errorf("lineage %+v", l)
	}
	if fmt.Sprint(l.Labelers) != "[{dee 2} {cy 1}]" || len(l.Imports) != 1 || l.Imports[0].Comparisons != 3 {
		t.Errorf("lineage labelers %v imports %v", l.Labelers, l.Imports)
	}
	if _, err := db.Lineage(ctx, "no-such-run"); !errors.Is(err, errkind.NotFound) {
		t.Errorf("lineage of a missing run: %v", err)
	}
}

func TestHHSampleImportAndAudit(t *testing.T) {
	path := filepath.Join("..", "..", "..", "shared", "data", "hh-rlhf", "harmless-base-test.jsonl.gz")
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("HH-RLHF sample not available: %v", err)
	}
	defer f.Close()
	db := openFresh(t)
	ctx := context.Background()
	rd, err := preference.NewReader(f, preference.FormatHH, preference.ReaderOptions{Labeler: "hh-rlhf"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Import(ctx, rd, ImportInfo{Name: "harmless-base-test.jsonl.gz", Format: preference.FormatHH})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 2312 || res.Flagged != 9 {
		t.Fatalf("HH import: %+v", res)
	}
	in, err := db.AuditCounts(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string][]int{}
	for _, fr := range in.FlaggedRows {
		for _, fl := range fr.Flags {
			lines[fl] = append(lines[fl], *fr.ImportLine)
		}
	}
	if fmt.Sprint(lines["prompt_mismatch"]) != "[1255 1689 1951 1953 2037]" || fmt.Sprint(lines["empty_response"]) != "[87 517 926 1104]" {
		t.Fatalf("audit flagged rows %v", lines)
	}
	rep := preference.Audit(in)
	var text strings.Builder
	rep.WriteText(&text)
	for _, want := range []string{"import line 1255", "prompt_mismatch", "import line 87", "empty_response"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("audit text lacks %q", want)
		}
	}
}

// TestAuditFindsUnreliableLabelers simulates the demo task's labelers (six
// reliable, one random, one always-first, one always-longer), imports their
// rankings and checks that the audit flags exactly the three unreliable ones.
func TestAuditFindsUnreliableLabelers(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	var file strings.Builder
	for _, r := range tasks.Simulate(11, tasks.Examples(11, 600), tasks.Panel(), 2, 4) {
		order := make([]int, len(r.Ranks))
		for i, rk := range r.Ranks {
			order[rk-1] = i
		}
		fmt.Fprintf(&file, "{\"prompt\":%q,\"responses\":[%q,%q],\"ranking\":[%d,%d],\"labeler\":%q}\n",
			r.Prompt, r.Responses[0], r.Responses[1], order[0], order[1], r.Labeler)
	}
	if _, _, err := importString(t, db, file.String(), preference.FormatRanking, preference.ReaderOptions{}, false); err != nil {
		t.Fatal(err)
	}
	snap, err := db.SnapshotWhere(ctx, "sim", SnapshotFilter{})
	if err != nil {
		t.Fatal(err)
	}
	// A reward model that knows the gold answer disagrees with the worst labels.
	var ids []int64
	var scores []float64
	rows, _ := db.pool.Query(ctx, "SELECT r.id, r.text, p.text FROM responses r JOIN prompts p ON p.id = r.prompt_id")
	for rows.Next() {
		var id int64
		var text, prompt string
		rows.Scan(&id, &text, &prompt)
		s, _ := tasks.Judge(prompt, text)
		ids, scores = append(ids, id), append(scores, 4*s)
	}
	rows.Close()
	if err := db.RecordRewardScores(ctx, snap.Name, "runs/sim/rm/100", ids, scores); err != nil {
		t.Fatal(err)
	}
	in, err := db.AuditCounts(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	rep := preference.Audit(in)
	flagged := map[string]string{}
	for _, f := range rep.Findings {
		if name, ok := strings.CutPrefix(f.Subject, "labeler "); ok {
			flagged[name] += f.Reason + "; "
		}
	}
	want := map[string]string{"rand": "majority", "first": "position bias", "long": "prefers the longer"}
	for name, reason := range want {
		if !strings.Contains(flagged[name], reason) {
			t.Errorf("labeler %s: findings %q, want %q", name, flagged[name], reason)
		}
	}
	for name, reasons := range flagged {
		if _, ok := want[name]; !ok {
			t.Errorf("reliable labeler %s flagged: %s", name, reasons)
		}
	}
	if a := rep.Agreement; a.Items == 0 || a.KrippendorffAlpha <= 0 || a.KrippendorffAlpha >= 1 {
		t.Errorf("agreement %+v", a)
	}
	if len(rep.RMDisagreements) == 0 {
		t.Error("no reward-model disagreements listed")
	}
	for _, d := range rep.RMDisagreements {
		if d.PLabel >= 0.5 {
			t.Errorf("listed disagreement with P(label)=%v", d.PLabel)
		}
	}
	var text strings.Builder
	rep.WriteText(&text)
	t.Logf("\n%s", text.String())
}

func TestAuditCountsContradictionsAndDuplicates(t *testing.T) {
	db := openFresh(t)
	file := `{"prompt":"upper a=","responses":["A","a"],"ranking":[0,1],"labeler":"x"}
{"prompt":"upper a=","responses":["a","A"],"ranking":[0,1],"labeler":"x"}
{"prompt":"upper a=","responses":["a","A"],"ranking":[1,0],"labeler":"x"}
{"prompt":"upper b=","responses":["B","b "],"ranking":[0,1],"labeler":"y"}
{"prompt":"upper b=","responses":["B","b"],"ranking":[0,1],"labeler":"y"}
{"prompt":"upper c=","responses":["C x","C  x "],"ranking":[0,1],"labeler":"y"}
{"prompt":"upper s=","responses":["SORT","sort","Sort"],"ranking":[0,1,2],"labeler":"z"}
{"prompt":"upper s=","responses":["SORT","sort","Sort"],"ranking":[2,1,0],"labeler":"z"}
`
	if _, _, err := importString(t, db, file, preference.FormatRanking, preference.ReaderOptions{}, false); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in, err := db.AuditCounts(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	// rank is the rank comparison cid gives response rid.
	rank := func(cid, rid int64) int {
		var rk int
		if err := db.pool.QueryRow(ctx, "SELECT ranks[array_position(response_ids, $2)] FROM comparisons WHERE id = $1", cid, rid).Scan(&rk); err != nil {
			t.Fatalf("rank of response %d in comparison %d: %v", rid, cid, err)
		}
		return rk
	}
	want := map[string]int64{"x": 1, "y": 0, "z": 3} // z reverses all three pairs of one ranking
	for _, l := range in.Labelers {
		if l.Contradictions != want[l.Name] {
			t.Errorf("labeler %s: %d contradictions, want %d", l.Name, l.Contradictions, want[l.Name])
		}
		if l.Contradictions == 0 {
			continue
		}
		// The example names two different comparisons, the first ranking
		// the pair one way and the second the other way.
		c, a, b := l.ContradictionExample, l.ContradictionPair[0], l.ContradictionPair[1]
		if c[0] == c[1] || a == b {
			t.Fatalf("labeler %s: example comparisons %v, responses %d and %d", l.Name, c, a, b)
		}
		if !(rank(c[0], a) < rank(c[0], b) && rank(c[1], b) < rank(c[1], a)) {
			t.Errorf("labeler %s: comparison %d does not rank %d over %d, or %d not %d over %d", l.Name, c[0], a, b, c[1], b, a)
		}
	}
	var evidence []string
	for _, f := range preference.Audit(in).Findings {
		if f.Reason == "contradicts itself" {
			evidence = append(evidence, f.Subject+": "+f.Evidence)
		}
	}
	if len(evidence) != 2 || !strings.Contains(strings.Join(evidence, "\n"), "labeler z: 3 response pairs ranked both ways (e.g. comparison ") {
		t.Errorf("self-contradiction findings:\n%s", strings.Join(evidence, "\n"))
	}
	if len(in.Duplicates) != 2 {
		t.Fatalf("duplicates %+v, want an exact group (x, lines 1 and 3) and a near one (y, lines 4 and 5)", in.Duplicates)
	}
	if in.Duplicates[0].Near == in.Duplicates[1].Near {
		t.Errorf("want one exact and one near group: %+v", in.Duplicates)
	}
	if len(in.DegeneratePairs) != 1 {
		t.Errorf("degenerate pairs %+v, want the 'C x' / 'C  x ' comparison", in.DegeneratePairs)
	}
}
