package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/model/bench"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Benchmarks (see scripts/bench_engine.py for the side-by-side with PyTorch)"}
	var preset string
	var threads int
	var asJSON bool
	engine := &cobra.Command{
		Use:   "engine --preset tiny|small|gpt2 [--threads N] [--json]",
		Short: "Measure the GPT engine: train tokens/s (forward + backward + AdamW), sample tokens/s (KV cache), GFLOP/s, peak memory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if threads < 1 {
				return fmt.Errorf("bench engine: --threads %d: use 1 or more", threads)
			}
			res, err := bench.Run(cmd.Context(), preset, threads)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			b, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return err
		},
	}
	engine.Flags().StringVar(&preset, "preset", "tiny", fmt.Sprintf("model and batch shape: one of %v", bench.PresetNames()))
	engine.Flags().IntVar(&threads, "threads", 1, "goroutines sharing the work")
	engine.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on one line")
	cmd.AddCommand(engine)
	return cmd
}
