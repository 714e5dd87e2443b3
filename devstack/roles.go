package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/storage/postgres/migrations"
)

// SuperUser is the local cluster's superuser. It logs in with the owner's
// password, only to create the owner, the runtime role and the database;
// nothing else uses it.
const SuperUser = "postgres"

// ownerOptions checks postgres.owner_url against postgres.url (pg): the
// local stack is one server and one database, with the owner and the
// runtime role as two different users.
func ownerOptions(ownerURL string, pg *pgx.ConnConfig) (*pgx.ConnConfig, error) {
	owner, err := pgx.ParseConfig(ownerURL)
	if err != nil {
		return nil, fmt.Errorf("devstack: postgres.owner_url: %w", err)
	}
	if !isLoopback(owner.Host) || owner.Port != pg.Port || owner.Database != pg.Database {
		return nil, fmt.Errorf("devstack: postgres.owner_url names %s:%d/%s but postgres.url names %s:%d/%s; the local stack is one server and database, so let the two URLs differ only in user and password (set INSTRUCTFLOW_POSTGRES_OWNER_URL along with INSTRUCTFLOW_POSTGRES_URL)",
			owner.Host, owner.Port, owner.Database, pg.Host, pg.Port, pg.Database)
	}
	switch {
	case owner.Password == "":
		return nil, errors.New("devstack: postgres.owner_url has no password; the local cluster uses password authentication, so give one (postgres://owner:password@127.0.0.1:5432/db)")
	case owner.User == pg.User:
		return nil, fmt.Errorf("devstack: postgres.owner_url and postgres.url both log in as %q; the runtime role must not own the schema (it could then change append-only tables), so give them different users", pg.User)
	case owner.User == SuperUser || pg.User == SuperUser:
		return nil, fmt.Errorf("devstack: %q is the local cluster's superuser; choose other users for postgres.url and postgres.owner_url", SuperUser)
	}
	return owner, nil
}

// setUpRoles, as the superuser on conn, creates (or updates the passwords
// of) the owner and the runtime role and creates the database, owned by the
// owner. Then the owner migrates it and grants the runtime role its rights.
func setUpRoles(ctx context.Context, conn *pgx.Conn, opts Options) error {
	for _, r := range []struct{ name, password, attrs string }{
		{opts.OwnerUser, opts.OwnerPassword, "LOGIN NOSUPERUSER CREATEDB CREATEROLE INHERIT"},
		{opts.AppUser, opts.AppPassword, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS"},
	} {
		var stmt string
		// format() quotes the name and the password; neither is a parameter
		// in CREATE ROLE.
		err := conn.QueryRow(ctx, `
			SELECT format('%s ROLE %I WITH %s PASSWORD %L',
			              CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1) THEN 'ALTER' ELSE 'CREATE' END,
			              $1::text, $2::text, $3::text)`, r.name, r.attrs, r.password).Scan(&stmt)
		if err == nil {
			_, err = conn.Exec(ctx, stmt)
		}
		if err != nil {
			return fmt.Errorf("set up role %s: %w", r.name, err)
		}
	}
	var owner string
	err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = $1", opts.PostgresDB).Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{opts.PostgresDB}.Sanitize()+" OWNER "+pgx.Identifier{opts.OwnerUser}.Sanitize()); err != nil {
			return fmt.Errorf("create database %s: %w", opts.PostgresDB, err)
		}
	case err != nil:
		return fmt.Errorf("look up database %s: %w", opts.PostgresDB, err)
	case owner != opts.OwnerUser:
		return fmt.Errorf("database %s belongs to %q, not to the owner %q of postgres.owner_url (an InstructFlow from before the owner and runtime roles made it?); remove the cluster's folder to start afresh, or make %q its owner and the owner of its tables",
			opts.PostgresDB, owner, opts.OwnerUser, opts.OwnerUser)
	}
	res, err := migrations.Migrate(ctx, ownerURL(opts), opts.AppUser)
	if err != nil {
		return err
	}
	if res.From != res.To {
		fmt.Fprintf(opts.Log, "devstack: postgres: migrated %s from schema version %d to %d\n", opts.PostgresDB, res.From, res.To)
	}
	return nil
}

// ownerURL is the owner's URL of the local database.
func ownerURL(opts Options) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(opts.OwnerUser, opts.OwnerPassword),
		Host:     "127.0.0.1:" + strconv.Itoa(opts.PostgresPort),
		Path:     "/" + opts.PostgresDB,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}
