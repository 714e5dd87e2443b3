package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/preference"
)

// TestForeignResponsesRefused: the database refuses a comparison (and a
// batch item) that pairs a prompt with another prompt's response, and a
// snapshot row stored before it did is bad input that names the
// comparison, not an index past the end in the reward model.
func TestForeignResponsesRefused(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	var ids [2]int64
	for i, p := range []string{"upper a=", "upper b="} {
		id, _, err := insertRanking(ctx, db, preference.Ranking{Prompt: p, Responses: []string{"X" + p, "y" + p}, Ranks: []int{1, 2}, Labeler: "ada"}, "t", 0)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	a, _ := readComparison(ctx, db, ids[0])
	b, _ := readComparison(ctx, db, ids[1])
	forged := []int64{a.ResponseIDs[0], b.ResponseIDs[1]} // a's prompt, one of b's responses
	h := sha256.Sum256([]byte("forged"))
	insert := `INSERT INTO comparisons (prompt_id, labeler_id, response_ids, ranks, content_sha256, source) VALUES ($1, $2, $3, '{1,2}', $4, 't')`
	_, err := db.pool.Exec(ctx, insert, a.PromptID, a.LabelerID, forged, h[:])
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("response %d is not a response to prompt %d", b.ResponseIDs[1], a.PromptID)) {
		t.Fatalf("a comparison with another prompt's response: %v", err)
	}
	if !errors.Is(translate(err), errkind.BadInput) {
		t.Errorf("the refusal is not bad input: %v", translate(err))
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO labeling_batches (name) VALUES ('b1')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO labeling_batch_items (batch_id, item, prompt_id, response_ids)
		SELECT id, 0, $1, $2 FROM labeling_batches`, a.PromptID, forged); err == nil {
		t.Fatal("a batch item with another prompt's response was stored")
	}
	// A label of a batch item ranks what the item shows: its prompt's
	// other responses, or another prompt, are refused.
	if _, err := db.pool.Exec(ctx, `INSERT INTO labeling_batch_items (batch_id, item, prompt_id, response_ids)
		SELECT id, 0, $1, $2 FROM labeling_batches`, a.PromptID, a.ResponseIDs); err != nil {
		t.Fatal(err)
	}
	label := `INSERT INTO comparisons (prompt_id, labeler_id, response_ids, ranks, content_sha256, source, batch_id, batch_item)
		SELECT $1, $2, $3, '{1,2}', $4, 't', id, 0 FROM labeling_batches`
	h2 := sha256.Sum256([]byte("of the item"))
	if _, err := db.pool.Exec(ctx, label, b.PromptID, b.LabelerID, b.ResponseIDs, h2[:]); err == nil || !strings.Contains(err.Error(), "ranks other responses than the item shows") {
		t.Errorf("a label of item 0 ranking another prompt: %v", err)
	}
	if _, err := db.pool.Exec(ctx, label, a.PromptID, a.LabelerID, []int64{a.ResponseIDs[1], a.ResponseIDs[0]}, h2[:]); err != nil {
		t.Errorf("a label of item 0 in another shown order: %v", err)
	}

	// A forgery from before the check: the owner stores one with the
	// trigger off, as an older schema would have.
	owner := ownerConn(t, db)
	for _, sql := range []string{"ALTER TABLE comparisons DISABLE TRIGGER comparisons_own_responses",
		fmt.Sprintf(`INSERT INTO comparisons (prompt_id, labeler_id, response_ids, ranks, content_sha256, source)
			VALUES (%d, %d, '{%d,%d}', '{1,2}', sha256('old forgery'), 't')`, a.PromptID, a.LabelerID, forged[0], forged[1]),
		"ALTER TABLE comparisons ENABLE TRIGGER comparisons_own_responses"} {
		if _, err := owner.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	_, err = db.SnapshotWhere(ctx, "all", SnapshotFilter{})
	if err == nil {
		err = db.ExportSnapshot(ctx, "all", func(ExportRow) error { return nil })
	}
	if !errors.Is(err, errkind.BadInput) || !strings.Contains(err.Error(), "1 of its 2 response ids name responses to its prompt") {
		t.Fatalf("a snapshot of the old forgery: %v", err)
	}
}
