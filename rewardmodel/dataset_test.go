package rewardmodel

import (
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/tasks"
)

// A dataset gives back, in any order asked, the comparisons it kept, as
// tokenised in memory; it skips those that teach nothing, refuses a shape
// that cannot be one, and removes its file when closed.
func TestDatasetRoundTrip(t *testing.T) {
	tok := tasks.Tokenizer()
	cs := []Comparison{
		{Prompt: "reverse abc=", Responses: []string{"cba", "abc", "cb"}, Ranks: []int{1, 3, 2}, Labeler: "ada"},
		{Prompt: "upper ab=", Responses: []string{"AB", "ab"}, Ranks: []int{1, 1}, Labeler: "bo"},        // all tie: skipped
		{Prompt: "upper ab=", Responses: []string{"AB", "AB"}, Ranks: []int{1, 2}, Labeler: "bo"},        // duplicate: skipped
		{Prompt: "sort cba=", Responses: []string{"abc", "", "bac"}, Ranks: []int{1, 2, 2}, Labeler: ""}, // empty response and labeler
	}
	d, err := datasetOf(tok, cs)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || d.Skipped != 2 {
		t.Fatalf("%d kept, %d skipped; want 2 and 2", d.Len(), d.Skipped)
	}
	got, err := d.get([]int{1, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	for n, i := range []int{3, 0, 3} {
		c := cs[i]
		want := encoded{ranks: c.Ranks, labeler: c.Labeler}
		for _, r := range c.Responses {
			seq, _ := Sequence(tok, c.Prompt, r)
			want.seqs = append(want.seqs, seq)
		}
		if !reflect.DeepEqual(got[n], want) {
			t.Errorf("read %d: %+v, want %+v", n, got[n], want)
		}
	}
	longest := len("reverse abc=cba") + 1 // and the end of text
	if err := d.fits(longest); err != nil {
		t.Errorf("fits the longest sequence: %v", err)
	}
	if err := d.fits(longest - 1); !errors.Is(err, errkind.BadInput) {
		t.Errorf("a context one token short: %v, want bad input", err)
	}
	name := d.f.Name()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Errorf("dataset file %s left behind (%v)", name, err)
	}
	if _, err := datasetOf(tok, []Comparison{{Prompt: "upper a=", Responses: []string{"A"}, Ranks: []int{1}}}); !errors.Is(err, errkind.BadInput) {
		t.Errorf("a comparison of one response: %v, want bad input", err)
	}
}
