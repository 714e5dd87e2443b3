package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/hf"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/modelstore"
	"github.com/instructflow/instructflow/preference"
	"github.com/instructflow/instructflow/rewardmodel"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/sampling"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/tokenizer"
)

// modelOpener opens a model by reference (package modelstore): the
// independent judge of the evaluation.
type modelOpener interface {
	Open(ctx context.Context, ref string) (modelstore.Source, error)
}

// SamplesKey is where the evaluation stores its side-by-side samples.
func SamplesKey(run string) (string, error) {
	prefix, err := checkpoint.StagePrefix(run, string(runstate.Eval))
	if err != nil {
		return "", err
	}
	return prefix + "samples.jsonl", nil
}

// SideBySide is one held-out prompt with a response of each policy and
// their scores by each judge (gold: the task's; rm: the run's reward
// model; judge: eval.judge), as the evaluation stores them.
type SideBySide struct {
	Prompt string                `json:"prompt"`
	SFT    string                `json:"sft"`
	PPO    string                `json:"ppo"`
	Scores map[string][2]float64 `json:"scores"` // judge -> [sft, ppo]
	// Item is the pair's item in the human evaluation's batch (eval.human;
	// pairs of identical responses are not shown), and PPOFirst whether the
	// PPO response was shown first, drawn per item.
	Item     *int `json:"item,omitempty"`
	PPOFirst bool `json:"ppo_first,omitempty"`
}

// judge scores responses to prompts; name is its metrics' prefix.
type judge struct {
	name  string
	score func(prompts []prompt, responses []string) ([]float64, error)
	wins  float64
	ties  int
	sum   [2]float64 // of the scores of SFT's and PPO's responses
	cut   int        // responses (SFT and PPO) scored with their prompt cut to the judge's context
}

// Evaluate compares the PPO policy with the SFT policy on held-out
// prompts: both sample eval.samples responses per prompt with the same
// seeds; the run's reward model, the independent judge (eval.judge) and
// the task's gold judge, where there are ones, score them; each gives a
// win rate of PPO over SFT (ties half) with its 95% Wilson interval. The
// side-by-side samples go to the object store (SamplesKey).
func (a *Activities) Evaluate(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, runstate.Eval, func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		var ms [2]*model.Model
		for i, cp := range []*Checkpoint{in.SFT, in.PPO} {
			files, err := a.load(ctx, cp)
			if err != nil {
				return StageResult{}, err
			}
			if ms[i], err = stage.LoadModel(files, ""); err != nil {
				return StageResult{}, err
			}
			ms[i].SetThreads(s.Threads)
		}
		data, err := a.runData(ctx, s)
		if err != nil {
			return StageResult{}, err
		}
		prompts, err := data.prompts(ctx, dataset.Heldout, s.PPO.MaxNewTokens+1)
		if err != nil {
			return StageResult{}, err
		}
		if len(prompts) == 0 {
			return StageResult{}, errkind.BadInputf("eval: %s has no held-out prompts that fit the model (%d cut, %d dropped)", data.promptsWhat(), data.Cut, data.Dropped)
		}
		judges, err := a.judges(ctx, s, in.RM, data)
		if err != nil {
			return StageResult{}, err
		}
		var out bytes.Buffer
		enc := json.NewEncoder(&out)
		enc.SetEscapeHTML(false)
		var cmp sampling.Comparison
		n := s.Eval.Samples
		var human *humanEval
		if s.Eval.Human {
			if human, err = newHumanEval(s.Seed); err != nil {
				return StageResult{}, err
			}
			defer human.spool.close()
		}
		err = t.timed(ctx, func() error {
			cmp, err = sampling.Compare(ms[0], ms[1], data.tok, renderedOf(prompts), n, s.PPO.MaxNewTokens, s.Eval.SampleBatch, s.Seed+10,
				func(first int, ref, tuned []string) error {
					ps := make([]prompt, len(ref))
					for i := range ref {
						ps[i] = prompts[first+i/n]
						ref[i], tuned[i] = data.tmpl.Reply(ref[i]), data.tmpl.Reply(tuned[i])
					}
					rows := make([]SideBySide, len(ref))
					for i := range rows {
						rows[i] = SideBySide{Prompt: ps[i].Text, SFT: ref[i], PPO: tuned[i], Scores: map[string][2]float64{}}
					}
					for _, j := range judges {
						a, err := j.score(ps, ref)
						if err != nil {
							return err
						}
						b, err := j.score(ps, tuned)
						if err != nil {
							return err
						}
						for i := range a {
							j.sum[0], j.sum[1] = j.sum[0]+a[i], j.sum[1]+b[i]
							switch {
							case b[i] > a[i]:
								j.wins++
							case b[i] == a[i]:
								j.wins += 0.5
								j.ties++
							}
							rows[i].Scores[j.name] = [2]float64{a[i], b[i]}
						}
					}
					for i := range rows {
						if human != nil {
							if err := human.add(&rows[i]); err != nil {
								return err
							}
						}
						if err := enc.Encode(rows[i]); err != nil {
							return err
						}
					}
					t.alive() // the evaluation reports no steps
					return ctx.Err()
				})
			if err != nil {
				return err
			}
			key, err := SamplesKey(s.ID)
			if err != nil {
				return err
			}
			return a.Objects.Put(ctx, key, out.Bytes())
		})
		if err != nil {
			return StageResult{}, err
		}
		m := data.counts(map[string]float64{"kl": cmp.KL, "samples": float64(cmp.Samples),
			"sft_tokens": cmp.RefTokens, "ppo_tokens": cmp.TunedTokens})
		for _, j := range judges {
			rate := j.wins / float64(cmp.Samples)
			lo, hi := preference.Wilson95(rate, int64(cmp.Samples))
			prefix := j.name + "_"
			if j.name == "gold" {
				prefix = "" // win_rate, sft_gold, ppo_gold, as runs before other judges reported them
			}
			m[prefix+"win_rate"], m[prefix+"win_low"], m[prefix+"win_high"], m[prefix+"ties"] = rate, lo, hi, float64(j.ties)
			m["sft_"+j.name], m["ppo_"+j.name] = j.sum[0]/float64(cmp.Samples), j.sum[1]/float64(cmp.Samples)
			if j.name != "gold" {
				m[j.name+"_responses_cut"] = float64(j.cut)
			}
		}
		if human != nil {
			name := s.ID + "-eval"
			if err := a.humanVerdict(ctx, t, s, human, name, in.Deadline, m); err != nil {
				return StageResult{Batch: name}, err
			}
			return StageResult{Batch: name, Metrics: m}, nil
		}
		return StageResult{Metrics: m}, nil
	})
}

// judges are the evaluation's judges: the run's reward model, the
// independent one of eval.judge, and the task's gold judge.
func (a *Activities) judges(ctx context.Context, s runspec.Spec, rmCP *Checkpoint, data *runData) ([]*judge, error) {
	files, err := a.load(ctx, rmCP)
	if err != nil {
		return nil, err
	}
	rm, err := stage.LoadModel(files, "")
	if err != nil {
		return nil, err
	}
	rm.SetThreads(s.Threads)
	j := &judge{name: string(runstate.RM)}
	j.score = rmScorer(rm, data.tok, data, &j.cut)
	js := []*judge{j}
	if s.Eval.Judge != "" {
		if a.Models == nil {
			return nil, fmt.Errorf("eval: eval.judge %s: this worker opens no models", s.Eval.Judge)
		}
		src, err := a.Models.Open(ctx, s.Eval.Judge)
		if err != nil {
			return nil, errkind.BadInputf("eval.judge %s: %v", s.Eval.Judge, err)
		}
		if src.Kind != hf.Reward {
			return nil, errkind.BadInputf("eval.judge %s is a policy, not a reward model: name a run's reward model (RUN_ID:rm) or an imported one with a score head", s.Eval.Judge)
		}
		src.Model.SetThreads(s.Threads)
		tok := data.tok
		if src.Tokenizer != nil {
			tok = src.Tokenizer
		}
		j := &judge{name: "judge"}
		j.score = rmScorer(src.Model, tok, data, &j.cut)
		js = append(js, j)
	}
	if gold, ok := judgeOf(s); ok {
		js = append(js, &judge{name: "gold", score: func(ps []prompt, rs []string) ([]float64, error) {
			out := make([]float64, len(rs))
			for i, r := range rs {
				out[i], _ = gold(ps[i].Text, r)
			}
			return out, nil
		}})
	}
	return js, nil
}

// rmScorer scores responses with a reward model, rendered as it was
// trained to read them. A prompt that leaves the reply and its end of
// text no room in the model's context (another tokenizer's, for
// eval.judge, or the template's end of turn after a reply cut at
// ppo.max_new_tokens) is cut from the left, as data.max_prompt_tokens
// cuts; cut counts them.
func rmScorer(m *model.Model, tok tokenizer.Tokenizer, data *runData, cut *int) func([]prompt, []string) ([]float64, error) {
	fit := &runData{tmpl: data.tmpl, tok: tok, context: m.Config.Context}
	return func(ps []prompt, rs []string) ([]float64, error) {
		exs := make([]stage.Example, len(rs))
		for i, r := range rs {
			ex, wasCut, err := fit.scored(ps[i].Rendered, r)
			if err != nil {
				return nil, err
			}
			if wasCut {
				*cut++
			}
			exs[i] = ex
		}
		got, err := rewardmodel.ScoreExamples(m, tok, exs, 64)
		if err != nil {
			return nil, err
		}
		out := make([]float64, len(got))
		for i, v := range got {
			out[i] = float64(v)
		}
		return out, nil
	}
}

// humanEval is the human evaluation of eval.human: the pairs of different
// responses, each shown in an order drawn for it, put in a labeling batch.
type humanEval struct {
	spool     *itemSpool
	rng       *rand.Rand
	ppo       [][32]byte // SHA-256 of the PPO response, by item
	identical int        // pairs of identical responses: ties, not shown
}

func newHumanEval(seed uint64) (*humanEval, error) {
	spool, err := newItemSpool()
	if err != nil {
		return nil, err
	}
	return &humanEval{spool: spool, rng: rand.New(rand.NewPCG(seed, 0xe7a1))}, nil
}

// add makes the pair of r an item of the batch (r records which).
func (h *humanEval) add(r *SideBySide) error {
	if r.SFT == r.PPO {
		h.identical++
		return nil
	}
	item, first := h.spool.items, h.rng.IntN(2) == 0
	resps := []string{r.SFT, r.PPO}
	if first {
		resps = []string{r.PPO, r.SFT}
	}
	if err := h.spool.add(postgres.BatchItem{Prompt: r.Prompt, Responses: resps}); err != nil {
		return err
	}
	h.ppo = append(h.ppo, sha256.Sum256([]byte(postgres.StoredText(r.PPO)))) // what the batch stores
	r.Item, r.PPOFirst = &item, first
	return nil
}

// humanVerdict stores the human evaluation's batch (a retried attempt
// finds it), waits for its labels as the labels stage does, and adds the
// human win rate of PPO over SFT to m, by item (ties and identical pairs
// count half, several labelers of an item are averaged), with its 95%
// Wilson interval over the items.
func (a *Activities) humanVerdict(ctx context.Context, t *tracker, s runspec.Spec, h *humanEval, name string, deadline time.Time, m map[string]float64) error {
	if h.spool.items == 0 {
		return errkind.BadInputf("eval: every PPO response is identical to its SFT response; there is nothing for people to compare (set eval.human: false)")
	}
	b, err := a.DB.GetBatch(ctx, name)
	if errors.Is(err, errkind.NotFound) {
		b, err = a.DB.CreateBatchFrom(ctx, name, s.ID, deadline, h.spool.items, labeling(s), h.spool.replay)
	}
	if err != nil {
		return err
	}
	if b, err = a.awaitLabels(ctx, t, s, b, deadline); err != nil {
		return err
	}
	labels, err := a.DB.BatchRanks(ctx, name)
	if err != nil {
		return err
	}
	return h.verdict(name, labels, b.Items, m)
}

// verdict adds to m the human win rate of the batch's labels: each labeled
// item scores 1 (PPO better), 1/2 (a tie) or 0, averaged over its
// labelers; identical pairs are ties. The side that is PPO's is read from
// the stored responses, not from this attempt's memory of the order.
func (h *humanEval) verdict(name string, labels []postgres.ItemRanks, items int, m map[string]float64) error {
	score := map[int]float64{}
	per := map[int]int{}
	ties := 0
	for _, l := range labels {
		if l.Item < 0 || l.Item >= len(h.ppo) || len(l.Ranks) != 2 || len(l.Responses) != 2 {
			return fmt.Errorf("eval: batch %s has a comparison of item %d with %d ranks of %d responses, not one of its pairs", name, l.Item, len(l.Ranks), len(l.Responses))
		}
		side := slices.IndexFunc(l.Responses, func(sum []byte) bool { return bytes.Equal(sum, h.ppo[l.Item][:]) })
		if side < 0 {
			return errkind.BadInputf("eval: batch %s item %d does not show this evaluation's PPO response: the batch was stored by an attempt that sampled differently (another build or CPU); start the run again under a new id", name, l.Item)
		}
		ppo, sft := l.Ranks[side], l.Ranks[1-side]
		switch {
		case ppo < sft:
			score[l.Item]++
		case ppo == sft:
			score[l.Item] += 0.5
			ties++
		}
		per[l.Item]++
	}
	var wins float64
	for _, item := range slices.Sorted(maps.Keys(per)) { // in order: the sum is the same bits on every attempt
		wins += score[item] / float64(per[item])
	}
	n := len(per) + h.identical
	rate := (wins + 0.5*float64(h.identical)) / float64(n)
	lo, hi := preference.Wilson95(rate, int64(n))
	m["human_win_rate"], m["human_win_low"], m["human_win_high"] = rate, lo, hi
	m["human_labels"], m["human_ties"], m["human_identical"], m["human_items"] = float64(len(labels)), float64(ties), float64(h.identical), float64(items)
	m["human_labeled_items"] = float64(len(per))
	return nil
}
