package main

import (
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/storage/postgres/migrations"
)

func newDBCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "db", Short: "Manage the database schema"}
	cmd.AddCommand(&cobra.Command{
		Use:   "migrate",
		Short: "Apply pending schema migrations as the owner and give the runtime role its rights",
		Long: `migrate connects as the schema's owner (postgres.owner_url), applies the
migrations this build carries that the database lacks, and makes the user
of postgres.url a member of the group role ` + migrations.AppRole + `, which holds
only the rights workers and the CLI use. Workers and the CLI never migrate:
they refuse a database whose schema is behind and say to run this.

The owner must own the tables (or, on a new database, may create them) and
may create roles. The runtime user must exist and must not be a superuser.
` + "`instructflow dev`" + ` sets both up and migrates by itself. Running migrate again
changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			runtime, err := pgx.ParseConfig(cfg.Postgres.URL)
			if err != nil {
				return fmt.Errorf("db migrate: postgres.url: %w", err)
			}
			res, err := migrations.Migrate(cmd.Context(), cfg.Postgres.OwnerURL, runtime.User)
			if err != nil {
				return fmt.Errorf("db migrate: %w", err)
			}
			return a.printer(cmd).Print(res, func(out io.Writer) error {
				if res.From == res.To {
					fmt.Fprintf(out, "schema version %d: nothing to migrate\n", res.To)
				} else {
					fmt.Fprintf(out, "schema version %d (was %d)\n", res.To, res.From)
				}
				if res.Granted {
					fmt.Fprintf(out, "role %s may now use the database (member of %s)\n", runtime.User, migrations.AppRole)
				}
				return nil
			})
		},
	})
	return cmd
}
