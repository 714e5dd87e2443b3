package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/instructflow/instructflow/errkind"
)

func TestLoadSourceIsIdempotentAndKeepsOrder(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	ps := []SourcePrompt{
		{Text: "upper b=", Split: "train", Demonstration: "B"},
		{Text: "upper a=", Split: "train", Demonstration: "A"},
		{Text: "sort ba=", Split: "heldout", Demonstration: "ab"},
		{Text: "sort cb=", Split: "heldout"},
	}
	for i, want := range []int64{4, 0} {
		added, err := db.LoadSource(ctx, "t", "writers", ps)
		if err != nil || added != want {
			t.Fatalf("load %d: added %d, %v; want %d", i, added, err, want)
		}
	}
	train, err := db.Prompts(ctx, "t", "train")
	if err != nil || !slices.Equal(train, []string{"upper b=", "upper a="}) {
		t.Errorf("train prompts %v %v", train, err)
	}
	demos, err := db.Demonstrations(ctx, "t", "heldout")
	if err != nil || !slices.Equal(demos, []Pair{{"sort ba=", "ab"}}) {
		t.Errorf("held-out demonstrations %v %v", demos, err)
	}
	if other, _ := db.Prompts(ctx, "other", "train"); len(other) != 0 {
		t.Errorf("another source's prompts: %v", other)
	}
}

func TestBatchLifecycle(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	if err := db.CreateRun(ctx, "r1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	items := []BatchItem{
		{Item: 0, Prompt: "upper a=", Responses: []string{"A", "a", "AA"}},
		{Item: 1, Prompt: "upper a=", Responses: []string{"a", "A"}}, // the prompt again, another round
		{Item: 2, Prompt: "sort ba=", Responses: []string{"ab", "ba"}},
	}
	deadline := time.Now().Add(time.Hour)
	b, err := db.CreateBatch(ctx, "r1-labels", "r1", deadline, Labeling{}, items)
	if err != nil {
		t.Fatal(err)
	}
	again, err := db.CreateBatch(ctx, "r1-labels", "r1", deadline, Labeling{}, items)
	if err != nil || again.ID != b.ID {
		t.Fatalf("creating the batch again: %+v %v", again, err)
	}
	if _, err := db.CreateBatch(ctx, "r1-labels", "r1", deadline, Labeling{}, items[:1]); err == nil {
		t.Error("a batch of the same name with other items was accepted")
	}
	if open, _ := db.OpenBatches(ctx, "r1"); !slices.Equal(open, []string{"r1-labels"}) {
		t.Errorf("open batches %v", open)
	}
	got, err := db.UnlabeledItems(ctx, "r1-labels")
	if err != nil || len(got) != 3 || !slices.Equal(got[1].Responses, []string{"a", "A"}) {
		t.Fatalf("unlabeled items %+v %v", got, err)
	}
	labels := []BatchLabel{{Item: 0, Labeler: "ada", Ranks: []int{1, 2, 2}}, {Item: 1, Labeler: "bo", Ranks: []int{2, 1}}}
	for i, want := range []int64{2, 0} {
		n, err := db.AddLabels(ctx, "r1-labels", "simulated", labels)
		if err != nil || n != want {
			t.Fatalf("add labels %d: %d %v, want %d", i, n, err, want)
		}
	}
	if _, err := db.AddLabels(ctx, "r1-labels", "human", []BatchLabel{{Item: 2, Labeler: "cy", Ranks: []int{1, 2}}, {Item: 9, Labeler: "cy", Ranks: []int{1, 2}}}); !errors.Is(err, errkind.NotFound) || !strings.Contains(err.Error(), "no item 9") {
		t.Errorf("a label for an item the batch lacks: %v", err)
	}
	if _, err := db.AddLabels(ctx, "r1-labels", "human", []BatchLabel{{Item: 2, Labeler: "cy", Ranks: []int{1, 2, 3}}}); err == nil {
		t.Error("ranks of another length than the item's responses were accepted")
	}
	b, err = db.GetBatch(ctx, "r1-labels")
	if err != nil || b.Items != 3 || b.Labeled != 2 || b.Run != "r1" {
		t.Fatalf("batch %+v %v", b, err)
	}
	if left, _ := db.UnlabeledItems(ctx, "r1-labels"); len(left) != 1 || left[0].Item != 2 {
		t.Errorf("left to label %+v", left)
	}
	snap, err := db.SnapshotWhere(ctx, "r1-rm", SnapshotFilter{Batch: "r1-labels"})
	if err != nil || len(snap.ComparisonIDs) != 2 {
		t.Fatalf("snapshot of the batch %+v %v", snap, err)
	}
	var rows []ExportRow
	if err := db.ExportSnapshot(ctx, "r1-rm", func(r ExportRow) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Labeler != "ada" || !slices.Equal(rows[0].Ranks, []int16{1, 2, 2}) || rows[0].Split != "train" {
		t.Errorf("exported %+v", rows)
	}
	if _, err := db.AddLabels(ctx, "r1-labels", "human", []BatchLabel{{Item: 2, Labeler: "cy", Ranks: []int{1, 2}}}); err != nil {
		t.Fatal(err)
	}
	if open, _ := db.OpenBatches(ctx, ""); len(open) != 0 {
		t.Errorf("open batches after labeling all: %v", open)
	}
}

func TestStageRecords(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	if err := db.CreateRun(ctx, "r2", []byte(`{"seed": 1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetStage(ctx, "r2", "sft"); !errors.Is(err, errkind.NotFound) {
		t.Fatalf("a stage that never began: %v", err)
	}
	for range 2 {
		if err := db.BeginStage(ctx, "r2", "sft", "h1"); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := db.GetStage(ctx, "r2", "sft")
	if err := db.FinishStage(ctx, "r2", "sft", []byte(`{"stage": "sft"}`), "runs/r2/sft/10/", "abc"); err != nil {
		t.Fatal(err)
	}
	st, err := db.GetStage(ctx, "r2", "sft")
	if err != nil || st.Status != "succeeded" || st.Attempts != 2 || st.ConfigSHA256 != "h1" || st.CheckpointKey != "runs/r2/sft/10/" ||
		st.FinishedAt == nil || !st.StartedAt.Equal(*first.StartedAt) {
		t.Errorf("stage %+v %v", st, err)
	}
	if err := db.EndStage(ctx, "r2", "ppo", "failed", "ppo: bad"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetRunStatus(ctx, "r2", "failed", nil, "ppo: bad"); err != nil {
		t.Fatal(err)
	}
	if err := db.ResumeRun(ctx, "r2", []byte(`{"seed": 2}`), func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	r, err := db.GetRun(ctx, "r2")
	if err != nil || r.Status != "pending" || r.Error != "" || string(r.Spec) != `{"seed": 2}` {
		t.Errorf("run %+v %v", r, err)
	}
	stages, _ := db.Stages(ctx, "r2")
	if len(stages) != 2 || stages[0].Name != "sft" || stages[1].Error != "ppo: bad" {
		t.Errorf("stages %+v", stages)
	}
	var audited int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE action = 'update_spec' AND entity_id = 'r2'").Scan(&audited); err != nil || audited != 1 {
		t.Errorf("spec change audited %d times, %v", audited, err)
	}
	if err := db.SetRunStatus(ctx, "nope", "running", nil, ""); !errors.Is(err, errkind.NotFound) {
		t.Errorf("status of a missing run: %v", err)
	}
}

// TestCreateBatchFromParts: a batch given a part at a time, in parts
// larger and smaller than one insert round, is stored whole with its items
// in order; one whose parts fail or fall short of the announced count is
// not stored at all.
func TestCreateBatchFromParts(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	if err := db.CreateRun(ctx, "r1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	n := 2*batchInsertItems + 345
	items := make([]BatchItem, n)
	for i := range items {
		items[i] = BatchItem{Item: i, Prompt: fmt.Sprintf("upper w%d=", i%700), // prompts repeat across parts
			Responses: []string{fmt.Sprintf("W%d", i%700), fmt.Sprintf("w%d", i)}}
	}
	fill := func(sizes ...int) func(add func([]BatchItem) error) error {
		return func(add func([]BatchItem) error) error {
			start := 0
			for _, size := range sizes {
				if err := add(items[start : start+size]); err != nil {
					return err
				}
				start += size
			}
			return nil
		}
	}
	deadline := time.Now().Add(time.Hour)
	b, err := db.CreateBatchFrom(ctx, "r1-labels", "r1", deadline, n, Labeling{}, fill(10, batchInsertItems+7, n-10-batchInsertItems-7))
	if err != nil || b.Items != n {
		t.Fatalf("CreateBatchFrom: %+v, %v", b, err)
	}
	got, err := db.UnlabeledItems(ctx, "r1-labels")
	if err != nil || len(got) != n {
		t.Fatalf("unlabeled items: %d, %v; want %d", len(got), err, n)
	}
	for i, it := range got {
		if it.Item != i || it.Prompt != items[i].Prompt || !slices.Equal(it.Responses, items[i].Responses) {
			t.Fatalf("item %d stored as %+v, want %+v", i, it, items[i])
		}
	}
	for name, tc := range map[string]struct {
		n    int
		fill func(add func([]BatchItem) error) error
	}{
		"a part fails": {n: 20, fill: func(add func([]BatchItem) error) error {
			if err := add(items[:10]); err != nil {
				return err
			}
			return errors.New("sampling broke")
		}},
		"fewer than announced": {n: 20, fill: fill(10)},
		"misnumbered":          {n: 20, fill: func(add func([]BatchItem) error) error { return add(items[1:21]) }},
	} {
		batch := "r1-" + strings.ReplaceAll(name, " ", "-")
		if _, err := db.CreateBatchFrom(ctx, batch, "r1", deadline, tc.n, Labeling{}, tc.fill); err == nil {
			t.Errorf("%s: stored", name)
		}
		if _, err := db.GetBatch(ctx, batch); !errors.Is(err, errkind.NotFound) {
			t.Errorf("%s: batch left behind (%v)", name, err)
		}
	}
}

// TestBatchRanksFollowTheComparison: a labeling tool may record a pair in
// another order than the item's; BatchRanks gives each comparison's
// responses in its own order, the one its ranks follow.
func TestBatchRanksFollowTheComparison(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	if err := db.CreateRun(ctx, "r1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateBatch(ctx, "r1-eval", "r1", time.Now().Add(time.Hour), Labeling{}, []BatchItem{{Item: 0, Prompt: "upper a=", Responses: []string{"A", "a"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddLabels(ctx, "r1-eval", "human", []BatchLabel{{Item: 0, Labeler: "ada", Ranks: []int{1, 2}}}); err != nil {
		t.Fatal(err)
	}
	// Another tool shows the pair reversed and records it so: "A" is still best.
	h := sha256.Sum256([]byte("reversed"))
	if _, err := db.pool.Exec(ctx, `WITH l AS (INSERT INTO labelers (name) VALUES ('bo') RETURNING id)
		INSERT INTO comparisons (prompt_id, labeler_id, response_ids, ranks, content_sha256, batch_id, batch_item)
		SELECT i.prompt_id, l.id, ARRAY[i.response_ids[2], i.response_ids[1]], '{2,1}', $1, i.batch_id, 0
		FROM labeling_batch_items i, l`, h[:]); err != nil {
		t.Fatal(err)
	}
	got, err := db.BatchRanks(ctx, "r1-eval")
	if err != nil || len(got) != 2 {
		t.Fatalf("ranks %+v %v", got, err)
	}
	best := sha256.Sum256([]byte("A"))
	for _, c := range got {
		i := slices.Index(c.Ranks, 1)
		if i < 0 || !bytes.Equal(c.Responses[i], best[:]) {
			t.Errorf("comparison %+v: the best response is not %q", c, "A")
		}
	}
}

// A sampled response with a NUL byte (a byte-level model may sample one)
// is stored with U+FFFD in its place, not refused by Postgres.
func TestBatchStoresNUL(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	if err := db.CreateRun(ctx, "r1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateBatch(ctx, "r1-labels", "r1", time.Now().Add(time.Hour), Labeling{},
		[]BatchItem{{Item: 0, Prompt: "say x=", Responses: []string{"a\x00b", "ab"}}}); err != nil {
		t.Fatal(err)
	}
	items, err := db.UnlabeledItems(ctx, "r1-labels")
	if err != nil || len(items) != 1 || items[0].Responses[0] != "a\uFFFDb" || items[0].Responses[0] != StoredText("a\x00b") {
		t.Fatalf("items %+v, %v", items, err)
	}
}
