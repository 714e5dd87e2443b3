package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/preference"
	"github.com/instructflow/instructflow/storage/postgres/migrations"
)

func openFresh(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), testenv.FreshDatabase(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

func TestMigrationsApplyTwice(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.FreshDatabase(t) // migrated once
	runtime, _ := pgx.ParseConfig(dbURL)
	res, err := migrations.Migrate(ctx, testenv.OwnerURL(t, dbURL), runtime.User)
	if err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if res.From != res.To || res.Granted {
		t.Errorf("a second migrate did something: %+v", res)
	}
	db, err := Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := fs.Glob(os.DirFS("migrations"), "*.sql")
	if int(v) != len(files) || v != migrations.Latest() {
		t.Errorf("schema version %d, want %d (one per migration file)", v, len(files))
	}
	var tables int
	if err := db.pool.QueryRow(ctx,
		`SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'
		 AND table_name = ANY ('{labelers,prompts,responses,demonstrations,comparisons,label_snapshots,runs,stages,metrics,audit_log}')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 10 {
		t.Errorf("found %d of the 10 tables", tables)
	}
}

func TestOpenWrongPassword(t *testing.T) {
	cfg := testenv.Config(t)
	u, _ := url.Parse(cfg.Postgres.URL)
	u.User = url.UserPassword(u.User.Username(), "not-the-password")
	_, err := Open(context.Background(), u.String())
	if err == nil || !strings.Contains(err.Error(), "check the user and password in postgres.url") {
		t.Fatalf("Open with a wrong password: got %v, want a message naming the password", err)
	}
}

func ranking(labeler string, ranks ...int) preference.Ranking {
	return preference.Ranking{
		Prompt:    "reverse: abc",
		Responses: []string{"cba", "abc", "bca"}[:len(ranks)],
		Ranks:     ranks,
		Labeler:   labeler,
	}
}

func TestInsertRankingIsIdempotent(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	id1, created1, err := db.InsertRanking(ctx, ranking("alice", 1, 2, 3), "test", 0)
	if err != nil || !created1 {
		t.Fatalf("first insert: id %d created %v err %v", id1, created1, err)
	}
	id2, created2, err := db.InsertRanking(ctx, ranking("alice", 1, 2, 3), "test", 0)
	if err != nil || created2 || id2 != id1 {
		t.Fatalf("same content again: id %d created %v err %v; want id %d, not created", id2, created2, err, id1)
	}
	// A tie is a different judgement: a new comparison, sharing prompt and responses.
	id3, created3, err := db.InsertRanking(ctx, ranking("alice", 1, 1, 3), "test", 0)
	if err != nil || !created3 || id3 == id1 {
		t.Fatalf("tie: id %d created %v err %v", id3, created3, err)
	}
	c1, err := db.Comparison(ctx, id1)
	if err != nil {
		t.Fatal(err)
	}
	c3, err := db.Comparison(ctx, id3)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c1.ResponseIDs) != fmt.Sprint(c3.ResponseIDs) || c1.PromptID != c3.PromptID {
		t.Errorf("responses and prompt should be shared: %v vs %v", c1, c3)
	}
	if fmt.Sprint(c3.Ranks) != "[1 1 3]" {
		t.Errorf("ranks %v, want [1 1 3] in shown order", c3.Ranks)
	}
	if _, err := db.Comparison(ctx, 999999); !errors.Is(err, errkind.NotFound) {
		t.Errorf("missing comparison: %v, want ErrNotFound", err)
	}
	if _, _, err := db.InsertRanking(ctx, ranking("alice", 1), "test", 0); err == nil {
		t.Error("a ranking of one response was accepted")
	}
}

func TestComparisonsAreImmutable(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	id, _, err := db.InsertRanking(ctx, ranking("bob", 2, 1), "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, sql string }{
		{"update", "UPDATE comparisons SET ranks = '{1,2}' WHERE id = $1"},
		{"delete", "DELETE FROM comparisons WHERE id = $1"},
		{"truncate", "TRUNCATE comparisons CASCADE"},
		{"update audit log", "UPDATE audit_log SET action = 'x' WHERE $1::bigint > 0"},
		{"delete audit log", "DELETE FROM audit_log WHERE $1::bigint > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []any{id}
			if !strings.Contains(tc.sql, "$1") {
				args = nil
			}
			_, err := ownerConn(t, db).Exec(ctx, tc.sql, args...)
			if err == nil || !errors.Is(translate(err), errkind.Immutable) {
				t.Fatalf("%s as the owner: got %v, want the trigger to refuse", tc.sql, err)
			}
		})
	}
	c, err := db.Comparison(ctx, id)
	if err != nil || fmt.Sprint(c.Ranks) != "[2 1]" {
		t.Fatalf("comparison changed: %v %v", c, err)
	}

	// A correction supersedes: both rows stay, only the new one is current.
	fix, created, err := db.InsertRanking(ctx, ranking("bob", 1, 2), "correction", id)
	if err != nil || !created {
		t.Fatalf("supersede: %v", err)
	}
	var current []int64
	rows, _ := db.pool.Query(ctx, "SELECT id FROM current_comparisons ORDER BY id")
	current, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(current) != fmt.Sprint([]int64{fix}) {
		t.Errorf("current comparisons %v, want only the correction %d", current, fix)
	}
	if _, _, err := db.InsertRanking(ctx, ranking("carol", 1, 2), "correction", id); err == nil {
		t.Error("a comparison was superseded twice")
	}
	var audited int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE entity = 'comparisons'").Scan(&audited); err != nil {
		t.Fatal(err)
	}
	if audited != 2 {
		t.Errorf("%d audit entries for comparison inserts, want 2", audited)
	}
}

func TestSnapshots(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	var ids []int64
	for _, r := range []preference.Ranking{ranking("a", 1, 2), ranking("b", 2, 1), ranking("c", 1, 2, 3)} {
		id, _, err := db.InsertRanking(ctx, r, "test", 0)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	s, err := db.CreateSnapshot(ctx, "snap-1", []int64{ids[2], ids[0], ids[1], ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.ComparisonIDs) != fmt.Sprint(ids) {
		t.Errorf("snapshot ids %v, want sorted unique %v", s.ComparisonIDs, ids)
	}
	got, err := db.Snapshot(ctx, "snap-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.SHA256 != s.SHA256 || fmt.Sprint(got.ComparisonIDs) != fmt.Sprint(ids) {
		t.Errorf("snapshot changed on read: %+v, stored %+v", got, s)
	}
	owner := ownerConn(t, db)
	if _, err := owner.Exec(ctx, "UPDATE label_snapshots SET comparison_ids = '{1}'"); !errors.Is(translate(err), errkind.Immutable) {
		t.Errorf("update of a snapshot: %v, want refused", err)
	}
	if _, err := owner.Exec(ctx, "DELETE FROM label_snapshots"); !errors.Is(translate(err), errkind.Immutable) {
		t.Errorf("delete of a snapshot: %v, want refused", err)
	}
	if _, err := db.CreateSnapshot(ctx, "snap-2", []int64{ids[0], 424242}); !errors.Is(err, errkind.NotFound) {
		t.Errorf("snapshot of a missing comparison: %v, want ErrNotFound", err)
	}
	if _, err := db.Snapshot(ctx, "nope"); !errors.Is(err, errkind.NotFound) {
		t.Errorf("missing snapshot: %v, want ErrNotFound", err)
	}
}

func TestRunsStagesMetrics(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	spec := []byte(`{"seed": 1}`)
	if err := db.CreateRun(ctx, "run-1", spec); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateRun(ctx, "run-1", spec); err != nil {
		t.Fatalf("same run again: %v", err)
	}
	if err := db.CreateRun(ctx, "run-1", []byte(`{"seed": 2}`)); err == nil {
		t.Fatal("a run id was reused with another spec")
	}
	if err := db.CreateRun(ctx, "../etc", spec); err == nil {
		t.Fatal("an invalid run id was accepted")
	}
	for _, st := range []string{"running", "succeeded"} {
		if err := db.SetStageStatus(ctx, "run-1", "sft", st); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := db.StageStatus(ctx, "run-1", "sft"); err != nil || st != "succeeded" {
		t.Fatalf("stage status %q %v", st, err)
	}
	if err := db.SetStageStatus(ctx, "run-1", "sft", "exploded"); err == nil {
		t.Fatal("an unknown status was accepted")
	}
	for range 2 { // a retried activity records the same step twice
		if err := db.RecordMetrics(ctx, "run-1", "sft", 10, map[string]float64{"loss": 1.5, "lr": 3e-4}); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := db.Metrics(ctx, "run-1", "sft")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ms) != "[{10 loss 1.5} {10 lr 0.0003}]" {
		t.Errorf("metrics %v", ms)
	}
	if err := db.RecordMetrics(ctx, "run-1", "ppo", 1, map[string]float64{"kl": 0.1}); err == nil {
		t.Error("metrics for a stage that does not exist were accepted")
	}
	if err := db.Audit(ctx, "start", "run", "run-1", []byte(`{"by":"test"}`)); err != nil {
		t.Fatal(err)
	}
}
