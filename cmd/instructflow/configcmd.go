package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

func newConfigCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	var asJSON bool
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
			if asJSON {
				return printJSON(cmd.OutOrStdout(), red)
			}
			// Through JSON so that YAML keys match the config file's keys.
			var generic map[string]any
			b, _ := json.Marshal(red)
			if err := json.Unmarshal(b, &generic); err != nil {
				return fmt.Errorf("config show: %w", err)
			}
			out, err := yaml.Marshal(generic)
			if err != nil {
				return fmt.Errorf("config show: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(show)
	return cmd
}
