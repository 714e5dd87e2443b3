package dataset

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/chat"
)

// fuzzFormat seeds a fuzz target with the format's test files, a line at a
// time, and checks what every accepted row must satisfy.
func fuzzFormat(f *testing.F, format Format) {
	for _, name := range []string{".good.jsonl", ".bad.jsonl"} {
		data, err := os.ReadFile(filepath.Join("testdata", string(format)+name))
		if err != nil {
			f.Fatal(err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			f.Add(line, false)
		}
	}
	f.Fuzz(func(t *testing.T, line []byte, asPrompts bool) {
		opts := Options{Format: format, HeldoutFraction: 0.5, MaxChars: 200}
		if asPrompts {
			opts.Kind = Prompt
		}
		opts.KeepReading = true
		if _, err := NewReader(bytes.NewReader(line), opts); err != nil {
			return // a file that cannot be opened (a broken gzip header) is an error, not rows
		}
		exs, rd, _ := readAll(t, bytes.NewReader(line), opts)
		if len(exs) > 0 && rd.ProblemCount() > 0 {
			t.Fatalf("rows %v and problems %v from one line", exs, rd.Problems)
		}
		for _, ex := range exs {
			if strings.TrimSpace(ex.Prompt) == "" || strings.IndexByte(ex.Prompt+ex.Target, 0) >= 0 {
				t.Fatalf("accepted prompt %q target %q", ex.Prompt, ex.Target)
			}
			if (ex.Kind() == Prompt) != asPrompts && format != FormatPrompt || format == FormatPrompt && ex.Kind() != Prompt {
				t.Fatalf("kind %s with asPrompts %v", ex.Kind(), asPrompts)
			}
			if ex.Kind() == Demonstration && strings.TrimSpace(ex.Target) == "" {
				t.Fatalf("empty target accepted: %+v", ex)
			}
			if ex.Split != SplitOf(ex.Prompt, 0.5) {
				t.Fatalf("split %s of %q", ex.Split, ex.Prompt)
			}
			if ex.Turns != nil {
				if err := chat.CheckPrompt(ex.Turns); err != nil {
					t.Fatalf("turns %v: %v", ex.Turns, err)
				}
			}
			// A conversation is stored as its rendering, except an HH
			// transcript (of --format hh, or given as a string), which keeps
			// its text, with its turns.
			if text, turns := chat.Identity(chat.Turns(ex.Prompt, ex.Turns)); text == ex.Prompt && (turns == nil) == (ex.Turns == nil) {
				continue
			}
			if turns, err := chat.ParseHHPrompt(ex.Prompt); err != nil || !reflect.DeepEqual(turns, ex.Turns) {
				t.Fatalf("stored prompt %q with turns %v: not its rendering, nor an HH transcript of them (%v %v)", ex.Prompt, ex.Turns, turns, err)
			}
		}
	})
}

func FuzzPromptCompletion(f *testing.F) { fuzzFormat(f, FormatPromptCompletion) }
func FuzzMessages(f *testing.F)         { fuzzFormat(f, FormatMessages) }
func FuzzPrompt(f *testing.F)           { fuzzFormat(f, FormatPrompt) }
func FuzzAlpaca(f *testing.F)           { fuzzFormat(f, FormatAlpaca) }
func FuzzHH(f *testing.F)               { fuzzFormat(f, FormatHH) }
