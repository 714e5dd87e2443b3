package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// DefaultAlphabet is newline and printable ASCII.
var DefaultAlphabet = func() string {
	var b strings.Builder
	b.WriteByte('\n')
	for c := byte(' '); c <= '~'; c++ {
		b.WriteByte(c)
	}
	return b.String()
}()

// Char maps each character of an alphabet to one id: the end-of-text token
// is 0, the alphabet's i-th character is i+1.
type Char struct {
	runes []rune
	ids   map[rune]int32
}

// NewChar returns a tokenizer for alphabet, whose characters must be
// distinct.
func NewChar(alphabet string) (*Char, error) {
	if !utf8.ValidString(alphabet) || alphabet == "" {
		return nil, fmt.Errorf("tokenizer: char alphabet must be non-empty UTF-8")
	}
	c := &Char{ids: map[rune]int32{}}
	for _, r := range alphabet {
		if _, dup := c.ids[r]; dup {
			return nil, fmt.Errorf("tokenizer: char alphabet repeats %q", r)
		}
		c.runes = append(c.runes, r)
		c.ids[r] = int32(len(c.runes))
	}
	return c, nil
}

// Encode implements Tokenizer.
func (c *Char) Encode(text string) ([]int32, error) {
	ids := make([]int32, 0, len(text))
	for i, r := range text {
		id, ok := c.ids[r]
		if !ok {
			return nil, fmt.Errorf("tokenizer: encode: character %q at byte %d is not in the alphabet", r, i)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Decode implements Tokenizer.
func (c *Char) Decode(ids []int32) (string, error) {
	var b strings.Builder
	for i, id := range ids {
		switch {
		case id == 0:
		case id > 0 && int(id) <= len(c.runes):
			b.WriteRune(c.runes[id-1])
		default:
			return "", fmt.Errorf("tokenizer: decode: id %d at position %d is outside [0,%d)", id, i, c.VocabSize())
		}
	}
	return b.String(), nil
}

// VocabSize implements Tokenizer.
func (c *Char) VocabSize() int { return len(c.runes) + 1 }

// EOT implements Tokenizer.
func (c *Char) EOT() int32 { return 0 }
