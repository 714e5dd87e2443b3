package sampling

import (
	"reflect"
	"testing"

	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/tasks"
)

func tinyModel(t *testing.T, seed uint64) *model.Model {
	t.Helper()
	tok := tasks.Tokenizer()
	m, err := model.New(model.Config{Vocab: tok.VocabSize(), Context: 32, Layers: 1, Heads: 2, Width: 16}, model.NewRNG(seed))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// counting is a policy that records how many sequences each Sample call got.
type counting struct {
	*model.Model
	calls []int
}

func (c *counting) Sample(prompts [][]int32, sc model.SampleConfig, rng *model.RNG) ([]model.Sequence, error) {
	c.calls = append(c.calls, len(prompts))
	return c.Model.Sample(prompts, sc, rng)
}

// A policy judged against itself with the same seeds ties every sample
// and has no KL to itself; against another policy the judge sees every
// sample of both.
func TestEvaluate(t *testing.T) {
	tok := tasks.Tokenizer()
	prompts := []string{"reverse ab=", "upper cd="}
	m := tinyModel(t, 1)
	for _, batch := range []int{0, 3} {
		calls := 0
		judge := func(p, r string) (float64, error) { calls++; return float64(len(r)), nil }
		ev, err := Evaluate(m, m, tok, judge, prompts, 3, 8, batch, 7, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Samples != 6 || ev.WinRate != 0.5 || ev.KL != 0 || ev.Gold != ev.RefGold || calls != 12 {
			t.Errorf("batch %d: self-evaluation: %+v after %d judge calls; want 6 samples, win rate 0.5, KL 0, equal gold, 12 calls", batch, ev, calls)
		}
		other, err := Evaluate(m, tinyModel(t, 2), tok, judge, prompts, 3, 8, batch, 7, nil)
		if err != nil || other.KL == 0 || other.Samples != 6 {
			t.Errorf("batch %d: against another policy: %+v, %v; want a KL other than 0", batch, other, err)
		}
	}
}

// Evaluate samples at most batch sequences per call (whole prompts, at
// least one), reports its progress after each, and gives the same verdict
// for the same batch every time.
func TestEvaluateChunks(t *testing.T) {
	tok := tasks.Tokenizer()
	prompts := []string{"reverse ab=", "upper cd=", "sort dcb=", "double xy=", "reverse qrs="}
	judge := func(p, r string) (float64, error) { return tasks.Judge(p, r) }
	for _, tc := range []struct {
		batch    int
		perCall  []int // sequences per Sample call of each policy
		progress []int
	}{
		{batch: 0, perCall: []int{20}, progress: []int{5}},
		{batch: 8, perCall: []int{8, 8, 4}, progress: []int{2, 4, 5}},
		{batch: 9, perCall: []int{8, 8, 4}, progress: []int{2, 4, 5}},
		{batch: 2, perCall: []int{4, 4, 4, 4, 4}, progress: []int{1, 2, 3, 4, 5}}, // below n: one prompt per call
	} {
		var first Eval
		for run := range 2 {
			ref, tuned := &counting{Model: tinyModel(t, 1)}, &counting{Model: tinyModel(t, 2)}
			var progress []int
			ev, err := Evaluate(ref, tuned, tok, judge, prompts, 4, 8, tc.batch, 7, func(n int) error { progress = append(progress, n); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ref.calls, tc.perCall) || !reflect.DeepEqual(tuned.calls, tc.perCall) || !reflect.DeepEqual(progress, tc.progress) {
				t.Errorf("batch %d: Sample calls of %v (reference) and %v (tuned) sequences, progress %v; want %v and %v",
					tc.batch, ref.calls, tuned.calls, progress, tc.perCall, tc.progress)
			}
			if ev.Samples != 20 {
				t.Errorf("batch %d: %d samples, want 20", tc.batch, ev.Samples)
			}
			if run == 0 {
				first = ev
			} else if ev != first {
				t.Errorf("batch %d: second evaluation %+v differs from the first %+v", tc.batch, ev, first)
			}
		}
	}
}

// collect runs Responses and gathers its chunks in order.
func collect(t *testing.T, policy Policy, prompts []string, k, batch int, seed uint64) [][]string {
	t.Helper()
	var out [][]string
	err := Responses(policy, tasks.Tokenizer(), prompts, k, model.SampleConfig{MaxTokens: 6, Temperature: 1}, batch, model.NewRNG(seed),
		func(first int, rs [][]string) error {
			if first != len(out) {
				t.Fatalf("chunk starts at prompt %d after %d prompts", first, len(out))
			}
			out = append(out, rs...)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Responses keeps, per prompt, the distinct non-empty samples in the order
// sampled, at most k of them.
func TestResponses(t *testing.T) {
	prompts := []string{"reverse ab=", "upper cd=", "sort dcb="}
	got := collect(t, tinyModel(t, 3), prompts, 4, 0, 5)
	if len(got) != len(prompts) {
		t.Fatalf("Responses: %d lists for %d prompts", len(got), len(prompts))
	}
	total := 0
	for i, rs := range got {
		total += len(rs)
		seen := map[string]bool{}
		for _, r := range rs {
			if r == "" || seen[r] {
				t.Errorf("prompt %d: %q empty or repeated in %q", i, r, rs)
			}
			seen[r] = true
		}
		if len(rs) > 4 {
			t.Errorf("prompt %d: %d responses of k=4", i, len(rs))
		}
	}
	if total == 0 {
		t.Error("no response kept from 12 samples")
	}
}

// Responses samples at most batch sequences per Sample call (whole
// prompts' k samples, at least one prompt's) and gives the same responses
// for the same batch and seed every time.
func TestResponsesChunks(t *testing.T) {
	var prompts []string
	for _, ex := range tasks.Examples(1, 23) {
		prompts = append(prompts, ex.Prompt)
	}
	for _, tc := range []struct{ batch, maxPerCall, calls int }{
		{batch: 0, maxPerCall: 23 * 6, calls: 1},
		{batch: 12, maxPerCall: 12, calls: 12},
		{batch: 17, maxPerCall: 12, calls: 12},
		{batch: 60, maxPerCall: 60, calls: 3},
		{batch: 4, maxPerCall: 6, calls: 23}, // below k: one prompt per call
	} {
		var first [][]string
		for run := range 2 {
			p := &counting{Model: tinyModel(t, 3)}
			got := collect(t, p, prompts, 6, tc.batch, 5)
			if len(got) != len(prompts) {
				t.Fatalf("batch %d: %d lists for %d prompts", tc.batch, len(got), len(prompts))
			}
			total := 0
			for _, n := range p.calls {
				total += n
				if n > tc.maxPerCall || n%6 != 0 {
					t.Errorf("batch %d: a Sample call of %d sequences (calls %v); want at most %d, whole prompts of 6", tc.batch, n, p.calls, tc.maxPerCall)
				}
			}
			if len(p.calls) != tc.calls || total != 23*6 {
				t.Errorf("batch %d: %d Sample calls of %d sequences in all; want %d calls of %d", tc.batch, len(p.calls), total, tc.calls, 23*6)
			}
			if run == 0 {
				first = got
			} else if !reflect.DeepEqual(got, first) {
				t.Errorf("batch %d: second sampling differs from the first", tc.batch)
			}
		}
	}
}
