package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// splitGPT2 calls yield with each piece of text as GPT-2's pre-tokenizer
// splits it, in order; the pieces concatenate to text. It is a hand-written
// scanner for the regular expression
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// (Go's regexp has no lookahead), with \s as unicode.IsSpace, as the
// compiled-in r50k codec matches it. text must be valid UTF-8.
func splitGPT2(text string, yield func(piece string)) {
	for i := 0; i < len(text); {
		n := matchGPT2(text[i:])
		yield(text[i : i+n])
		i += n
	}
}

// Classes of a character in the regular expression.
const (
	classSpace  = iota // \s
	classLetter        // \p{L}
	classNumber        // \p{N}
	classOther         // [^\s\p{L}\p{N}]
)

func classOf(r rune) int {
	switch {
	case unicode.IsSpace(r):
		return classSpace
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	}
	return classOther
}

// matchGPT2 returns the length in bytes of the first piece of s, which is
// not empty.
func matchGPT2(s string) int {
	// 's|'t|'re|'ve|'m|'ll|'d, lower case only, whatever follows.
	if s[0] == '\'' && len(s) >= 2 {
		switch s[1] {
		case 's', 't', 'm', 'd':
			return 2
		}
		if len(s) >= 3 {
			switch s[1:3] {
			case "re", "ve", "ll":
				return 3
			}
		}
	}
	// ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional space, then
	// a run of one class.
	start := 0
	if s[0] == ' ' {
		start = 1
	}
	if start < len(s) {
		r, n := utf8.DecodeRuneInString(s[start:])
		if c := classOf(r); c != classSpace {
			end := start + n
			for end < len(s) {
				r, n := utf8.DecodeRuneInString(s[end:])
				if classOf(r) != c {
					break
				}
				end += n
			}
			return end
		}
	}
	// '\s+(?!\S)': the whitespace run but its last character, when a
	// non-space follows; '\s+' otherwise.
	end, last := 0, 0
	for end < len(s) {
		r, n := utf8.DecodeRuneInString(s[end:])
		if !unicode.IsSpace(r) {
			break
		}
		last = end
		end += n
	}
	if end < len(s) && last > 0 {
		return last
	}
	return end
}

// byteChars is GPT-2's bytes_to_unicode table: byte b is written as the
// character byteChars[b] in vocab.json and merges.txt. Printable bytes stand
// for themselves; the others (controls, space, 0x7f-0xa0, 0xad) map in
// order to U+0100 and up.
var byteChars = func() [256]rune {
	var t [256]rune
	next := rune(256)
	for b := range 256 {
		if ('!' <= b && b <= '~') || (0xa1 <= b && b <= 0xac) || (0xae <= b && b <= 0xff) {
			t[b] = rune(b)
		} else {
			t[b] = next
			next++
		}
	}
	return t
}()

// charBytes inverts byteChars.
var charBytes = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, r := range byteChars {
		m[r] = byte(b)
	}
	return m
}()

// byteLevelDecode returns the bytes a vocabulary token stands for, or false
// when tok has a character outside the byte-level alphabet.
func byteLevelDecode(tok string) ([]byte, bool) {
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		b, ok := charBytes[r]
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}
