package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

func TestGPT2KnownIDs(t *testing.T) {
	tok := NewGPT2()
	// ids from OpenAI's GPT-2 vocabulary
	tests := []struct {
		text string
		want []int32
	}{
		{"Hello world", []int32{15496, 995}},
		{"hello world", []int32{31373, 995}},
		{" the", []int32{262}},
		{"a, b.\n", []int32{64, 11, 275, 13, 198}},
		{"", []int32{}},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			got, err := tok.Encode(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
			}
			back, err := tok.Decode(append(got, tok.EOT()))
			if err != nil || back != tc.text {
				t.Fatalf("Decode = %q, %v; want %q", back, err, tc.text)
			}
		})
	}
	if tok.VocabSize() != 50257 || tok.EOT() != 50256 {
		t.Fatalf("vocab %d, eot %d", tok.VocabSize(), tok.EOT())
	}
}

func TestRoundTrip(t *testing.T) {
	gpt2 := NewGPT2()
	char, err := NewChar(DefaultAlphabet)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  Tokenizer
		text string
	}{
		{"char", char, "reverse: abc\nResponse: CBA ~!"},
		{"gpt2 ascii", gpt2, "Instruction: sort the letters of 'banana'.\n\nResponse:"},
		{"gpt2 unicode", gpt2, "naïve café — 日本語 🙂"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := tc.tok.Encode(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if id < 0 || int(id) >= tc.tok.VocabSize() || id == tc.tok.EOT() {
					t.Fatalf("id %d out of range", id)
				}
			}
			back, err := tc.tok.Decode(ids)
			if err != nil || back != tc.text {
				t.Fatalf("round trip %q, %v; want %q", back, err, tc.text)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	char, err := NewChar("abc")
	if err != nil {
		t.Fatal(err)
	}
	gpt2 := NewGPT2()
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"char unknown character", func() error { _, err := char.Encode("abz"); return err }, `character 'z' at byte 2 is not in the alphabet`},
		{"char id out of range", func() error { _, err := char.Decode([]int32{1, 4}); return err }, "id 4 at position 1 is outside [0,4)"},
		{"gpt2 invalid utf-8", func() error { _, err := gpt2.Encode("ok\xffno"); return err }, "invalid UTF-8 at byte 2"},
		{"gpt2 id out of range", func() error { _, err := gpt2.Decode([]int32{50257}); return err }, "id 50257 at position 0"},
		{"gpt2 negative id", func() error { _, err := gpt2.Decode([]int32{-1}); return err }, "id -1"},
		{"repeated alphabet", func() error { _, err := NewChar("aba"); return err }, "repeats 'a'"},
		{"unknown name", func() error { _, err := New("sentencepiece"); return err }, `unknown tokenizer "sentencepiece"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCharIDs(t *testing.T) {
	tok, err := New("char")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode("\n a")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []int32{1, 2, 67}) || tok.VocabSize() != 97 || tok.EOT() != 0 {
		t.Fatalf("ids %v, vocab %d", ids, tok.VocabSize())
	}
}

func FuzzCharEncode(f *testing.F) {
	tok, err := NewChar(DefaultAlphabet)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("hello\nworld")
	f.Add("\xff")
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := tok.Encode(s)
		if err != nil {
			return
		}
		back, err := tok.Decode(ids)
		if err != nil || back != s {
			t.Fatalf("round trip %q -> %q, %v", s, back, err)
		}
	})
}
