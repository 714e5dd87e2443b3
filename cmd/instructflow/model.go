package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/hf"
	"github.com/instructflow/instructflow/internal/printable"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/modelstore"
	"github.com/instructflow/instructflow/storage/objectstore"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/tokenizer"
)

func newModelCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Import Hugging Face GPT-2 models, export any stage's model, try one with generate",
	}
	cmd.AddCommand(newModelImportCmd(a), newModelListCmd(a), newModelShowCmd(a), newModelExportCmd(a), newModelGenerateCmd(a))
	return cmd
}

// modelStore opens Postgres and the object store; closeAll releases them.
func (a *app) modelStore(ctx context.Context) (modelstore.Store, func(), error) {
	cfg, err := a.config()
	if err != nil {
		return modelstore.Store{}, nil, err
	}
	db, err := postgres.Open(ctx, cfg.Postgres.URL)
	if err != nil {
		return modelstore.Store{}, nil, err
	}
	objects, err := objectstore.Open(ctx, cfg.S3)
	if err != nil {
		db.Close()
		return modelstore.Store{}, nil, err
	}
	return modelstore.Store{DB: db, Blobs: objects}, db.Close, nil
}

// modelCmd builds a model subcommand that needs the store.
func modelCmd(a *app, c *cobra.Command, do func(cmd *cobra.Command, s modelstore.Store, args []string) error) *cobra.Command {
	c.RunE = func(cmd *cobra.Command, args []string) error {
		s, closeAll, err := a.modelStore(cmd.Context())
		if err != nil {
			return err
		}
		defer closeAll()
		return do(cmd, s, args)
	}
	return c
}

func newModelImportCmd(a *app) *cobra.Command {
	return modelCmd(a, &cobra.Command{
		Use:   "import NAME DIR",
		Short: "Import a Hugging Face GPT-2-family folder as base model NAME",
		Long: `import reads a Hugging Face folder: config.json (GPT2LMHeadModel, GPT2Model or
GPT2ForSequenceClassification, model_type gpt2), model.safetensors or shards
with model.safetensors.index.json (F32, F16 or BF16; the engine computes in
F32, so F16/BF16 weights are widened exactly), and the tokenizer (vocab.json
and merges.txt, or tokenizer.json with a byte-level BPE model, with the special
tokens of tokenizer_config.json, special_tokens_map.json, added_tokens.json and
generation_config.json).

Everything is validated before anything is stored; every problem is listed
with its file and what to do. The model is stored as a verified checkpoint
(models/NAME/0/: files, then a manifest with their SHA-256) and recorded in
Postgres. A model never changes: importing the same files again does
nothing, and a different model under a taken name is refused.

A run starts from it with model.base: NAME in its spec.`,
		Args: cobra.ExactArgs(2),
	}, func(cmd *cobra.Command, s modelstore.Store, args []string) error {
		im, err := s.Import(cmd.Context(), args[0], args[1])
		if err != nil {
			return err
		}
		return a.printer(cmd).Print(im, func(w io.Writer) error {
			m := im.Model
			verb := "imported"
			if !im.Created {
				verb = "already imported (same files): nothing changed for"
			}
			fmt.Fprintf(w, "%s model %s from %s\n", verb, m.Name, printable.String(m.Source))
			fmt.Fprintf(w, "  %s, %d parameters, weights %s stored as F32\n", m.Architecture, m.Params, strings.Join(m.DTypes, "+"))
			_, err := fmt.Fprintf(w, "  key %s, manifest sha256 %s\n", m.Key, m.ManifestSHA)
			return err
		})
	})
}

func newModelListCmd(a *app) *cobra.Command {
	return modelCmd(a, &cobra.Command{
		Use:   "list",
		Short: "List the imported models",
		Args:  cobra.NoArgs,
	}, func(cmd *cobra.Command, s modelstore.Store, _ []string) error {
		ms, err := s.DB.ListModels(cmd.Context())
		if err != nil {
			return err
		}
		if ms == nil {
			ms = []postgres.Model{}
		}
		return a.printer(cmd).Print(ms, func(w io.Writer) error {
			if len(ms) == 0 {
				_, err := fmt.Fprintln(w, "no models imported yet: `instructflow model import NAME DIR`")
				return err
			}
			fmt.Fprintf(w, "%-24s %-30s %12s  %-8s %-12s %s\n", "NAME", "ARCHITECTURE", "PARAMS", "DTYPES", "MANIFEST", "IMPORTED")
			for _, m := range ms {
				fmt.Fprintf(w, "%-24s %-30s %12d  %-8s %-12.12s %s\n", m.Name, m.Architecture, m.Params,
					strings.Join(m.DTypes, "+"), m.ManifestSHA, m.ImportedAt.UTC().Format("2006-01-02 15:04:05"))
			}
			return nil
		})
	})
}

func newModelShowCmd(a *app) *cobra.Command {
	return modelCmd(a, &cobra.Command{
		Use:   "show NAME",
		Short: "Show an imported model: shape, parameters, tokenizer, special tokens, the runs that used it",
		Args:  cobra.ExactArgs(1),
	}, func(cmd *cobra.Command, s modelstore.Store, args []string) error {
		m, err := s.Show(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		return a.printer(cmd).Print(m, func(w io.Writer) error { return writeModel(w, m) })
	})
}

func writeModel(w io.Writer, m modelstore.Shown) error {
	var c model.Config
	if err := json.Unmarshal(m.Config, &c); err != nil {
		return fmt.Errorf("model %s: stored config: %w", m.Name, err)
	}
	var tok tokenizer.Info
	if err := json.Unmarshal(m.Tokenizer, &tok); err != nil {
		return fmt.Errorf("model %s: stored tokenizer: %w", m.Name, err)
	}
	fmt.Fprintf(w, "model %s (%s), imported %s from %s\n", m.Name, m.Architecture, m.ImportedAt.UTC().Format("2006-01-02 15:04:05 UTC"), printable.String(m.Source))
	fmt.Fprintf(w, "  shape: %d layers, %d heads, width %d, context %d, vocabulary %d\n", c.Layers, c.Heads, c.Width, c.Context, c.Vocab)
	fmt.Fprintf(w, "  parameters: %d (weights %s, stored and computed as F32)\n", m.Params, strings.Join(m.DTypes, "+"))
	fmt.Fprintf(w, "  tokenizer: %s from %s, %d tokens, %d merges, sha256 %s\n", tok.Kind, tok.Source, tok.Vocab, tok.Merges, m.TokenizerSHA)
	fmt.Fprintf(w, "  end of text: %d %s; pad: %d %s", tok.EOT.ID, printable.String(tok.EOT.Text), tok.Pad.ID, printable.String(tok.Pad.Text))
	if tok.BOS != nil {
		fmt.Fprintf(w, "; bos: %d %s", tok.BOS.ID, printable.String(tok.BOS.Text))
	}
	fmt.Fprintln(w)
	for _, s := range tok.Added {
		fmt.Fprintf(w, "  added token %d %s (special %v)\n", s.ID, printable.String(s.Text), s.Special)
	}
	for _, n := range tok.Notes {
		fmt.Fprintf(w, "  note: %s\n", printable.String(n))
	}
	fmt.Fprintf(w, "  stored at %s, manifest sha256 %s, weights sha256 %s\n", m.Key, m.ManifestSHA, m.WeightsSHA)
	if len(m.Runs) == 0 {
		_, err := fmt.Fprintln(w, "  used by no run yet (model.base: "+m.Name+" in a run spec)")
		return err
	}
	_, err := fmt.Fprintf(w, "  used by runs: %s\n", strings.Join(m.Runs, ", "))
	return err
}

func newModelExportCmd(a *app) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "export [RUN_ID[:stage]] DIR",
		Short: "Export a stage's model (or an imported one, --from models/NAME) as a Hugging Face folder",
		Long: `export writes a folder that Hugging Face tools load: config.json
(GPT2LMHeadModel for the sft and ppo policies; GPT2ForSequenceClassification
with num_labels 1 and score.weight for the reward model, rm),
model.safetensors in F32 with Hugging Face names (LoRA merged), the tokenizer
files of the base model, generation_config.json, and a README.md model card
with the lineage: run, spec, base model, label snapshot and its hash, and the
stage's metrics. Without a stage, the run's last finished policy (ppo, else
sft). DIR must not exist or be empty; a failed export leaves nothing there.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if from != "" && len(args) == 1 || from == "" && len(args) == 2 {
				return nil
			}
			return errkind.BadInputf("give RUN_ID[:stage] DIR, or --from models/NAME DIR")
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "export an imported model instead: models/NAME")
	return modelCmd(a, cmd, func(cmd *cobra.Command, s modelstore.Store, args []string) error {
		ref, dir := from, args[len(args)-1]
		if from == "" {
			ref = args[0]
		} else if !strings.HasPrefix(from, "models/") {
			return errkind.BadInputf("--from %q: write models/NAME", from)
		}
		src, err := s.Open(cmd.Context(), ref)
		if err != nil {
			return err
		}
		if err := modelstore.Export(cmd.Context(), src, dir); err != nil {
			return err
		}
		kind := "policy (GPT2LMHeadModel)"
		if src.Kind == hf.Reward {
			kind = "reward model (GPT2ForSequenceClassification)"
		}
		v := map[string]any{"ref": src.Ref, "dir": dir, "kind": kind, "params": src.Model.Config.ParamCount(), "tokenizer_files": len(src.TokenizerFiles)}
		return a.printer(cmd).Print(v, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "exported %s, a %s of %d parameters, to %s (%d tokenizer files)\n",
				src.Ref, kind, src.Model.Config.ParamCount(), printable.String(dir), len(src.TokenizerFiles))
			return err
		})
	})
}

// generated is what `model generate` prints.
type generated struct {
	Ref      string    `json:"ref"`
	Prompt   string    `json:"prompt"`
	Text     string    `json:"text"`
	PromptID []int32   `json:"prompt_ids"`
	IDs      []int32   `json:"ids"`
	LogProbs []float32 `json:"logprobs"`
	Stopped  bool      `json:"stopped"` // ended by the end-of-text token
}

func newModelGenerateCmd(a *app) *cobra.Command {
	var (
		prompt, template string
		sc               model.SampleConfig
		seed             uint64
	)
	cmd := &cobra.Command{
		Use:   "generate NAME|RUN_ID[:stage] --prompt TEXT",
		Short: "Continue a prompt with an imported model or a stage's policy",
		Long: `generate samples a continuation of --prompt from an imported model (NAME or
models/NAME) or a run's policy (RUN_ID:sft, RUN_ID:ppo; RUN_ID alone is its
last finished policy), until the end-of-text token or --max-new-tokens.
--temperature 0 is greedy. --json prints the token ids and each token's
log-probability (of the full distribution at the temperature, before top-p),
which is how a program outside Go checks the engine on a model.
--template hh wraps the prompt as "\n\nHuman: PROMPT\n\nAssistant:".`,
		Args: cobra.ExactArgs(1),
	}
	f := cmd.Flags()
	f.StringVar(&prompt, "prompt", "", "the text to continue (required)")
	f.IntVar(&sc.MaxTokens, "max-new-tokens", 64, "new tokens at most")
	f.Float32Var(&sc.Temperature, "temperature", 1, "sampling temperature; 0 = greedy")
	f.Float32Var(&sc.TopP, "top-p", 1, "keep the most likely tokens up to this probability mass (1 = all)")
	f.Uint64Var(&seed, "seed", 1, "random seed (the same seed gives the same text)")
	f.StringVar(&template, "template", "none", "how the prompt is wrapped: none or hh")
	_ = cmd.MarkFlagRequired("prompt")
	return modelCmd(a, cmd, func(cmd *cobra.Command, s modelstore.Store, args []string) error {
		text, err := applyTemplate(template, prompt)
		if err != nil {
			return err
		}
		if sc.Temperature < 0 || !(sc.TopP > 0 && sc.TopP <= 1) || math.IsNaN(float64(sc.Temperature)) {
			return errkind.BadInputf("--temperature must be >= 0 and --top-p in (0, 1]")
		}
		src, err := s.Open(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if src.Kind == hf.Reward {
			return errkind.BadInputf("%s is a reward model: it scores text and does not generate; name a policy (RUN_ID:sft or RUN_ID:ppo)", src.Ref)
		}
		ids, err := src.Tokenizer.Encode(text)
		if err != nil {
			return errkind.BadInputf("--prompt: %v", err)
		}
		if len(ids) == 0 {
			return errkind.BadInputf("--prompt is empty after tokenizing; give some text")
		}
		if room := src.Model.Config.Context - len(ids); sc.MaxTokens > room {
			if room < 1 {
				return errkind.BadInputf("--prompt has %d tokens; the model's context is %d: shorten it", len(ids), src.Model.Config.Context)
			}
			sc.MaxTokens = room
		}
		sc.StopToken = src.Tokenizer.EOT()
		seqs, err := src.Model.Sample([][]int32{ids}, sc, model.NewRNG(seed))
		if err != nil {
			return err
		}
		g := generated{Ref: src.Ref, Prompt: text, PromptID: ids, IDs: seqs[0].Tokens, LogProbs: seqs[0].LogProbs}
		if n := len(g.IDs); n > 0 && g.IDs[n-1] == sc.StopToken {
			g.Stopped = true
		}
		if g.Text, err = src.Tokenizer.Decode(g.IDs); err != nil {
			return err
		}
		return a.printer(cmd).Print(g, func(w io.Writer) error {
			_, err := fmt.Fprintln(w, g.Text)
			return err
		})
	})
}

// applyTemplate wraps a prompt for a chat-tuned model.
func applyTemplate(name, prompt string) (string, error) {
	switch name {
	case "none", "":
		return prompt, nil
	case "hh":
		return "\n\nHuman: " + prompt + "\n\nAssistant:", nil
	}
	return "", errkind.BadInputf("--template %q: use none or hh", name)
}
