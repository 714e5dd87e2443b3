package activities

import (
	"crypto/sha256"
	"math"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/tokenizer"
)

// testData is a runData on a character tokenizer (one token a character)
// with the given template, limits and context.
func testData(t *testing.T, template string, maxPrompt, maxResponse, context int) *runData {
	t.Helper()
	var alphabet strings.Builder
	alphabet.WriteByte('\n')
	for c := byte(' '); c <= '~'; c++ {
		alphabet.WriteByte(c)
	}
	tok, err := tokenizer.NewChar(alphabet.String())
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chat.ParseTemplate(template)
	if err != nil {
		t.Fatal(err)
	}
	return &runData{data: runspec.Data{MaxPromptTokens: maxPrompt, MaxResponseTokens: maxResponse}, tmpl: tmpl, tok: tok, context: context}
}

// TestTruncationPolicy: prompts are cut from the left, targets at the
// right, rows that still do not fit are dropped, and each row counts once.
func TestTruncationPolicy(t *testing.T) {
	for _, c := range []struct {
		name                    string
		maxPrompt, maxResp, ctx int
		prompt, response        string
		extra                   int
		want                    string // prompt|response, "" = dropped
		cut, dropped            int
	}{
		{"fits", 0, 0, 20, "abc", "xyz", 0, "abc|xyz", 0, 0},
		{"prompt cut left", 4, 0, 20, "abcdefgh", "xy", 0, "efgh|xy", 1, 0},
		{"target cut right", 0, 3, 20, "ab", "vwxyz", 0, "ab|vwx", 1, 0},
		{"both cut, one row", 2, 2, 20, "abcd", "wxyz", 0, "cd|wx", 1, 0},
		{"extra does not fit", 0, 0, 10, "abcdef", "wxyz", 1, "", 0, 1},
		{"fits exactly", 0, 0, 10, "abcdef", "wxyz", 0, "abcdef|wxyz", 0, 0},
		{"cut, then too long", 4, 0, 8, "abcdefgh", "uvwxy", 0, "", 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := testData(t, "plain", c.maxPrompt, c.maxResp, c.ctx)
			ex, ok, err := d.example(c.prompt, nil, c.response, c.extra)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if ok {
				got = ex.Prompt + "|" + ex.Response
			}
			if got != c.want || d.Cut != c.cut || d.Dropped != c.dropped {
				t.Errorf("got %q (%d cut, %d dropped), want %q (%d, %d)", got, d.Cut, d.Dropped, c.want, c.cut, c.dropped)
			}
		})
	}
}

// TestComparisonCountsOnce: a comparison whose prompt is cut counts as one
// cut row, not one per response, and one response that does not fit drops
// the whole comparison.
func TestComparisonCountsOnce(t *testing.T) {
	d := testData(t, "plain", 3, 0, 10)
	p, rs, ok, err := d.comparison("abcdef", nil, []string{"x", "yy", "zzz"})
	if err != nil || !ok || p != "def" || strings.Join(rs, ",") != "x,yy,zzz" || d.Cut != 1 || d.Dropped != 0 {
		t.Errorf("got %q %q %v %v, %d cut %d dropped; want def [x yy zzz], 1 cut", p, rs, ok, err, d.Cut, d.Dropped)
	}
	if _, _, ok, _ := d.comparison("ab", nil, []string{"x", "yyyyyyyy"}); ok || d.Dropped != 1 {
		t.Errorf("a comparison with a response past the context: ok %v, %d dropped", ok, d.Dropped)
	}
}

// TestTemplatePromptReserve: prompts are rendered by the template and must
// leave the sampled tokens room.
func TestTemplatePromptReserve(t *testing.T) {
	d := testData(t, "hh", 0, 0, 30)
	p, n, cut, ok, err := d.fitPrompt("hi", nil, 5)
	if err != nil || !ok || cut || p != "\n\nHuman: hi\n\nAssistant:" || n != len(p) {
		t.Fatalf("got %q %d %v %v %v", p, n, cut, ok, err)
	}
	if _, _, _, ok, _ := d.fitPrompt("hi", nil, 30-n+1); ok {
		t.Error("a prompt with no room for the sample fits")
	}
}

// TestScoredCutsForTheJudge: a reward model whose context cannot hold the
// prompt, the reply in the template's target form and the end of text
// reads the prompt cut from the left; a reply that leaves no room is an
// error that says what to change.
func TestScoredCutsForTheJudge(t *testing.T) {
	d := testData(t, "chatml", 0, 0, 16)
	ex, cut, err := d.scored("0123456789", "abc") // "abc<|im_end|>" is 13 tokens, + end of text: 2 left
	if err != nil || !cut || ex.Prompt != "89" || ex.Response != "abc<|im_end|>" {
		t.Errorf("got %+v %v %v, want the prompt cut to 89", ex, cut, err)
	}
	if ex, cut, err := d.scored("01", "a"); err != nil || cut || ex.Prompt != "01" {
		t.Errorf("a pair that fits: %+v %v %v", ex, cut, err)
	}
	if _, _, err := d.scored("01", "abcdef"); err == nil || !strings.Contains(err.Error(), "ppo.max_new_tokens") {
		t.Errorf("a reply that fills the context: %v", err)
	}
}

// TestHumanVerdict: the side that is PPO's is read from the stored
// responses (whichever was shown first), several labelers of an item are
// averaged, identical pairs are ties, and the interval is over items; a
// batch that does not show this evaluation's responses is refused.
func TestHumanVerdict(t *testing.T) {
	sum := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	h := &humanEval{identical: 1}
	for _, r := range []string{"ppo0", "ppo1", "ppo2"} {
		h.ppo = append(h.ppo, sha256.Sum256([]byte(r)))
	}
	labels := []postgres.ItemRanks{
		{Item: 0, Ranks: []int16{1, 2}, Responses: [][]byte{sum("ppo0"), sum("sft0")}}, // PPO shown first, preferred
		{Item: 1, Ranks: []int16{1, 2}, Responses: [][]byte{sum("sft1"), sum("ppo1")}}, // PPO shown second, SFT preferred
		{Item: 1, Ranks: []int16{2, 1}, Responses: [][]byte{sum("sft1"), sum("ppo1")}}, // a second labeler prefers PPO
		{Item: 2, Ranks: []int16{1, 1}, Responses: [][]byte{sum("sft2"), sum("ppo2")}}, // a tie
	}
	m := map[string]float64{}
	if err := h.verdict("b", labels, 3, m); err != nil {
		t.Fatal(err)
	}
	// Items score 1, 1/2 (two labelers disagree), 1/2 (tie); the identical pair 1/2: 2.5 of 4.
	if m["human_win_rate"] != 2.5/4 || m["human_labels"] != 4 || m["human_labeled_items"] != 3 || m["human_ties"] != 1 || m["human_identical"] != 1 {
		t.Errorf("metrics %v", m)
	}
	if lo, hi := m["human_win_low"], m["human_win_high"]; !(lo < 0.625 && hi > 0.625) || math.IsNaN(lo) {
		t.Errorf("interval %v-%v", lo, hi)
	}
	labels[0].Responses[0] = sum("another sample")
	if err := h.verdict("b", labels, 3, map[string]float64{}); err == nil || !strings.Contains(err.Error(), "sampled differently") {
		t.Errorf("a batch of other responses: %v", err)
	}
}
