package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/workflows"
)

func newRunStatusCmd(a *app) *cobra.Command {
	return runCmd(a, "status", "Show a run's stages, the running one's step, metrics and ETA",
		func(cmd *cobra.Command, c *control.Client, run string) error {
			st, err := c.Status(cmd.Context(), run)
			if err != nil {
				return err
			}
			if st.Warning != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), st.Warning)
			}
			return a.printer(cmd).Print(st, func(w io.Writer) error { return writeStatus(w, st) })
		})
}

func writeStatus(out io.Writer, st control.Status) error {
	p := st.Progress
	status := st.Run.Status
	if st.Live {
		status = string(p.Status)
	}
	fmt.Fprintf(out, "run %s: %s\n", st.Run.ID, status)
	if p.Gate != "" {
		fmt.Fprintf(out, "gate: %s\n", p.Gate)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tSTATUS\tATTEMPTS\tPROGRESS\tDETAIL")
	for _, s := range st.Stages {
		running := st.Live && string(p.Stage) == s.Name
		prog := ""
		if running && p.Total > 0 {
			prog = fmt.Sprintf("%d/%d eta %s", p.Step, p.Total, control.ETA(p.ETASeconds))
		}
		detail := s.Error
		if detail == "" && running {
			detail = control.MetricsLine(p.Metrics)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", s.Name, s.Status, s.Attempts, prog, detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.Run.Error != "" {
		fmt.Fprintf(out, "error: %s\n", st.Run.Error)
	}
	return nil
}

func newRunWatchCmd(a *app) *cobra.Command {
	return runCmd(a, "watch", "Show live progress bars per stage until the run ends, then its report",
		func(cmd *cobra.Command, c *control.Client, run string) error {
			return watchAndReport(cmd.Context(), a.printer(cmd), cmd.ErrOrStderr(), c, run)
		})
}

// watch draws the progress of every stage until no execution of the run is
// running: redrawn in place on a terminal, a line per change otherwise.
func watch(ctx context.Context, c *control.Client, run string, w io.Writer) error {
	tty := isTerminal(w)
	drawn, last := 0, ""
	var lastLine time.Time
	return c.Watch(ctx, run, func(p workflows.Progress, err error) {
		lines := control.ProgressLines(p)
		if err != nil {
			lines = []string{err.Error()}
		}
		if tty {
			if drawn > 0 {
				fmt.Fprintf(w, "\033[%dA", drawn)
			}
			for _, l := range lines {
				fmt.Fprintf(w, "\033[2K%s\n", l)
			}
			drawn = len(lines)
		} else if cur := strings.Join(lines, "\n"); string(p.Stage)+string(p.Status) != last || time.Since(lastLine) >= 15*time.Second {
			fmt.Fprintln(w, cur)
			last, lastLine = string(p.Stage)+string(p.Status), time.Now()
		}
	})
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
