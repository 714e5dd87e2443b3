package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/internal/printer"
	"github.com/instructflow/instructflow/model/kernel"
)

// app carries what every command shares: the flags and the loaded config.
type app struct {
	configFile string
	flags      *cobra.Command // the root, whose persistent flags hold config keys
	output     string         // --output
	asJSON     bool           // --json, the alias of --output json
	format     printer.Format
}

// printer prints a command's result in the format the user chose.
func (a *app) printer(cmd *cobra.Command) printer.Printer {
	return printer.Printer{W: cmd.OutOrStdout(), Format: a.format}
}

func newRootCmd() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:   "instructflow",
		Short: "Run SFT -> reward model -> PPO as one durable pipeline",
		Long: `InstructFlow runs the three-stage InstructGPT recipe as one durable pipeline:
Temporal chains the stages, preference labels live in Postgres, checkpoints in
S3-compatible object storage.

Configuration comes from defaults < a YAML file (--config or
INSTRUCTFLOW_CONFIG) < INSTRUCTFLOW_* environment variables < flags.
See ` + "`instructflow config show`" + `.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			f, err := printer.ParseFormat(a.output)
			if a.asJSON {
				f, err = printer.JSON, nil
			}
			a.format = f
			return err
		},
	}
	a.flags = root
	pf := root.PersistentFlags()
	pf.StringVar(&a.output, "output", "text", "how results are printed: text or json")
	pf.BoolVar(&a.asJSON, "json", false, "print results as JSON (--output json)")
	pf.StringVarP(&a.configFile, "config", "c", "", "YAML config file (env INSTRUCTFLOW_CONFIG)")
	for _, key := range configKeys() {
		name := flagName(key)
		switch def := config.Defaults()[key].(type) {
		case int:
			pf.Int(name, def, "config key "+key+" (env "+config.EnvName(key)+")")
		default:
			pf.String(name, fmt.Sprint(def), "config key "+key+" (env "+config.EnvName(key)+")")
		}
	}
	root.AddCommand(
		newConfigCmd(a),
		newRunCmd(a),
		newDataCmd(a),
		newDevCmd(a),
		newDBCmd(a),
		newWorkerCmd(a),
		newCheckCmd(a),
		newQuickstartCmd(a),
		newLabelsCmd(a),
		newBenchCmd(a),
		newModelCmd(a),
		newServeCmd(a),
		newLabelersCmd(a),
		newCkptCmd(a),
	)
	return root
}

func configKeys() []string {
	keys := make([]string, 0, len(config.Defaults()))
	for k := range config.Defaults() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// flagName turns "temporal.task_queue" into "temporal-task-queue".
func flagName(key string) string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(key)
}

// envNotConfig lists INSTRUCTFLOW_* variables that are not config keys.
var envNotConfig = []string{"INSTRUCTFLOW_CONFIG", "INSTRUCTFLOW_INTEGRATION", "INSTRUCTFLOW_E2E", "INSTRUCTFLOW_SCREENSHOTS",
	// What a worker gives an external trainer (docs/trainer-contract.md),
	// which calls `instructflow ckpt` with them in its environment.
	"INSTRUCTFLOW_JOB", "INSTRUCTFLOW_BIN"}

// config builds the typed configuration once: defaults < file < env < flags,
// refusing unknown keys and invalid values with a message naming each.
func (a *app) config() (config.Config, error) {
	v := viper.New()
	defaults := config.Defaults()
	for k, def := range defaults {
		v.SetDefault(k, def)
	}
	v.SetEnvPrefix("INSTRUCTFLOW")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	known := map[string]bool{}
	var envNames []string
	for _, k := range configKeys() {
		known[config.EnvName(k)] = true
		envNames = append(envNames, config.EnvName(k))
	}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "INSTRUCTFLOW_") && !known[name] && !slices.Contains(envNotConfig, name) {
			return config.Config{}, fmt.Errorf("config: unknown environment variable %s%s; unset it (known: %s)",
				name, config.Suggest(name, envNames), strings.Join(envNames, ", "))
		}
	}

	file := a.configFile
	if file == "" {
		file = os.Getenv("INSTRUCTFLOW_CONFIG")
	}
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return config.Config{}, fmt.Errorf("config: read %s: %w", file, err)
		}
		for _, k := range v.AllKeys() {
			if _, ok := defaults[k]; !ok {
				return config.Config{}, fmt.Errorf("config: %s: unknown key %q%s; remove it (known keys: %s)",
					file, k, config.Suggest(k, configKeys()), strings.Join(configKeys(), ", "))
			}
		}
	}
	for _, k := range configKeys() {
		if err := v.BindPFlag(k, a.flags.PersistentFlags().Lookup(flagName(k))); err != nil {
			return config.Config{}, fmt.Errorf("config: bind flag for %s: %w", k, err)
		}
	}
	var cfg config.Config
	if err := v.UnmarshalExact(&cfg); err != nil {
		return config.Config{}, fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, err
	}
	// The engine's kernels are process-wide; they take the level here, once,
	// before any command computes.
	if err := kernel.SetLevel(cfg.Engine.KernelLevel); err != nil {
		return config.Config{}, &config.FieldError{Key: "engine.kernel_level", Reason: err.Error() + "; pick one of those, or leave it empty"}
	}
	return cfg, nil
}
