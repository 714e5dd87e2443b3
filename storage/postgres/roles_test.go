package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/preference"
	"github.com/instructflow/instructflow/storage/postgres/migrations"
)

// ownerConn connects to db's database as the schema's owner.
func ownerConn(t *testing.T, db *DB) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	var name string
	if err := db.pool.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, testenv.OwnerURL(t, "postgres:///"+name))
	if err != nil {
		t.Fatalf("connect as the owner: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// runtimeConn is one connection of db's pool: the runtime role, with a
// session of its own (SET commands stay on it).
func runtimeConn(t *testing.T, db *DB) *pgx.Conn {
	t.Helper()
	c, err := db.pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Release)
	return c.Conn()
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// The application's own credentials cannot rewrite history: no UPDATE,
// DELETE or TRUNCATE of the append-only tables, no way around their
// triggers, no objects of its own in the schema.
func TestRuntimeRoleCannotChangeHistory(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	id, _, err := insertRanking(ctx, db, ranking("bob", 2, 1), "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SnapshotWhere(ctx, "s", SnapshotFilter{}); err != nil {
		t.Fatal(err)
	}
	conn := runtimeConn(t, db)
	var super bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || super {
		t.Fatalf("the runtime role is a superuser (%v, %v); the test stack must connect as a NOSUPERUSER role", super, err)
	}
	for _, sql := range []string{
		"UPDATE comparisons SET ranks = '{1,2}'",
		"DELETE FROM comparisons",
		"TRUNCATE comparisons CASCADE",
		"UPDATE audit_log SET action = 'x'",
		"DELETE FROM audit_log",
		"TRUNCATE audit_log",
		"UPDATE label_snapshots SET comparison_ids = '{1}'",
		"DELETE FROM label_snapshots",
		"UPDATE responses SET text = 'forged'",
		"UPDATE prompts SET split = 'train'",
		"UPDATE labelers SET name = 'someone else'",
		"UPDATE runs SET id = 'renamed'",
		"ALTER TABLE comparisons DISABLE TRIGGER comparisons_immutable",
		"ALTER TABLE audit_log DISABLE TRIGGER USER",
		"SET session_replication_role = replica",
		"CREATE TABLE public.comparisons_shadow (id bigint)",
		"CREATE FUNCTION public.count(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint'",
	} {
		t.Run(sql, func(t *testing.T) {
			_, err := conn.Exec(ctx, sql)
			if err == nil {
				t.Fatalf("the runtime role may: %s", sql)
			}
			if code := pgCode(err); code != "42501" { // insufficient_privilege
				t.Errorf("%s: %v, want refused for lack of privilege (42501)", sql, err)
			}
		})
	}
	c, err := readComparison(ctx, db, id)
	if err != nil || c.Ranks[0] != 2 {
		t.Fatalf("comparison changed: %+v %v", c, err)
	}
	if _, err := db.Snapshot(ctx, "s"); err != nil {
		t.Fatalf("snapshot after the attempts: %v", err)
	}
}

// Open does not migrate: a database behind this build is refused with the
// command that fixes it.
func TestOpenRefusesPendingMigrations(t *testing.T) {
	ctx := context.Background()
	ownerURL := testenv.EmptyDatabase(t)
	runtimeURL := testenv.RuntimeURL(t, ownerURL)
	runtime, _ := pgx.ParseConfig(runtimeURL)

	_, err := Open(ctx, runtimeURL)
	if !errors.Is(err, ErrSchemaPending) || !strings.Contains(err.Error(), "run `instructflow db migrate`") {
		t.Fatalf("Open of an empty database: %v, want a message to run db migrate", err)
	}
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := migrations.MigrateTo(ctx, conn, 3); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, runtimeURL)
	if !errors.Is(err, ErrSchemaPending) || !strings.Contains(err.Error(), "run `instructflow db migrate`") {
		t.Fatalf("Open of a database at version 3: %v, want a message to run db migrate", err)
	}
	if _, err := migrations.Migrate(ctx, ownerURL, runtime.User); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, runtimeURL)
	if err != nil {
		t.Fatalf("Open after db migrate: %v", err)
	}
	db.Close()
}

// A snapshot's hash covers its texts, so a change behind InstructFlow's
// back (here the owner rewriting a response) is found when it is read.
func TestSnapshotHashCoversContent(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	for _, r := range []preference.Ranking{ranking("a", 1, 2), ranking("b", 2, 1)} {
		if _, _, err := insertRanking(ctx, db, r, "test", 0); err != nil {
			t.Fatal(err)
		}
	}
	s, err := db.SnapshotWhere(ctx, "frozen", SnapshotFilter{})
	if err != nil {
		t.Fatal(err)
	}

	// The same ids over other texts hash differently.
	other := openFresh(t)
	for _, r := range []preference.Ranking{ranking("a", 1, 2), ranking("b", 1, 2)} {
		if _, _, err := insertRanking(ctx, other, r, "test", 0); err != nil {
			t.Fatal(err)
		}
	}
	o, err := other.SnapshotWhere(ctx, "frozen", SnapshotFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if o.ComparisonIDs[0] != s.ComparisonIDs[0] || o.ComparisonIDs[1] != s.ComparisonIDs[1] || o.SHA256 == s.SHA256 {
		t.Fatalf("snapshots of the same ids with other ranks: ids %v/%v, hashes equal %v", s.ComparisonIDs, o.ComparisonIDs, o.SHA256 == s.SHA256)
	}

	if _, err := ownerConn(t, db).Exec(ctx, "UPDATE responses SET text = 'bca!' WHERE text = 'abc'"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Snapshot(ctx, "frozen"); !errors.Is(err, errkind.Corrupt) || !strings.Contains(err.Error(), "no longer matches") {
		t.Fatalf("Snapshot after a response changed: %v, want ErrCorrupt", err)
	}
	rows := 0
	err = db.ExportSnapshot(ctx, "frozen", func(ExportRow) error { rows++; return nil })
	if !errors.Is(err, errkind.Corrupt) || rows != 0 {
		t.Fatalf("ExportSnapshot after a response changed: %v after %d rows, want ErrCorrupt before any row", err, rows)
	}
}

// Snapshots made before migration 004 (a hash of the ids only) are
// rehashed over their content, in SQL, to the value the Go code computes.
func TestOldSnapshotsAreRehashed(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.Config(t)
	ownerURL := testenv.EmptyDatabase(t)
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := migrations.MigrateTo(ctx, conn, 3); err != nil {
		t.Fatal(err)
	}
	// As a build of schema version 3 stored them.
	for _, sql := range []string{
		`INSERT INTO labelers (name) VALUES ('zoë'), ('kim')`,
		`INSERT INTO prompts (text, sha256, norm_sha256, split) VALUES
		    ('reverse: été', sha256('p1'), sha256('p1'), 'train'), ('upper: ab', sha256('p2'), sha256('p2'), 'heldout')`,
		`INSERT INTO responses (prompt_id, text, sha256, norm_sha256, chars)
		    SELECT p.id, r.text, sha256(convert_to(r.text, 'UTF8')), sha256(convert_to(r.text, 'UTF8')), char_length(r.text)
		    FROM prompts p, (VALUES ('été'), ('été!'), ('')) AS r (text) WHERE p.sha256 = sha256('p1')
		    UNION ALL SELECT p.id, 'AB', sha256('AB'), sha256('AB'), 2 FROM prompts p WHERE p.sha256 = sha256('p2')
		    UNION ALL SELECT p.id, 'ab', sha256('ab'), sha256('ab'), 2 FROM prompts p WHERE p.sha256 = sha256('p2')`,
		`INSERT INTO comparisons (prompt_id, labeler_id, response_ids, ranks, content_sha256)
		    SELECT 1, 1, '{1,2,3}'::bigint[], '{2,1,2}'::smallint[], sha256('c1') UNION ALL SELECT 2, 2, '{5,4}', '{1,2}', sha256('c2')`,
		`INSERT INTO label_snapshots (name, comparison_ids, sha256) VALUES ('old', '{1,2}', sha256(convert_to(E'1\n2', 'UTF8')))`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	runtime, _ := pgx.ParseConfig(cfg.Postgres.URL)
	if _, err := migrations.Migrate(ctx, ownerURL, runtime.User); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, testenv.RuntimeURL(t, ownerURL))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := db.Snapshot(ctx, "old")
	if err != nil {
		t.Fatalf("a rehashed snapshot does not verify: %v", err)
	}
	if old := sha256.Sum256([]byte("1\n2")); s.SHA256 == old {
		t.Fatal("the snapshot kept its hash of the ids")
	}
	var detail string
	if err := conn.QueryRow(ctx, "SELECT detail->>'old_sha256' FROM audit_log WHERE action = 'rehash' AND entity_id = $1", fmt.Sprint(s.ID)).Scan(&detail); err != nil {
		t.Fatalf("no audit row for the rehash: %v", err)
	}
	if old := sha256.Sum256([]byte("1\n2")); detail != hex.EncodeToString(old[:]) {
		t.Errorf("audit keeps old hash %s", detail)
	}
}

// Every SECURITY DEFINER function searches pg_catalog and pg_temp only,
// and the audit rows it writes name who inserted, not its owner.
func TestSecurityDefinerFunctionsPinTheirSearchPath(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	rows, err := ownerConn(t, db).Query(ctx, `
		SELECT p.proname, coalesce(array_to_string(p.proconfig, ';'), '')
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'public' AND p.prosecdef`)
	if err != nil {
		t.Fatal(err)
	}
	defs := 0
	for rows.Next() {
		var name, config string
		if err := rows.Scan(&name, &config); err != nil {
			t.Fatal(err)
		}
		defs++
		if config != "search_path=pg_catalog, pg_temp" {
			t.Errorf("SECURITY DEFINER function %s has settings %q, want search_path=pg_catalog, pg_temp", name, config)
		}
	}
	if rows.Err() != nil || defs == 0 {
		t.Fatalf("%d SECURITY DEFINER functions, %v", defs, rows.Err())
	}
	if _, _, err := insertRanking(ctx, db, ranking("ann", 1, 2), "test", 0); err != nil {
		t.Fatal(err)
	}
	var actor, user string
	if err := db.pool.QueryRow(ctx, "SELECT actor, current_user FROM audit_log WHERE entity = 'comparisons'").Scan(&actor, &user); err != nil || actor != user {
		t.Errorf("the audit row of an insert names %q, want the runtime role %q (%v)", actor, user, err)
	}
}

// A database where anyone may create in the public schema (the default
// before Postgres 15) loses that right on migration.
func TestMigrateRevokesCreateOnPublic(t *testing.T) {
	ctx := context.Background()
	ownerURL := testenv.EmptyDatabase(t)
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "GRANT CREATE ON SCHEMA public TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	runtime, _ := pgx.ParseConfig(testenv.Config(t).Postgres.URL)
	if _, err := migrations.Migrate(ctx, ownerURL, runtime.User); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, testenv.RuntimeURL(t, ownerURL))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.pool.Exec(ctx, "CREATE TABLE public.labelers_shadow (id bigint)"); pgCode(err) != "42501" {
		t.Errorf("the runtime role creates a table in public: %v", err)
	}
}
