package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

func newConfigCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration, secrets redacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			red := cfg.Redacted()
			return a.printer(cmd).Print(red, func(w io.Writer) error {
				// YAML through JSON, so that its keys are the config file's.
				var generic map[string]any
				b, _ := json.Marshal(red)
				if err := json.Unmarshal(b, &generic); err != nil {
					return fmt.Errorf("config show: %w", err)
				}
				out, err := yaml.Marshal(generic)
				if err != nil {
					return fmt.Errorf("config show: %w", err)
				}
				_, err = w.Write(out)
				return err
			})
		},
	}
	cmd.AddCommand(show)
	return cmd
}
