package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/preference"
)

func importDataset(t *testing.T, db *DB, name, input string, opts dataset.Options, info DatasetImportInfo) (DatasetImportResult, error) {
	t.Helper()
	rd, err := dataset.NewReader(strings.NewReader(input), opts)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(input))
	info.Dataset, info.Name, info.Format = name, t.Name(), opts.Format
	info.FileSHA256 = func() [32]byte { return sum }
	return db.ImportDataset(context.Background(), rd, info)
}

func rowsOf(t *testing.T, db *DB, name string) []dataset.Example {
	t.Helper()
	var rows []dataset.Example
	if err := db.DatasetRows(context.Background(), name, "", func(r dataset.Example) error {
		rows = append(rows, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rows
}

const messagesFile = `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
{"messages": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4."}]}
{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey."}]}
`

func TestImportDataset(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	opts := dataset.Options{Format: dataset.FormatMessages}

	// A dry run counts and writes nothing.
	res, err := importDataset(t, db, "chat", messagesFile, opts, DatasetImportInfo{DryRun: true})
	if err != nil || res.Inserted != 3 || count(t, db, "dataset_rows") != 0 || count(t, db, "datasets") != 0 {
		t.Fatalf("dry run: %+v, %v; %d rows stored", res, err, count(t, db, "dataset_rows"))
	}
	res, err = importDataset(t, db, "chat", messagesFile, opts, DatasetImportInfo{})
	want := DatasetImportResult{ImportID: res.ImportID, Accepted: 4, DuplicateInFile: 1, Inserted: 3, PromptsAdded: 2, Train: 3}
	if err != nil || !reflect.DeepEqual(res, want) {
		t.Fatalf("import: %+v, %v; want %+v", res, err, want)
	}
	rows := rowsOf(t, db, "chat")
	wantRows := []dataset.Example{
		{Prompt: "Hi", Target: "Hello!", Split: dataset.Train},
		{Prompt: "Terse.\n\nHuman: 2+2?\n\nAssistant:", Target: "4.", Split: dataset.Train,
			Turns: []chat.Message{{Role: chat.System, Content: "Terse."}, {Role: chat.User, Content: "2+2?"}}},
		{Prompt: "Hi", Target: "Hey.", Split: dataset.Train},
	}
	if !reflect.DeepEqual(rows, wantRows) {
		t.Fatalf("rows %+v\nwant %+v", rows, wantRows)
	}
	// Again: nothing new, and it says so.
	res, err = importDataset(t, db, "chat", messagesFile, opts, DatasetImportInfo{})
	if err != nil || res.Inserted != 0 || res.AlreadyPresent != 3 || res.PromptsAdded != 0 || count(t, db, "dataset_rows") != 3 {
		t.Fatalf("re-import: %+v, %v", res, err)
	}
	// The same prompts as prompt rows of another dataset share their prompts.
	res, err = importDataset(t, db, "chat-prompts", messagesFile, dataset.Options{Format: dataset.FormatMessages, Kind: dataset.Prompt}, DatasetImportInfo{})
	if err != nil || res.Inserted != 2 || res.PromptsAdded != 0 || count(t, db, "prompts") != 2 {
		t.Fatalf("prompts of the same file: %+v, %v", res, err)
	}
	info, err := db.Dataset(ctx, "chat")
	if err != nil || info.Rows != 3 || info.Demonstrations != 3 || info.Train != 3 || info.Imports != 2 {
		t.Fatalf("Dataset: %+v, %v", info, err)
	}
	list, err := db.Datasets(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "chat" || list[1].Name != "chat-prompts" || list[1].Prompts != 2 {
		t.Fatalf("Datasets: %+v, %v", list, err)
	}
	if _, err := db.Dataset(ctx, "nope"); !errors.Is(err, errkind.NotFound) {
		t.Fatalf("Dataset(nope) = %v, want NotFound", err)
	}

	// A prompt is never on both sides: held out here, train before.
	res, err = importDataset(t, db, "chat", `{"prompt": "Hi", "completion": "Yo."}`+"\n"+`{"prompt": "new", "completion": "x"}`+"\n",
		dataset.Options{Format: dataset.FormatPromptCompletion, Split: dataset.Heldout}, DatasetImportInfo{})
	if !errors.Is(err, ErrImportRefused) || res.SplitConflicts != 1 || len(res.Conflicts) != 1 || res.Conflicts[0] != (SplitConflict{1, "heldout", "train"}) {
		t.Fatalf("split conflict: %+v, %v", res, err)
	}
	if count(t, db, "prompts") != 2 || count(t, db, "dataset_rows") != 5 {
		t.Fatal("a refused import wrote rows")
	}
	res, err = importDataset(t, db, "chat", `{"prompt": "Hi", "completion": "Yo."}`+"\n"+`{"prompt": "new", "completion": "x"}`+"\n",
		dataset.Options{Format: dataset.FormatPromptCompletion, Split: dataset.Heldout}, DatasetImportInfo{SkipConflicts: true})
	if err != nil || res.Inserted != 1 || res.Heldout != 1 || res.SplitConflicts != 1 || res.DuplicateInFile != 0 {
		t.Fatalf("conflicts skipped: %+v, %v", res, err)
	}
	if _, err := importDataset(t, db, "Bad Name", messagesFile, opts, DatasetImportInfo{}); !errors.Is(err, errkind.BadInput) {
		t.Fatalf("bad name: %v", err)
	}
}

// TestImportDatasetFillsTurns: an HH pair imported as labels stores its
// prompt's turns (filled in by a dataset import where an older import
// stored none); the same transcript imported into a dataset is the same
// prompt, in the same split.
func TestImportDatasetFillsTurns(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	const hh = `{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}` + "\n"
	rd, err := preference.NewReader(strings.NewReader(hh), preference.FormatHH, preference.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Import(ctx, rd, ImportInfo{Name: "hh", Format: preference.FormatHH, HeldoutFraction: 0.999}); err != nil {
		t.Fatal(err)
	}
	var split string
	var turns []byte
	if err := db.pool.QueryRow(ctx, "SELECT split, turns FROM prompts").Scan(&split, &turns); err != nil || split != "heldout" || string(turns) != `[{"role": "user", "content": "Hi"}]` {
		t.Fatalf("labels' prompt: split %q turns %s, %v; want held out (0.999) with its turn", split, turns, err)
	}
	// An older import stored no turns: the dataset import fills them in.
	if _, err := db.pool.Exec(ctx, "UPDATE prompts SET turns = NULL"); err != nil {
		t.Fatal(err)
	}
	res, err := importDataset(t, db, "hh", hh, dataset.Options{Format: dataset.FormatHH, Split: dataset.Heldout}, DatasetImportInfo{})
	if err != nil || res.Inserted != 1 || res.PromptsAdded != 0 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	rows := rowsOf(t, db, "hh")
	if len(rows) != 1 || rows[0].Prompt != "\n\nHuman: Hi\n\nAssistant:" || rows[0].Target != " Hello." ||
		!reflect.DeepEqual(rows[0].Turns, []chat.Message{{Role: chat.User, Content: "Hi"}}) {
		t.Fatalf("rows %+v", rows)
	}
	if n := count(t, db, "responses"); n != 2 {
		t.Fatalf("%d responses; the demonstration is the labels' chosen response, want 2", n)
	}
}

// TestPairwiseHHPromptGetsTurns: a pairwise file whose prompts are HH
// transcripts (TRL's HH-derived data) stores them with their turns, as
// --format hh does; other prompts get none.
func TestPairwiseHHPromptGetsTurns(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	const pairs = `{"prompt": "\n\nHuman: Hi\n\nAssistant:", "chosen": " Hello.", "rejected": " Go away.", "labeler": "ada"}
{"prompt": "upper a=", "chosen": "A", "rejected": "a", "labeler": "ada"}
`
	rd, err := preference.NewReader(strings.NewReader(pairs), preference.FormatPairwise, preference.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Import(ctx, rd, ImportInfo{Name: "pairs", Format: preference.FormatPairwise}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	rows, err := db.pool.Query(ctx, "SELECT text, coalesce(turns::text, 'NULL') FROM prompts")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var text, turns string
		if err := rows.Scan(&text, &turns); err != nil {
			t.Fatal(err)
		}
		got[text] = turns
	}
	if got["\n\nHuman: Hi\n\nAssistant:"] != `[{"role": "user", "content": "Hi"}]` || got["upper a="] != "NULL" {
		t.Errorf("prompts' turns %q", got)
	}
}
