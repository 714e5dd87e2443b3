package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/plots"
	"github.com/instructflow/instructflow/storage/postgres"
)

func newRunPlotsCmd(a *app) *cobra.Command {
	var dir, format string
	cmd := &cobra.Command{
		Use:   "plots RUN",
		Short: "Draw a run's training curves as SVG (or PNG) files from its recorded metrics (SFT and RM loss, RM accuracy, PPO score, KL, beta, clip fraction, entropy, length)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run := args[0]
			if !slices.Contains(plots.Formats, format) {
				return errkind.BadInputf("run plots: --format %q: use svg or png", format)
			}
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := db.GetRun(cmd.Context(), run); errors.Is(err, errkind.NotFound) {
				return errkind.BadInputf("run plots: no run %q (`instructflow run list` lists them)", run)
			} else if err != nil {
				return err
			}
			images, err := plots.DrawRun(func(stage string) ([]plots.Metric, error) {
				return runMetrics(cmd.Context(), db, run, stage)
			}, format)
			if err != nil {
				return err
			}
			written := []string{}
			dir := cmp.Or(dir, ".")
			for _, img := range images {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return fmt.Errorf("run plots: %w", err)
				}
				path := filepath.Join(dir, img.Chart.Stage+"-"+img.Chart.Name+"."+format)
				if err := writeOut(cmd, path, func(w io.Writer) error { _, err := w.Write(img.Data); return err }); err != nil {
					return fmt.Errorf("run plots: %w", err)
				}
				if err := os.Chmod(path, 0o644); err != nil { // an image to serve and share, not the temporary file's 0600
					return fmt.Errorf("run plots: %w", err)
				}
				written = append(written, path)
			}
			return a.printer(cmd).Print(written, func(w io.Writer) error {
				if len(written) == 0 {
					_, err := fmt.Fprintf(w, "run %s has recorded no metrics to plot yet\n", run)
					return err
				}
				for _, p := range written {
					if _, err := fmt.Fprintln(w, p); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&dir, "out", "o", ".", "folder the images go to, named <stage>-<chart>.<format>")
	cmd.Flags().StringVar(&format, "format", "svg", "svg or png")
	return cmd
}

// runMetrics is one stage's recorded metrics as plots reads them.
func runMetrics(ctx context.Context, db *postgres.DB, run, stage string) ([]plots.Metric, error) {
	stored, err := db.Metrics(ctx, run, stage)
	if err != nil {
		return nil, err
	}
	return plots.Of(stored), nil
}
