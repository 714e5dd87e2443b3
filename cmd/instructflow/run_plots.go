package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/plots"
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
			byStage := map[string][]plots.Metric{}
			written := []string{}
			dir := cmp.Or(dir, ".")
			for _, c := range plots.Charts {
				ms, ok := byStage[c.Stage]
				if !ok {
					stored, err := db.Metrics(cmd.Context(), run, c.Stage)
					if err != nil {
						return err
					}
					ms = make([]plots.Metric, len(stored))
					for i, m := range stored {
						ms[i] = plots.Metric(m)
					}
					byStage[c.Stage] = ms
				}
				img, drawn, err := plots.Draw(c, ms, format)
				if err != nil {
					return err
				}
				if !drawn {
					continue
				}
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return fmt.Errorf("run plots: %w", err)
				}
				path := filepath.Join(dir, c.Stage+"-"+c.Name+"."+format)
				if err := writeOut(cmd, path, func(w io.Writer) error { _, err := w.Write(img); return err }); err != nil {
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
