package dataset

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/internal/jsonl"
)

func readAll(t testing.TB, in io.Reader, opts Options) ([]Example, *Reader, error) {
	t.Helper()
	rd, err := NewReader(in, opts)
	if err != nil {
		t.Fatal(err)
	}
	var exs []Example
	for {
		ex, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return exs, rd, err
		}
		exs = append(exs, ex)
	}
}

func open(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

type row struct {
	line           int
	prompt, target string
	turns          int // 0 = a plain prompt
}

func TestGoodFiles(t *testing.T) {
	for _, tc := range []struct {
		format Format
		opts   Options
		want   []row
	}{
		{FormatPromptCompletion, Options{}, []row{
			{1, "The sky is", " blue.", 0},
			{2, "What color is the sky?", "Blue.", 0}, // one user turn is a plain prompt
			{4, "Be brief.\n\nHuman: Hi\n\nAssistant:", "Hello.", 2},
		}},
		{FormatMessages, Options{}, []row{
			{1, "Hi", "Hello!", 0},
			{2, "You are terse.\n\nHuman: 2+2?\n\nAssistant: 5\n\nHuman: Sure?\n\nAssistant:", "4.", 4},
		}},
		{FormatMessages, Options{AllTurns: true}, []row{
			{1, "Hi", "Hello!", 0},
			{2, "You are terse.\n\nHuman: 2+2?\n\nAssistant:", "5", 2},
			{2, "You are terse.\n\nHuman: 2+2?\n\nAssistant: 5\n\nHuman: Sure?\n\nAssistant:", "4.", 4},
		}},
		{FormatMessages, Options{Kind: Prompt}, []row{
			{1, "Hi", "", 0},
			{2, "You are terse.\n\nHuman: 2+2?\n\nAssistant: 5\n\nHuman: Sure?\n\nAssistant:", "", 4},
		}},
		{FormatPrompt, Options{}, []row{
			{1, "Write a haiku about rain.", "", 0},
			{2, "Be kind.\n\nHuman: Cheer me up.\n\nAssistant:", "", 2},
		}},
		{FormatAlpaca, Options{}, []row{
			{1, "Give three tips for staying healthy.", "1. Eat well. 2. Sleep. 3. Move.", 0},
			{2, "Translate to French.\n\nGood morning", "Bonjour", 0},
			{3, "Name a color.", "Red", 0},
		}},
		{FormatHH, Options{}, []row{
			{1, "\n\nHuman: What is a good name for a cat?\n\nAssistant:", " Whiskers is popular.", 1},
			{2, "\n\nHuman: Hi\n\nAssistant: Hello, how can I help?\n\nHuman: Tell me a joke.\n\nAssistant:", " Why did the chicken cross the road?", 3},
		}},
		{FormatHH, Options{Kind: Prompt}, []row{
			{1, "\n\nHuman: What is a good name for a cat?\n\nAssistant:", "", 1},
			{2, "\n\nHuman: Hi\n\nAssistant: Hello, how can I help?\n\nHuman: Tell me a joke.\n\nAssistant:", "", 3},
		}},
	} {
		t.Run(fmt.Sprintf("%s %+v", tc.format, tc.opts), func(t *testing.T) {
			tc.opts.Format = tc.format
			exs, rd, err := readAll(t, open(t, string(tc.format)+".good.jsonl"), tc.opts)
			if err != nil || len(rd.Problems) != 0 {
				t.Fatalf("err %v, problems %v", err, rd.Problems)
			}
			var got []row
			for _, ex := range exs {
				got = append(got, row{ex.Line, ex.Prompt, ex.Target, len(ex.Turns)})
				if ex.Split != Train {
					t.Errorf("line %d: split %q, want train (no held-out fraction)", ex.Line, ex.Split)
				}
				if ex.Turns != nil {
					if err := chat.CheckPrompt(ex.Turns); err != nil {
						t.Errorf("line %d: turns %v: %v", ex.Line, ex.Turns, err)
					}
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("rows\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

type problem struct {
	line int
	rule Rule
}

// TestBadFiles: every problem of a bad file is found on its line, the
// default reader refuses the file at the first one and says where, and
// --skip-invalid keeps the good lines.
func TestBadFiles(t *testing.T) {
	for _, tc := range []struct {
		format Format
		opts   Options
		want   []problem
		detail string // of the first problem
	}{
		{FormatPromptCompletion, Options{}, []problem{{2, RuleMissingField}, {3, RuleEmptyPrompt}, {4, RuleEmptyTarget},
			{5, RuleUnknownRole}, {6, RuleBadConversation}, {7, RuleNUL}, {8, RuleBadJSON}, {9, RuleMissingField}, {10, RuleBadConversation}},
			`field "completion" is missing or null`},
		{FormatMessages, Options{}, []problem{{2, RuleNoTarget}, {3, RuleNoTarget}, {4, RuleBadConversation}, {5, RuleMissingField},
			{6, RuleEmptyTarget}, {7, RuleMissingField}, {8, RuleBadConversation}, {9, RuleMissingField}, {10, RuleEmptyPrompt}},
			`field "messages" ends with a user turn; a demonstration ends with the assistant turn it teaches`},
		{FormatPrompt, Options{}, []problem{{2, RuleMissingField}, {3, RuleEmptyPrompt}, {4, RuleBadConversation}, {5, RuleMissingField}},
			`field "prompt" is missing or null`},
		{FormatAlpaca, Options{}, []problem{{2, RuleMissingField}, {3, RuleMissingField}, {4, RuleMissingField}, {5, RuleEmptyTarget}, {6, RuleEmptyPrompt}},
			`field "output" is missing or null`},
		{FormatHH, Options{}, []problem{{2, RuleBadTranscript}, {3, RuleBadTranscript}, {4, RuleMissingField}, {5, RuleEmptyTarget}},
			`no "\n\nAssistant:" turn`},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			tc.opts.Format = tc.format
			name := string(tc.format) + ".bad.jsonl"
			opts := tc.opts
			opts.KeepReading = true
			_, rd, err := readAll(t, open(t, name), opts)
			if !errors.Is(err, jsonl.ErrRefused) {
				t.Fatalf("err %v, want the file refused", err)
			}
			var got []problem
			for _, p := range rd.Problems {
				got = append(got, problem{p.Line, p.Rule})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("problems %v\nwant %v", rd.Problems, tc.want)
			}
			if !strings.Contains(rd.Problems[0].Detail, tc.detail) {
				t.Errorf("first problem %q, want it to say %q", rd.Problems[0].Detail, tc.detail)
			}

			exs, rd, err := readAll(t, open(t, name), tc.opts)
			first := fmt.Sprintf("line %d: %s", tc.want[0].line, tc.want[0].rule)
			if err == nil || !strings.Contains(err.Error(), first) || len(exs) != 1 || rd.Rows != tc.want[0].line {
				t.Fatalf("default reader: %d rows, read %d lines, err %v; want refused at %q", len(exs), rd.Rows, err, first)
			}

			opts = tc.opts
			opts.SkipInvalid = true
			exs, _, err = readAll(t, open(t, name), opts)
			if err != nil || len(exs) != 1 || exs[0].Line != 1 {
				t.Fatalf("skip invalid: %d rows, err %v; want line 1 alone", len(exs), err)
			}
		})
	}
}

func TestTooLongIsSkipped(t *testing.T) {
	in := `{"prompt": "short", "completion": "ok"}` + "\n" + `{"prompt": "` + strings.Repeat("x", 11) + `", "completion": "ok"}` + "\n"
	exs, rd, err := readAll(t, strings.NewReader(in), Options{Format: FormatPromptCompletion, MaxChars: 10})
	if err != nil || len(exs) != 1 || rd.Counts[RuleTooLong] != 1 || !strings.Contains(rd.Problems[0].Detail, "11 characters, over the limit of 10") {
		t.Fatalf("rows %d, err %v, problems %v", len(exs), err, rd.Problems)
	}
}

func TestKeys(t *testing.T) {
	in := `{"question": "q", "answer": "a"}` + "\n"
	exs, _, err := readAll(t, strings.NewReader(in), Options{Format: FormatPromptCompletion, PromptKey: "question", CompletionKey: "answer"})
	if err != nil || len(exs) != 1 || exs[0].Prompt != "q" || exs[0].Target != "a" {
		t.Fatalf("rows %v, err %v", exs, err)
	}
	in = `{"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}` + "\n"
	exs, _, err = readAll(t, strings.NewReader(in), Options{Format: FormatMessages, MessagesKey: "conversations"})
	if err != nil || len(exs) != 1 || exs[0].Prompt != "q" || exs[0].Target != "a" {
		t.Fatalf("rows %v, err %v", exs, err)
	}
}

// TestSplits: a held-out fraction splits by the prompt's hash, the same
// way on every read, near the fraction asked for; the demonstrations of
// one prompt share its split.
func TestSplits(t *testing.T) {
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, `{"prompt": "p%d", "completion": "a"}`+"\n"+`{"prompt": "p%d", "completion": "b"}`+"\n", i, i)
	}
	read := func() []Example {
		exs, _, err := readAll(t, strings.NewReader(b.String()), Options{Format: FormatPromptCompletion, HeldoutFraction: 0.2})
		if err != nil {
			t.Fatal(err)
		}
		return exs
	}
	a, c := read(), read()
	held := 0
	for i, ex := range a {
		if ex.Split != c[i].Split || ex.Split != SplitOf(ex.Prompt, 0.2) {
			t.Fatalf("row %d: split %s then %s", i, ex.Split, c[i].Split)
		}
		if i%2 == 1 && ex.Split != a[i-1].Split {
			t.Fatalf("prompt %q is on both sides", ex.Prompt)
		}
		if ex.Split == Heldout {
			held++
		}
	}
	if f := float64(held) / float64(len(a)); f < 0.17 || f > 0.23 {
		t.Fatalf("held out %.3f of the rows, want about 0.2", f)
	}
	exs, _, _ := readAll(t, strings.NewReader(b.String()), Options{Format: FormatPromptCompletion, Split: Heldout})
	for _, ex := range exs {
		if ex.Split != Heldout {
			t.Fatalf("--split heldout gave %s", ex.Split)
		}
	}
}

func TestOptionsChecked(t *testing.T) {
	for _, opts := range []Options{
		{Format: "csv"},
		{Format: FormatPrompt, Kind: Demonstration},
		{Format: FormatAlpaca, AllTurns: true},
		{Format: FormatAlpaca, HeldoutFraction: 1},
		{Format: FormatAlpaca, HeldoutFraction: -0.1},
		{Format: FormatAlpaca, Split: Train, HeldoutFraction: 0.1},
		{Format: FormatAlpaca, Split: "test"},
		{Format: FormatAlpaca, Kind: "pairs"},
	} {
		if _, err := NewReader(strings.NewReader(""), opts); err == nil {
			t.Errorf("NewReader accepted %+v", opts)
		}
	}
}

func TestContentHash(t *testing.T) {
	a := Example{Prompt: "ab", Target: "c"}
	for _, b := range []Example{{Prompt: "a", Target: "bc"}, {Prompt: "ab"}, {Prompt: "ab", Target: "d"}} {
		if a.ContentHash() == b.ContentHash() {
			t.Errorf("%+v and %+v hash the same", a, b)
		}
	}
	if (Example{Prompt: "ab", Target: "c", Line: 9, Split: Heldout}).ContentHash() != a.ContentHash() {
		t.Error("the line and split change the content hash")
	}
}

// TestHHTranscriptString: a prompt-completion prompt that is an HH
// transcript keeps its text and gets its turns (as --format hh stores it),
// so that the hh template does not wrap it in a second transcript; other
// strings are one user turn.
func TestHHTranscriptString(t *testing.T) {
	in := `{"prompt": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:", "completion": " d"}
{"prompt": "Say \"\n\nAssistant:\"", "completion": "x"}
{"prompt": [{"role": "user", "content": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"}], "completion": " d"}
{"prompt": "Be brief.\n\nHuman: c\n\nAssistant:", "completion": " d"}
`
	got, _, err := readAll(t, strings.NewReader(in), Options{Format: FormatPromptCompletion})
	if err != nil {
		t.Fatal(err)
	}
	want := []chat.Message{{Role: chat.User, Content: "a"}, {Role: chat.Assistant, Content: "b"}, {Role: chat.User, Content: "c"}}
	if len(got) != 4 || got[0].Prompt != "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:" || !reflect.DeepEqual(got[0].Turns, want) {
		t.Fatalf("got %+v", got)
	}
	if got[1].Turns != nil || got[1].Prompt != "Say \"\n\nAssistant:\"" {
		t.Errorf("a plain prompt: %+v", got[1])
	}
	if got[2].Prompt != got[0].Prompt || !reflect.DeepEqual(got[2].Turns, want) {
		t.Errorf("the transcript as one user turn is stored otherwise than as a string: %+v", got[2])
	}
	// Text before the first "Human:" is the transcript's system turn.
	if w := []chat.Message{{Role: chat.System, Content: "Be brief."}, {Role: chat.User, Content: "c"}}; !reflect.DeepEqual(got[3].Turns, w) {
		t.Errorf("a transcript with a preamble: %+v", got[3])
	}
}
