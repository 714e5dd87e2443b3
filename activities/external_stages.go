package activities

import (
	"context"
	"errors"
	"fmt"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/ppo"
	"github.com/instructflow/instructflow/rewardmodel"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/sft"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tokenizer"
)

// The rows of the data files an external trainer gets (JSON Lines), each
// with its text as rendered by the template and its token ids.
type (
	// demoRow is a demonstration: the prompt and the response the model
	// learns to give; a trainer appends the end-of-text id to the response
	// (the built-in SFT trains on it too).
	demoRow struct {
		Prompt      string  `json:"prompt"`
		Response    string  `json:"response"`
		PromptIDs   []int32 `json:"prompt_ids"`
		ResponseIDs []int32 `json:"response_ids"`
	}
	// rankingRow is a comparison: K responses to one prompt, ranks[i] the
	// rank of responses[i] (1 is best; equal ranks are ties).
	rankingRow struct {
		Prompt      string    `json:"prompt"`
		Responses   []string  `json:"responses"`
		Ranks       []int16   `json:"ranks"`
		Labeler     string    `json:"labeler"`
		PromptIDs   []int32   `json:"prompt_ids"`
		ResponseIDs [][]int32 `json:"response_ids"`
	}
	// promptRow is a prompt to sample from.
	promptRow struct {
		Prompt    string  `json:"prompt"`
		PromptIDs []int32 `json:"prompt_ids"`
	}
)

// stageData is the run's data as stage name reads it: rendered with the
// stage's own template when its external trainer names one.
func (a *Activities) stageData(ctx context.Context, s runspec.Spec, name runstate.Stage) (*runData, error) {
	d, err := a.runData(ctx, s)
	if err != nil {
		return nil, err
	}
	if tr := s.TrainerOf(name); tr.External() && tr.Template != "" {
		if d.tmpl, err = chat.ParseTemplate(tr.Template); err != nil {
			return nil, errkind.BadInputf("%s.template: %v", name, err)
		}
	}
	return d, nil
}

func jobTokenizer(tok tokenizer.Tokenizer) JobTokenizer {
	return JobTokenizer{VocabSize: tok.VocabSize(), EOS: tok.EOT()}
}

// demoRows tokenises demonstrations as the built-in SFT does.
func demoRows(tok tokenizer.Tokenizer, exs []stage.Example) ([]any, error) {
	seqs, err := sft.Encode(tok, exs)
	if err != nil {
		return nil, err
	}
	rows := make([]any, len(exs))
	for i, s := range seqs {
		rows[i] = demoRow{Prompt: exs[i].Prompt, Response: exs[i].Response,
			PromptIDs: s.Tokens[:s.PromptLen], ResponseIDs: s.Tokens[s.PromptLen : len(s.Tokens)-1]}
	}
	return rows, nil
}

func promptRows(tok tokenizer.Tokenizer, ps []prompt) ([]any, error) {
	rows := make([]any, len(ps))
	for i, p := range ps {
		ids, err := tok.Encode(p.Rendered)
		if err != nil {
			return nil, errkind.BadInputf("data: prompt %.40q: %v", p.Text, err)
		}
		rows[i] = promptRow{Prompt: p.Rendered, PromptIDs: ids}
	}
	return rows, nil
}

func rankingRowOf(tok tokenizer.Tokenizer, prompt string, responses []string, ranks []int16, labeler string) (rankingRow, error) {
	r := rankingRow{Prompt: prompt, Responses: responses, Ranks: ranks, Labeler: labeler, ResponseIDs: make([][]int32, len(responses))}
	var err error
	if r.PromptIDs, err = tok.Encode(prompt); err != nil {
		return r, errkind.BadInputf("data: prompt %.40q: %v", prompt, err)
	}
	for i, resp := range responses {
		if r.ResponseIDs[i], err = tok.Encode(resp); err != nil {
			return r, errkind.BadInputf("data: response %.40q: %v", resp, err)
		}
	}
	return r, nil
}

// initCheckpoint commits the model SFT starts from, runs/<run>/sft-init/,
// so that an external trainer starts where the built-in one would.
func (a *Activities) initCheckpoint(ctx context.Context, run string, in sft.Input) (JobCheckpoint, error) {
	m, err := sft.Initial(in)
	if err != nil {
		return JobCheckpoint{}, err
	}
	files, err := stage.ModelFiles("", m, nil)
	if err != nil {
		return JobCheckpoint{}, err
	}
	prefix, err := checkpoint.StagePrefix(run, string(runstate.SFT)+"-init")
	if err != nil {
		return JobCheckpoint{}, err
	}
	return commitFolder(ctx, checkpoint.Store{Blobs: a.Objects, Prefix: prefix}, files)
}

// commitFolder commits files in store at the first step that is free or
// holds the same files: what an attempt commits again is reused; other
// content (settings changed on resume) takes the next step.
func commitFolder(ctx context.Context, store checkpoint.Store, files []stage.File) (JobCheckpoint, error) {
	for n := int64(0); n < 1000; n++ {
		id, err := store.Save(ctx, n, files)
		if errors.Is(err, errkind.Conflict) {
			continue
		}
		if err != nil {
			return JobCheckpoint{}, err
		}
		return JobCheckpoint{Key: store.Key(n), Step: n, SHA256: id}, nil
	}
	return JobCheckpoint{}, fmt.Errorf("1000 versions under %s; start a new run", store.Prefix)
}

// inputOf names a payload's checkpoint as a job input.
func inputOf(cp *Checkpoint) (JobCheckpoint, error) {
	if cp == nil {
		return JobCheckpoint{}, errkind.BadInputf("no checkpoint given: an earlier stage did not produce one")
	}
	return JobCheckpoint{Key: cp.Key(), Step: cp.Step, SHA256: cp.SHA256}, nil
}

// baseInput is model.base's folder as a job input (ok false without one).
func baseInput(m runspec.Model) (JobCheckpoint, bool) {
	if m.Base == "" {
		return JobCheckpoint{}, false
	}
	prefix, err := checkpoint.ModelPrefix(m.Base)
	if err != nil {
		return JobCheckpoint{}, false
	}
	return JobCheckpoint{Key: checkpoint.Store{Prefix: prefix}.Key(0), SHA256: m.BaseSHA256}, true
}

// externalSFT runs SFT on the stage's external trainer.
func (a *Activities) externalSFT(ctx context.Context, t *tracker, s runspec.Spec, data *runData, in sft.Input) (StageResult, error) {
	if err := in.Config.Validate(); err != nil {
		return StageResult{}, err
	}
	init, err := a.initCheckpoint(ctx, s.ID, in)
	if err != nil {
		return StageResult{}, err
	}
	spec := jobSpec{inputs: map[string]JobCheckpoint{"init": init}, data: map[string][]any{}, settings: in.Config, counts: data.counts(nil)}
	if base, ok := baseInput(s.Model); ok {
		spec.inputs["base"] = base
	}
	if spec.data["train"], err = demoRows(in.Tokenizer, in.Train); err != nil {
		return StageResult{}, err
	}
	if spec.data["heldout"], err = demoRows(in.Tokenizer, in.Heldout); err != nil {
		return StageResult{}, err
	}
	return a.external(ctx, t, s, runstate.SFT, jobTokenizer(in.Tokenizer), spec)
}

// externalRM runs the reward model on the stage's external trainer, then
// scores the snapshot's responses with its final checkpoint as the
// built-in stage does (for the audit), when the engine can load it.
func (a *Activities) externalRM(ctx context.Context, t *tracker, s runspec.Spec, in StageInput, data *runData, cfg rewardmodel.Config, rows map[string][]any) (StageResult, error) {
	sftIn, err := inputOf(in.SFT)
	if err != nil {
		return StageResult{}, err
	}
	spec := jobSpec{inputs: map[string]JobCheckpoint{"sft": sftIn}, data: rows, settings: cfg, counts: data.counts(nil)}
	spec.counts["train_comparisons"] = float64(len(rows["train"]))
	forDemos := *data // the stage's counts are of its comparisons
	demos, err := forDemos.demonstrations(ctx, dataset.Train)
	if err != nil {
		return StageResult{}, err
	}
	if rows["demonstrations"], err = demoRows(data.tok, demos); err != nil { // the score's zero is their mean
		return StageResult{}, err
	}
	res, err := a.external(ctx, t, s, runstate.RM, jobTokenizer(data.tok), spec)
	if err != nil {
		return res, err
	}
	res.Snapshot = in.Snapshot
	if err := t.timed(ctx, func() error { return a.scoreResponses(ctx, t, s, data, in.Snapshot) }); err != nil {
		if ctx.Err() != nil {
			return StageResult{}, err
		}
		t.log.Warn("the external reward model's responses were not scored for the audit: "+err.Error(), "run", s.ID)
	}
	return res, nil
}

// externalPPO runs PPO on the stage's external trainer.
func (a *Activities) externalPPO(ctx context.Context, t *tracker, s runspec.Spec, in StageInput, data *runData, cfg ppo.Config, prompts []prompt, demos []stage.Example) (StageResult, error) {
	spec := jobSpec{inputs: map[string]JobCheckpoint{}, data: map[string][]any{}, settings: cfg, counts: data.counts(nil)}
	var err error
	for role, cp := range map[string]*Checkpoint{"sft": in.SFT, "rm": in.RM} {
		if spec.inputs[role], err = inputOf(cp); err != nil {
			return StageResult{}, err
		}
	}
	if spec.data["prompts"], err = promptRows(data.tok, prompts); err != nil {
		return StageResult{}, err
	}
	if spec.data["demonstrations"], err = demoRows(data.tok, demos); err != nil {
		return StageResult{}, err
	}
	return a.external(ctx, t, s, runstate.PPO, jobTokenizer(data.tok), spec)
}
