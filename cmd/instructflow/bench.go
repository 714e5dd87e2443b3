package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/internal/printer"
	"github.com/instructflow/instructflow/model/bench"
)

func newBenchCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Benchmarks (see scripts/bench_engine.py for the side-by-side with PyTorch)"}
	var preset string
	var threads int
	engine := &cobra.Command{
		Use:   "engine --preset tiny|small|gpt2 [--threads N]",
		Short: "Measure the GPT engine: train tokens/s (forward + backward + AdamW), sample tokens/s (KV cache), GFLOP/s, peak memory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The config sets the kernel level (engine.kernel_level).
			if _, err := a.config(); err != nil {
				return err
			}
			if threads < 1 {
				return fmt.Errorf("bench engine: --threads %d: use 1 or more", threads)
			}
			res, err := bench.Run(cmd.Context(), preset, threads)
			if err != nil {
				return err
			}
			// The result is a record of figures: JSON is its text form too.
			p := a.printer(cmd)
			p.Format = printer.JSON
			return p.Print(res, nil)
		},
	}
	engine.Flags().StringVar(&preset, "preset", "tiny", fmt.Sprintf("model and batch shape: one of %v", bench.PresetNames()))
	engine.Flags().IntVar(&threads, "threads", 1, "goroutines sharing the work")
	cmd.AddCommand(engine)
	return cmd
}
