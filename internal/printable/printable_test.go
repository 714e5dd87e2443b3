package printable

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ada", "ada"},
		{"Zoë 李 👩‍🔬", "Zoë 李 👩‍🔬"}, // letters, CJK and an emoji sequence (with a zero-width joiner) stay
		{`back\slash`, `back\slash`},
		{"red\x1b[31m", `red\x1b[31m`},
		{"two\nlines", `two\nlines`},
		{"cr\rover", `cr\rover`},
		{"tab\tbed", `tab\tbed`},
		{"bell\a", `bell\a`},
		{"nul\x00", `nul\x00`},
		{"del\x7f", `del\x7f`},
		{"c1\u0085\u009b", `c1\u0085\u009b`},
		{"sep\u2028x", `sep\u2028x`},
		{"evil\u202eexe.txt", `evil\u202eexe.txt`},
		{"iso\u2066x\u2069", `iso\u2066x\u2069`},
		{"bad\xffutf8", `bad\xffutf8`},
	} {
		if got := String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestStringHasNoControls checks the property callers rely on: whatever the
// input, the output holds no byte or character a terminal acts on.
func TestStringHasNoControls(t *testing.T) {
	var all strings.Builder
	for r := rune(0); r < 0x3000; r++ {
		all.WriteRune(r)
	}
	all.WriteString("\xff\xfe\xc0")
	out := String(all.String())
	for i, r := range out {
		if needsEscape(r, len(string(r))) {
			t.Fatalf("output keeps %U at byte %d", r, i)
		}
	}
}

func TestStringKeepsCleanTextWithoutAllocating(t *testing.T) {
	s := "labeler ada-01 (Zoë)"
	if n := testing.AllocsPerRun(100, func() { _ = String(s) }); n != 0 {
		t.Errorf("String allocates %v times on clean text", n)
	}
}

func FuzzString(f *testing.F) {
	f.Add("a\x1b[2Jb\n\u202e\xff")
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		for _, r := range out {
			if needsEscape(r, len(string(r))) {
				t.Fatalf("String(%q) = %q keeps %U", s, out, r)
			}
		}
		if String(out) != out {
			t.Fatalf("String is not idempotent on %q", s)
		}
	})
}
