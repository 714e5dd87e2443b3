package chat

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseHH(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Message
		err  string
	}{
		{"\n\nHuman: Hi there\n\nAssistant: Hello.", []Message{{User, "Hi there"}, {Assistant, "Hello."}}, ""},
		{"\n\nHuman: a\n\nb\n\nAssistant: c\n\nHuman: d\n\nAssistant:", []Message{{User, "a\n\nb"}, {Assistant, "c"}, {User, "d"}, {Assistant, ""}}, ""},
		{"Be kind.\n\nHuman: a\n\nAssistant: b", []Message{{System, "Be kind."}, {User, "a"}, {Assistant, "b"}}, ""},
		{"\n\n\n\nHuman: a\n\nAssistant:  b ", []Message{{User, "a"}, {Assistant, "b"}}, ""},
		{"no tags", nil, "no \"\\n\\nHuman:\" turn"},
		{"\n\nAssistant: a\n\nHuman: b", nil, "starts with an assistant turn"},
	} {
		got, err := ParseHH(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseHH(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseHH(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseHHPrompt(t *testing.T) {
	got, err := ParseHHPrompt("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:")
	if want := []Message{{User, "a"}, {Assistant, "b"}, {User, "c"}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseHHPrompt = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"\n\nHuman: a", "\n\nHuman: a\n\nAssistant: b\n\nAssistant:"} {
		if _, err := ParseHHPrompt(bad); err == nil {
			t.Errorf("ParseHHPrompt(%q) accepted it", bad)
		}
	}
}

func TestIdentity(t *testing.T) {
	if text, turns := Identity([]Message{{User, "Hi."}}); text != "Hi." || turns != nil {
		t.Errorf("one user turn: %q %v, want the plain text and no turns", text, turns)
	}
	msgs := []Message{{System, "S"}, {User, "a"}, {Assistant, "b"}, {User, "c"}}
	text, turns := Identity(msgs)
	if text != "S\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:" || !reflect.DeepEqual(turns, msgs) {
		t.Errorf("conversation: %q %v", text, turns)
	}
	if back, err := ParseHHPrompt(text); err != nil || !reflect.DeepEqual(back, msgs) {
		t.Errorf("the identity text parses back to %q, %v", back, err)
	}
	if got := Turns("Hi.", nil); !reflect.DeepEqual(got, []Message{{User, "Hi."}}) {
		t.Errorf("Turns of a plain prompt = %v", got)
	}
}

func TestCheckPrompt(t *testing.T) {
	for _, tc := range []struct {
		msgs []Message
		err  string
	}{
		{nil, "no turns"},
		{[]Message{{User, "a"}, {System, "s"}, {User, "b"}}, "turn 1 is a system turn"},
		{[]Message{{User, "a"}, {Assistant, "b"}}, "ends with an assistant turn"},
		{[]Message{{System, "s"}, {User, "a"}}, ""},
	} {
		err := CheckPrompt(tc.msgs)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("CheckPrompt(%v) = %v, want %q", tc.msgs, err, tc.err)
		}
	}
}

func TestTemplates(t *testing.T) {
	msgs := []Message{{System, "S"}, {User, "a"}, {Assistant, "b"}, {User, "c"}}
	stored, _ := Identity(msgs)
	for _, tc := range []struct {
		name, want    string
		target, space string // Target("d") and Target(" d")
	}{
		{"plain", stored, "d", " d"},
		{"hh", "S\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:", " d", " d"},
		{"chatml", "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n", "d<|im_end|>", " d<|im_end|>"},
		{"{{range .Messages}}[{{.Role}}] {{.Content}}\n{{end}}[assistant] ", "[system] S\n[user] a\n[assistant] b\n[user] c\n[assistant] ", "d", " d"},
	} {
		tmpl, err := ParseTemplate(tc.name)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := tmpl.Render(msgs, stored)
		if err != nil || got != tc.want {
			t.Errorf("%s: Render = %q, %v; want %q", tc.name, got, err, tc.want)
		}
		if r := tmpl.Reply(tmpl.Target(" d") + "\n\nHuman: more<|im_end|>"); r != " d" && tc.name != "plain" && !strings.HasPrefix(tc.name, "{{") {
			t.Errorf("%s: Reply cut the sample to %q, want %q", tc.name, r, " d")
		}
		if a, b := tmpl.Target("d"), tmpl.Target(" d"); a != tc.target || b != tc.space {
			t.Errorf("%s: Target = %q, %q; want %q, %q", tc.name, a, b, tc.target, tc.space)
		}
	}
	for _, bad := range []string{"llama", "{{range .Messages}", "{{.Nope}}"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("ParseTemplate(%q) accepted it", bad)
		}
	}
}

// FuzzParseHHPrompt: any text either is refused or parses into a valid
// prompt whose stored identity parses back to the same turns.
func FuzzParseHHPrompt(f *testing.F) {
	for _, s := range []string{"\n\nHuman: a\n\nAssistant:", "S\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:", "\n\nAssistant:", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		msgs, err := ParseHHPrompt(s)
		if err != nil {
			return
		}
		if err := CheckPrompt(msgs); err != nil {
			t.Fatalf("ParseHHPrompt(%q) = %q, not a valid prompt: %v", s, msgs, err)
		}
		text, turns := Identity(msgs)
		if turns == nil {
			return
		}
		back, err := ParseHHPrompt(text)
		if err != nil || !reflect.DeepEqual(back, msgs) {
			t.Fatalf("identity %q of %q parses back to %q, %v", text, msgs, back, err)
		}
	})
}

func TestSplitHH(t *testing.T) {
	p, c, r, mismatch, ok := SplitHH("\n\nHuman: a\n\nAssistant: yes", "\n\nHuman: a\n\nAssistant: no")
	if !ok || mismatch || p != "\n\nHuman: a\n\nAssistant:" || c != " yes" || r != " no" {
		t.Fatalf("SplitHH = %q %q %q %v %v", p, c, r, mismatch, ok)
	}
}
