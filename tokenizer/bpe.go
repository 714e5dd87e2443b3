package tokenizer

import (
	"fmt"
	"strings"

	"github.com/tiktoken-go/tokenizer/codec"
)

// gpt2EOT is GPT-2's <|endoftext|>.
const gpt2EOT = 50256

// BPE is GPT-2's byte-level BPE (r50k_base). Encode treats "<|endoftext|>"
// in text as ordinary characters; append EOT() to mark an end.
type BPE struct {
	codec *codec.Codec
}

// NewGPT2 returns the GPT-2 tokenizer. Its tables are compiled into the
// binary: no network or files are needed.
func NewGPT2() *BPE {
	return &BPE{codec: codec.NewR50kBase()}
}

// Encode implements Tokenizer. Any valid UTF-8 encodes; invalid UTF-8 is an
// error.
func (t *BPE) Encode(text string) ([]int32, error) {
	if err := checkUTF8(text); err != nil {
		return nil, err
	}
	ids, _, err := t.codec.Encode(text)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: encode: %w", err)
	}
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out, nil
}

// Decode implements Tokenizer. Bytes that do not form valid UTF-8 (a
// sequence cut inside a character) become U+FFFD.
func (t *BPE) Decode(ids []int32) (string, error) {
	us := make([]uint, 0, len(ids))
	for i, id := range ids {
		if id < 0 || id >= gpt2EOT {
			if id == gpt2EOT {
				continue
			}
			return "", fmt.Errorf("tokenizer: decode: id %d at position %d is outside [0,%d)", id, i, t.VocabSize())
		}
		us = append(us, uint(id))
	}
	s, err := t.codec.Decode(us)
	if err != nil {
		return "", fmt.Errorf("tokenizer: decode: %w", err)
	}
	return strings.ToValidUTF8(s, "\uFFFD"), nil
}

// VocabSize implements Tokenizer: 50257.
func (t *BPE) VocabSize() int { return gpt2EOT + 1 }

// EOT implements Tokenizer.
func (t *BPE) EOT() int32 { return gpt2EOT }
