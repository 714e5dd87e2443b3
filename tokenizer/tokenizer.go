// Package tokenizer turns text into token ids and back: a character
// tokenizer for the small demo tasks, GPT-2's byte-level BPE (r50k_base),
// whose tables come offline from the github.com/tiktoken-go/tokenizer module,
// and byte-level BPEs read from a Hugging Face folder's tokenizer files
// (FromFiles).
package tokenizer

import "fmt"

// Tokenizer is what the trainers need from either kind.
type Tokenizer interface {
	// Encode returns the ids of text, or an error naming the first part of
	// text it cannot encode.
	Encode(text string) ([]int32, error)
	// Decode returns the text of ids; the end-of-text token decodes to
	// nothing.
	Decode(ids []int32) (string, error)
	// VocabSize is one more than the largest id.
	VocabSize() int
	// EOT is the end-of-text token, which ends a sample and pads batches.
	EOT() int32
}

// New returns the tokenizer called name: "char" (DefaultAlphabet) or
// "gpt2".
func New(name string) (Tokenizer, error) {
	switch name {
	case "char":
		return NewChar(DefaultAlphabet)
	case "gpt2", "r50k_base":
		return NewGPT2(), nil
	}
	return nil, fmt.Errorf("tokenizer: unknown tokenizer %q (want char or gpt2)", name)
}
