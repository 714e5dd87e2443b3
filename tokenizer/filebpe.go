package tokenizer

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// FileBPE is a byte-level BPE read from a Hugging Face folder's files (see
// FromFiles): GPT-2's pre-tokenizer, merges applied by rank, and added
// tokens. It is safe for concurrent use.
type FileBPE struct {
	info Info

	tokens       [][]byte // bytes of each id; an added token's are its text
	byteIDs      [256]int32
	merges       map[uint64]merge // by pair of ids, a<<32|b
	vocab        map[string]int32 // by bytes, for ignoreMerges
	ignoreMerges bool
	prefixSpace  bool
	eot          int32

	added     map[byte][]Special // by first byte, longest first
	cacheMu   sync.Mutex
	cache     map[string][]int32
	cacheSize int
}

// merge is one line of merges.txt: its rank and the id it makes.
type merge struct {
	rank, id int32
}

// Info describes a FileBPE: where it came from and its special tokens.
type Info struct {
	Kind   string    `json:"kind"`   // "byte-level BPE"
	Source string    `json:"source"` // "vocab.json+merges.txt" or "tokenizer.json"
	Vocab  int       `json:"vocab"`
	Merges int       `json:"merges"`
	EOT    Special   `json:"eot"`
	Pad    Special   `json:"pad"`
	BOS    *Special  `json:"bos,omitempty"`
	Added  []Special `json:"added,omitempty"` // every added/special token, by id
	// Notes say which choices FromFiles made for lack of a setting (pad is
	// the end-of-text token, eos found only in the vocabulary, a file
	// ignored).
	Notes []string `json:"notes,omitempty"`
}

// Special is an added token: one id for a text that pre-tokenization never
// splits (in EncodeSpecial).
type Special struct {
	ID      int32  `json:"id"`
	Text    string `json:"text"`
	Special bool   `json:"special"`
}

// cacheLimit bounds the pieces remembered by Encode; the cache is cleared
// when it is full.
const cacheLimit = 1 << 16

// Info returns what FromFiles read.
func (t *FileBPE) Info() Info {
	info := t.info
	info.Added = append([]Special(nil), t.info.Added...)
	info.Notes = append([]string(nil), t.info.Notes...)
	return info
}

// VocabSize implements Tokenizer: one more than the largest id of the
// vocabulary and the added tokens.
func (t *FileBPE) VocabSize() int { return len(t.tokens) }

// EOT implements Tokenizer.
func (t *FileBPE) EOT() int32 { return t.eot }

// Encode implements Tokenizer. Text that spells an added or special token
// ("<|endoftext|>") is encoded as ordinary characters; see EncodeSpecial.
// Invalid UTF-8 is an error naming its byte offset.
func (t *FileBPE) Encode(text string) ([]int32, error) {
	if err := checkUTF8(text); err != nil {
		return nil, err
	}
	return t.encodeSegment(nil, text), nil
}

// EncodeSpecial is Encode, except that the texts of the added and special
// tokens become their ids, as Hugging Face tokenizers do by default: where
// several match at one place, the longest wins. The text between them is
// encoded as by Encode, each part on its own (with its own prefix space,
// when the tokenizer adds one).
func (t *FileBPE) EncodeSpecial(text string) ([]int32, error) {
	if err := checkUTF8(text); err != nil {
		return nil, err
	}
	var ids []int32
	from := 0
	for i := 0; i < len(text); {
		tok, ok := t.addedAt(text[i:])
		if !ok {
			i++
			continue
		}
		ids = t.encodeSegment(ids, text[from:i])
		ids = append(ids, tok.ID)
		i += len(tok.Text)
		from = i
	}
	return t.encodeSegment(ids, text[from:]), nil
}

// addedAt returns the longest added token that s starts with.
func (t *FileBPE) addedAt(s string) (Special, bool) {
	for _, tok := range t.added[s[0]] {
		if strings.HasPrefix(s, tok.Text) {
			return tok, true
		}
	}
	return Special{}, false
}

// encodeSegment appends the ids of text, which holds no added token, to ids.
func (t *FileBPE) encodeSegment(ids []int32, text string) []int32 {
	if text == "" {
		return ids
	}
	if t.prefixSpace && text[0] != ' ' {
		text = " " + text
	}
	splitGPT2(text, func(piece string) {
		ids = append(ids, t.bpe(piece)...)
	})
	return ids
}

// bpe returns the ids of one pre-tokenized piece: its bytes, merged pair by
// pair, always the pair of lowest rank first (every place it occurs, left
// to right), until no pair of neighbours has a merge. The result must not
// be changed.
func (t *FileBPE) bpe(piece string) []int32 {
	if len(piece) == 1 {
		return t.byteIDs[piece[0] : piece[0]+1]
	}
	if t.ignoreMerges {
		if id, ok := t.vocab[piece]; ok {
			return []int32{id}
		}
	}
	t.cacheMu.Lock()
	ids, ok := t.cache[piece]
	t.cacheMu.Unlock()
	if ok {
		return ids
	}
	ids = make([]int32, len(piece))
	for i := range len(piece) {
		ids[i] = t.byteIDs[piece[i]]
	}
	for len(ids) > 1 {
		best := merge{rank: -1}
		var bestPair uint64
		for i := range len(ids) - 1 {
			p := uint64(uint32(ids[i]))<<32 | uint64(uint32(ids[i+1]))
			if m, ok := t.merges[p]; ok && (best.rank < 0 || m.rank < best.rank) {
				best, bestPair = m, p
			}
		}
		if best.rank < 0 {
			break
		}
		a, b := int32(bestPair>>32), int32(uint32(bestPair))
		out := ids[:0]
		for i := 0; i < len(ids); i++ {
			if i+1 < len(ids) && ids[i] == a && ids[i+1] == b {
				out = append(out, best.id)
				i++
			} else {
				out = append(out, ids[i])
			}
		}
		ids = out
	}
	ids = ids[:len(ids):len(ids)]
	t.cacheMu.Lock()
	if t.cacheSize >= cacheLimit {
		clear(t.cache)
		t.cacheSize = 0
	}
	t.cache[strings.Clone(piece)] = ids
	t.cacheSize++
	t.cacheMu.Unlock()
	return ids
}

// Decode implements Tokenizer: the end-of-text token decodes to nothing,
// other added tokens to their text. Bytes that do not form valid UTF-8 (a
// sequence cut inside a character) become U+FFFD. When the tokenizer adds a
// prefix space, the decoded text keeps it, as Hugging Face's ByteLevel
// decoder does.
func (t *FileBPE) Decode(ids []int32) (string, error) {
	var b []byte
	for i, id := range ids {
		if id < 0 || int(id) >= len(t.tokens) {
			return "", fmt.Errorf("tokenizer: decode: id %d at position %d is outside [0,%d)", id, i, len(t.tokens))
		}
		if id != t.eot {
			b = append(b, t.tokens[id]...)
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), nil
}

// checkUTF8 returns an error naming the offset of the first byte of text
// that is not UTF-8.
func checkUTF8(text string) error {
	if utf8.ValidString(text) {
		return nil
	}
	i := 0
	for i < len(text) {
		r, n := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		i += n
	}
	return fmt.Errorf("tokenizer: encode: invalid UTF-8 at byte %d", i)
}

// indexAdded groups the added tokens by first byte, longest first.
func indexAdded(added []Special) map[byte][]Special {
	m := map[byte][]Special{}
	for _, tok := range added {
		if tok.Text != "" {
			m[tok.Text[0]] = append(m[tok.Text[0]], tok)
		}
	}
	for _, list := range m {
		sort.SliceStable(list, func(i, j int) bool { return len(list[i].Text) > len(list[j].Text) })
	}
	return m
}
