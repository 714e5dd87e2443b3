package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/devstack"
)

func newDevCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Start Postgres, the Temporal dev server and the S3 store locally; Ctrl-C stops them",
		Long: `dev starts the three services InstructFlow needs on this machine and supervises
them until Ctrl-C (or SIGTERM), then stops them cleanly:

  postgres  a private Postgres 15 cluster under <data_dir>/postgres (as root,
            when the postgres user cannot reach the data dir, under
            /var/lib/instructflow/<hash>/, printed at start)
  temporal  the Temporal CLI dev server, state in <data_dir>/temporal/temporal.db, Web UI
  s3        versitygw serving <data_dir>/s3

Ports come from the configuration (postgres.url, temporal.address,
temporal.ui_port, s3.endpoint). Services of an earlier 'dev' that still run
are reused. Install what is missing with 'make deps'.

Postgres gets two roles with the passwords of the URLs: the schema's owner
(postgres.owner_url), as whom dev applies the migrations (as 'db migrate'
does), and the runtime role (postgres.url) that workers and the CLI log in
as, which is no superuser and holds only the rights the code uses. The
cluster's superuser, postgres, shares the owner's password and is used for
nothing but this set-up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			st, err := startStack(cmd.Context(), cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			eps := st.Endpoints()
			if err := a.printer(cmd).Print(eps, func(w io.Writer) error { return writeEndpoints(w, eps) }); err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "instructflow dev: ready; Ctrl-C stops the services")
			superr := st.Supervise(cmd.Context())
			stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := st.Stop(stopCtx); err != nil {
				return err
			}
			return superr
		},
	}
	return cmd
}

func startStack(ctx context.Context, cfg config.Config, log io.Writer) (*devstack.Stack, error) {
	opts, err := devstack.OptionsFrom(cfg, log)
	if err != nil {
		return nil, err
	}
	return devstack.Start(ctx, opts)
}

func writeEndpoints(w io.Writer, eps []devstack.Endpoint) error {
	for _, e := range eps {
		note := ""
		if e.Reused {
			note = ", reused"
		}
		fmt.Fprintf(w, "%-9s %s  (pid %d%s, log %s)\n", e.Name, e.Address, e.PID, note, e.Log)
	}
	return nil
}
