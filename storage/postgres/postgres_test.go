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

func TestSnapshots(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	var ids []int64
	for _, r := range []preference.Ranking{ranking("a", 1, 2), ranking("b", 2, 1), ranking("c", 1, 2, 3)} {
		id, _, err := insertRanking(ctx, db, r, "test", 0)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	s, err := db.SnapshotWhere(ctx, "snap-1", SnapshotFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.ComparisonIDs) != fmt.Sprint(ids) {
		t.Errorf("snapshot ids %v, want every comparison, sorted: %v", s.ComparisonIDs, ids)
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
	if _, err := db.SnapshotWhere(ctx, "snap-2", SnapshotFilter{Labelers: []string{"nobody"}}); !errors.Is(err, errkind.NotFound) {
		t.Errorf("snapshot of a labeler that does not exist: %v, want ErrNotFound", err)
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
	if err := db.BeginStage(ctx, "run-1", "sft", "h1"); err != nil {
		t.Fatal(err)
	}
	if err := db.EndStage(ctx, "run-1", "sft", "exploded", ""); err == nil {
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
}
