package dataset

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/instructflow/instructflow/chat"
)

func TestStats(t *testing.T) {
	rows := []Example{
		{Prompt: "a", Target: "xx", Split: Train},
		{Prompt: "a", Target: "yyy", Split: Train},
		{Prompt: "b", Split: Heldout},
		{Prompt: " a ", Target: "xx", Split: Train}, // a near-duplicate of row 0
	}
	b := NewStats(int64(len(rows)), "characters", utf8.RuneCountInString)
	for _, r := range rows {
		b.Add(r, "<"+r.Prompt+">")
	}
	s := b.Stats()
	if s.Rows != 4 || s.Counts[Train][Demonstration] != 3 || s.Counts[Heldout][Prompt] != 1 || s.RepeatedPrompts != 1 || s.NearDuplicates != 1 {
		t.Fatalf("stats %+v", s)
	}
	if s.Prompt != (Percentiles{P50: 3, P90: 5, P99: 5, Max: 5}) || s.Target != (Percentiles{P50: 2, P90: 3, P99: 3, Max: 3}) {
		t.Fatalf("lengths %+v %+v", s.Prompt, s.Target)
	}
	if len(s.Samples) != 3 || s.Samples[0].Prompt != "a" || s.Samples[1].Prompt != "b" || s.Samples[2].Prompt != " a " {
		t.Fatalf("samples %+v, want rows 1, 2 and 3", s.Samples)
	}
	if e := NewStats(0, "characters", utf8.RuneCountInString).Stats(); e.Rows != 0 || len(e.Samples) != 0 {
		t.Fatalf("empty stats %+v", e)
	}
}

// TestExportReadsBack: what WriteJSONL writes, the reader reads back as
// the same rows, byte for byte the same on a second write.
func TestExportReadsBack(t *testing.T) {
	demos := []Example{
		{Prompt: "The sky is", Target: " blue <&>", Split: Train},
		{Prompt: "S\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:", Target: "d", Split: Heldout,
			Turns: []chat.Message{{Role: chat.System, Content: "S"}, {Role: chat.User, Content: "a"}, {Role: chat.Assistant, Content: "b"}, {Role: chat.User, Content: "c"}}},
		// An HH transcript of one turn keeps its text, which is not the
		// rendering of its turns.
		{Prompt: "\n\nHuman: hi there\n\nAssistant:", Target: " hello", Turns: []chat.Message{{Role: chat.User, Content: "hi there"}}},
	}
	prompts := []Example{{Prompt: "p", Split: Heldout}, {Prompt: demos[1].Prompt, Turns: demos[1].Turns, Split: Train}}
	for _, tc := range []struct {
		rows []Example
		kind Kind
	}{{demos, Demonstration}, {prompts, Prompt}} {
		var out bytes.Buffer
		for _, r := range tc.rows {
			if err := WriteJSONL(&out, r); err != nil {
				t.Fatal(err)
			}
		}
		first := out.String()
		for _, r := range tc.rows {
			WriteJSONL(&out, r)
		}
		if out.String() != first+first {
			t.Fatalf("a second export differs:\n%s", out.String())
		}
		got, _, err := readAll(t, strings.NewReader(first), Options{Format: FormatPromptCompletion, Kind: tc.kind, HeldoutFraction: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			// The split is drawn again on import, from the same text.
			if want := SplitOf(tc.rows[i].Prompt, 0.5); got[i].Split != want {
				t.Errorf("row %d: split %s, want %s", i, got[i].Split, want)
			}
			got[i].Line, got[i].Split = 0, tc.rows[i].Split
		}
		if !reflect.DeepEqual(got, tc.rows) {
			t.Fatalf("read back\n%+v\nwant\n%+v\nfrom\n%s", got, tc.rows, first)
		}
	}
}
