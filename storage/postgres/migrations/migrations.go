// Package migrations holds InstructFlow's schema (numbered SQL files, applied
// in order by jackc/tern) and applies it as the schema's owner.
//
// Two roles use a database: the owner, who runs these migrations and owns
// every table, and the runtime role that workers and the CLI log in as. The
// runtime role is a member of the NOLOGIN group role AppRole, which holds
// only the rights the code uses; it is no superuser and owns nothing, so the
// append-only tables stay append-only for it (it cannot disable a trigger or
// set session_replication_role).
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed *.sql
var files embed.FS

// VersionTable is the table where tern records the last applied migration.
const VersionTable = "public.schema_version"

// AppRole is the group role that holds the runtime rights; migrations
// create it and grant to it.
const AppRole = "instructflow_app"

// Latest is the number of the last migration this build carries.
func Latest() int32 {
	names, _ := fs.Glob(files, "*.sql")
	var latest int32
	for _, n := range names {
		prefix, _, _ := strings.Cut(n, "_")
		if v, err := strconv.ParseInt(prefix, 10, 32); err == nil && int32(v) > latest {
			latest = int32(v)
		}
	}
	return latest
}

// Result says what Migrate did.
type Result struct {
	From int32 `json:"from"` // schema version before
	To   int32 `json:"to"`   // and after
	// Granted is true when the runtime user became a member of AppRole now.
	Granted bool `json:"granted"`
}

// Migrate connects to ownerURL (the role that owns, or is to own, the
// schema), applies every pending migration and makes runtimeUser (the user
// of postgres.url) a member of AppRole. runtimeUser must exist and must not
// be a superuser; "" or the owner itself skips the grant. It is idempotent
// and safe to run from several processes at once (tern holds an advisory
// lock).
func Migrate(ctx context.Context, ownerURL, runtimeUser string) (Result, error) {
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		return Result{}, fmt.Errorf("migrations: connect as the owner (postgres.owner_url): %w", err)
	}
	defer conn.Close(ctx)
	res, err := MigrateTo(ctx, conn, Latest())
	if err != nil {
		return res, err
	}
	res.Granted, err = GrantApp(ctx, conn, runtimeUser)
	return res, err
}

// MigrateTo applies the migrations up to target on conn. Tests use it to
// build a database as an older build left it.
func MigrateTo(ctx context.Context, conn *pgx.Conn, target int32) (Result, error) {
	m, err := migrate.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return Result{}, fmt.Errorf("migrations: %w", explainOwner(err))
	}
	if err := m.LoadMigrations(files); err != nil {
		return Result{}, fmt.Errorf("migrations: load: %w", err)
	}
	var res Result
	if res.From, err = m.GetCurrentVersion(ctx); err != nil {
		return res, fmt.Errorf("migrations: current version: %w", err)
	}
	if err := m.MigrateTo(ctx, target); err != nil {
		return res, fmt.Errorf("migrations: %w", explainOwner(err))
	}
	if res.To, err = m.GetCurrentVersion(ctx); err != nil {
		return res, fmt.Errorf("migrations: current version: %w", err)
	}
	return res, nil
}

// GrantApp makes user a member of AppRole, unless it is already one or is
// the connected role itself. A superuser is refused: append-only tables are
// not append-only for one.
func GrantApp(ctx context.Context, conn *pgx.Conn, user string) (granted bool, err error) {
	if user == "" {
		return false, nil
	}
	var self, exists, super, member bool
	err = conn.QueryRow(ctx, `
		SELECT $1 = current_user,
		       r.rolname IS NOT NULL, coalesce(r.rolsuper, false),
		       r.rolname IS NOT NULL AND pg_has_role(r.rolname, $2, 'MEMBER')
		FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $1`, user, AppRole).
		Scan(&self, &exists, &super, &member)
	switch {
	case err != nil:
		return false, fmt.Errorf("migrations: look up runtime role %q: %w", user, err)
	case self:
		return false, nil
	case !exists:
		return false, fmt.Errorf("migrations: the runtime role %q of postgres.url does not exist; create it as a database administrator (CREATE ROLE %s LOGIN PASSWORD '...'), then run `instructflow db migrate` again",
			user, pgx.Identifier{user}.Sanitize())
	case super:
		return false, fmt.Errorf("migrations: the runtime role %q of postgres.url is a superuser, for whom no table is append-only; connect workers and the CLI as a NOSUPERUSER role (ALTER ROLE %s NOSUPERUSER, or another user in postgres.url)",
			user, pgx.Identifier{user}.Sanitize())
	case member:
		return false, nil
	}
	if _, err := conn.Exec(ctx, "GRANT "+AppRole+" TO "+pgx.Identifier{user}.Sanitize()); err != nil {
		return false, fmt.Errorf("migrations: grant %s to %s: %w", AppRole, user, explainOwner(err))
	}
	return true, nil
}

// explainOwner adds the likely fix to a permission error.
func explainOwner(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
		return fmt.Errorf("%w (run migrations as the role that owns the tables and may create roles: postgres.owner_url)", err)
	}
	return err
}
