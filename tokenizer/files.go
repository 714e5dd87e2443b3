package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/instructflow/instructflow/errkind"
)

// FileNames are the tokenizer files of a Hugging Face folder that FromFiles
// reads.
var FileNames = []string{"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "generation_config.json"}

// MaxFileSize bounds each file FromFiles reads.
const MaxFileSize = 64 << 20

// endOfText is the end-of-text token of GPT-2 and most of its family.
const endOfText = "<|endoftext|>"

// FromFiles builds the tokenizer of a Hugging Face folder from its files,
// keyed by base name (files it does not need may be absent).
//
// The vocabulary and merges come from vocab.json and merges.txt when both
// are present (GPT-2 folders ship them beside tokenizer.json, and they are
// what GPT-2's own encoder reads), else from tokenizer.json, whose model
// must be "BPE". A tokenizer.json is read in either case for its pipeline,
// which must be GPT-2's: no normalizer, a ByteLevel pre-tokenizer (its
// add_prefix_space honoured) and a ByteLevel decoder; and for its
// added_tokens. Added and special tokens also come from added_tokens.json,
// tokenizer_config.json (added_tokens_decoder, eos_token, bos_token,
// pad_token, unk_token, additional_special_tokens), special_tokens_map.json
// and generation_config.json (eos_token_id, bos_token_id, pad_token_id).
//
// The end-of-text token is the eos token those files name, or else
// "<|endoftext|>" when the vocabulary has it; the pad token is the one
// named, or else the end-of-text token. Every error is errkind.BadInput and
// names the file and the fix.
func FromFiles(files map[string][]byte) (*FileBPE, error) {
	t, err := fromFiles(files)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: from files: %w", err)
	}
	return t, nil
}

// vocabEntry is one token of the vocabulary as read, before ids are checked.
type vocabEntry struct {
	text string
	id   int64
}

// build collects what the files say, for fromFiles to check and assemble.
type build struct {
	source       string
	vocabFile    string // the file named in vocabulary errors
	mergesFile   string
	vocab        []vocabEntry
	merges       [][2]string
	prefixSpace  bool
	ignoreMerges bool
	notes        []string

	added    map[int64]*addedToken // by id
	specials []namedToken          // named by a config, resolved after the vocabulary
}

type addedToken struct {
	text    string
	special bool
	file    string
}

// namedToken is a special token a config names by text or by id.
type namedToken struct {
	role string // "eos", "bos", "pad", "unk" or "" (additional)
	text string // "" when named by id
	id   int64
	file string
	key  string
}

func fromFiles(files map[string][]byte) (*FileBPE, error) {
	for _, name := range FileNames {
		if n := len(files[name]); n > MaxFileSize {
			return nil, errkind.BadInputf("%s is %d bytes, over the %d MiB read for a tokenizer file; is it the right file?", name, n, MaxFileSize>>20)
		}
	}
	b := &build{added: map[int64]*addedToken{}}
	_, hasVocab := files["vocab.json"]
	_, hasMerges := files["merges.txt"]
	tj, hasTJ := files["tokenizer.json"]
	switch {
	case hasVocab && hasMerges:
		b.source, b.vocabFile, b.mergesFile = "vocab.json+merges.txt", "vocab.json", "merges.txt"
		if err := b.readVocabJSON(files["vocab.json"]); err != nil {
			return nil, err
		}
		if err := b.readMergesTxt(files["merges.txt"]); err != nil {
			return nil, err
		}
		if hasTJ {
			b.notes = append(b.notes, "vocabulary and merges from vocab.json+merges.txt; tokenizer.json read only for its pipeline and added tokens")
		}
	case hasTJ:
		b.source, b.vocabFile, b.mergesFile = "tokenizer.json", "tokenizer.json", "tokenizer.json"
	case hasVocab:
		return nil, errkind.BadInputf("vocab.json is present but merges.txt is missing: a byte-level BPE needs both (or a tokenizer.json); copy merges.txt from the model's folder")
	case hasMerges:
		return nil, errkind.BadInputf("merges.txt is present but vocab.json is missing: a byte-level BPE needs both (or a tokenizer.json); copy vocab.json from the model's folder")
	default:
		return nil, errkind.BadInputf("no tokenizer files: want vocab.json and merges.txt, or tokenizer.json, from the model's Hugging Face folder")
	}
	if hasTJ {
		if err := b.readTokenizerJSON(tj, b.source == "tokenizer.json"); err != nil {
			return nil, err
		}
	}
	if err := b.readAddedTokensJSON(files); err != nil {
		return nil, err
	}
	if err := b.readTokenizerConfig(files); err != nil {
		return nil, err
	}
	if err := b.readSpecialTokensMap(files); err != nil {
		return nil, err
	}
	if err := b.readGenerationConfig(files); err != nil {
		return nil, err
	}
	return b.assemble()
}

// decodeJSON unmarshals file name into v with a message naming the file.
func decodeJSON(name string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return errkind.BadInputf("%s is not valid JSON for a tokenizer file: %v; fix it or leave it out", name, err)
	}
	return nil
}

func (b *build) readVocabJSON(data []byte) error {
	var v map[string]int64
	if err := decodeJSON("vocab.json", data, &v); err != nil {
		return err
	}
	b.setVocab(v)
	return nil
}

// setVocab keeps v in a fixed order (by id, then text) so that errors are
// the same on every run.
func (b *build) setVocab(v map[string]int64) {
	b.vocab = make([]vocabEntry, 0, len(v))
	for text, id := range v {
		b.vocab = append(b.vocab, vocabEntry{text, id})
	}
	sort.Slice(b.vocab, func(i, j int) bool {
		if b.vocab[i].id != b.vocab[j].id {
			return b.vocab[i].id < b.vocab[j].id
		}
		return b.vocab[i].text < b.vocab[j].text
	})
}

func (b *build) readMergesTxt(data []byte) error {
	lines := strings.Split(string(data), "\n")
	for n, line := range lines {
		line = strings.TrimSuffix(line, "\r")
		if (n == 0 && strings.HasPrefix(line, "#version")) || line == "" {
			continue
		}
		l, r, ok := strings.Cut(line, " ")
		if !ok || l == "" || r == "" || strings.Contains(r, " ") {
			return errkind.BadInputf("merges.txt line %d is %q; want two tokens separated by one space", n+1, line)
		}
		b.merges = append(b.merges, [2]string{l, r})
	}
	return nil
}

// tokenizerJSON is the part of tokenizer.json FromFiles reads.
type tokenizerJSON struct {
	AddedTokens []struct {
		ID      *int64 `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        *struct {
		Type                    string            `json:"type"`
		Dropout                 *float64          `json:"dropout"`
		ContinuingSubwordPrefix string            `json:"continuing_subword_prefix"`
		EndOfWordSuffix         string            `json:"end_of_word_suffix"`
		ByteFallback            bool              `json:"byte_fallback"`
		IgnoreMerges            bool              `json:"ignore_merges"`
		Vocab                   json.RawMessage   `json:"vocab"`
		Merges                  []json.RawMessage `json:"merges"`
	} `json:"model"`
}

// component is a normalizer, pre-tokenizer or decoder of tokenizer.json.
type component struct {
	Type           string      `json:"type"`
	AddPrefixSpace *bool       `json:"add_prefix_space"`
	UseRegex       *bool       `json:"use_regex"`
	Normalizers    []component `json:"normalizers"`
	PreTokenizers  []component `json:"pretokenizers"`
	Decoders       []component `json:"decoders"`
}

const supportedPipeline = "supported: model BPE without byte_fallback, dropout or subword affixes; normalizer null; pre_tokenizer ByteLevel (use_regex true); decoder ByteLevel"

func (b *build) readTokenizerJSON(data []byte, useModel bool) error {
	var tj tokenizerJSON
	if err := decodeJSON("tokenizer.json", data, &tj); err != nil {
		return err
	}
	m := tj.Model
	if m == nil {
		return errkind.BadInputf("tokenizer.json has no model; %s", supportedPipeline)
	}
	switch {
	case m.Type != "BPE":
		return errkind.BadInputf("tokenizer.json: model type %q is not supported; %s", m.Type, supportedPipeline)
	case m.ByteFallback:
		return errkind.BadInputf("tokenizer.json: model.byte_fallback (a SentencePiece-style BPE) is not supported; %s", supportedPipeline)
	case m.Dropout != nil && *m.Dropout != 0:
		return errkind.BadInputf("tokenizer.json: model.dropout %v is not supported (it makes encoding random); set it to null", *m.Dropout)
	case m.ContinuingSubwordPrefix != "" || m.EndOfWordSuffix != "":
		return errkind.BadInputf("tokenizer.json: model.continuing_subword_prefix %q / end_of_word_suffix %q are not supported; %s", m.ContinuingSubwordPrefix, m.EndOfWordSuffix, supportedPipeline)
	}
	if err := checkNormalizer(tj.Normalizer); err != nil {
		return err
	}
	prefix, err := checkPreTokenizer(tj.PreTokenizer)
	if err != nil {
		return err
	}
	b.prefixSpace = prefix
	if err := checkDecoder(tj.Decoder); err != nil {
		return err
	}
	b.ignoreMerges = m.IgnoreMerges
	for i, a := range tj.AddedTokens {
		if a.ID == nil {
			return errkind.BadInputf("tokenizer.json: added_tokens[%d] (%q) has no id", i, a.Content)
		}
		if err := b.addToken(*a.ID, a.Content, a.Special, "tokenizer.json"); err != nil {
			return err
		}
	}
	if !useModel {
		return nil
	}
	var v map[string]int64
	if err := decodeJSON("tokenizer.json", m.Vocab, &v); err != nil {
		return err
	}
	b.setVocab(v)
	for i, raw := range m.Merges {
		var pair [2]string
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			l, r, ok := strings.Cut(s, " ")
			if !ok || l == "" || r == "" || strings.Contains(r, " ") {
				return errkind.BadInputf("tokenizer.json: model.merges[%d] is %q; want two tokens separated by one space", i, s)
			}
			pair = [2]string{l, r}
		} else if err := json.Unmarshal(raw, &pair); err != nil || pair[0] == "" || pair[1] == "" {
			return errkind.BadInputf("tokenizer.json: model.merges[%d] is %s; want \"a b\" or [\"a\", \"b\"]", i, raw)
		}
		b.merges = append(b.merges, pair)
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

func checkNormalizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return errkind.BadInputf("tokenizer.json: normalizer is not an object: %v", err)
	}
	if c.Type == "Sequence" && len(c.Normalizers) == 0 {
		return nil
	}
	return errkind.BadInputf("tokenizer.json: normalizer %q is not supported (it would change the text before encoding); %s", c.Type, supportedPipeline)
}

// checkPreTokenizer accepts ByteLevel, alone or as the only member of a
// Sequence, and returns its add_prefix_space.
func checkPreTokenizer(raw json.RawMessage) (bool, error) {
	if isNull(raw) {
		return false, errkind.BadInputf("tokenizer.json: pre_tokenizer is null; a byte-level BPE needs one; %s", supportedPipeline)
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return false, errkind.BadInputf("tokenizer.json: pre_tokenizer is not an object: %v", err)
	}
	if c.Type == "Sequence" && len(c.PreTokenizers) == 1 {
		c = c.PreTokenizers[0]
	}
	if c.Type != "ByteLevel" {
		return false, errkind.BadInputf("tokenizer.json: pre_tokenizer %q is not supported; %s", c.Type, supportedPipeline)
	}
	if c.UseRegex != nil && !*c.UseRegex {
		return false, errkind.BadInputf("tokenizer.json: ByteLevel pre_tokenizer with use_regex false is not supported; %s", supportedPipeline)
	}
	return c.AddPrefixSpace != nil && *c.AddPrefixSpace, nil
}

func checkDecoder(raw json.RawMessage) error {
	var c component
	if !isNull(raw) {
		if err := json.Unmarshal(raw, &c); err != nil {
			return errkind.BadInputf("tokenizer.json: decoder is not an object: %v", err)
		}
	}
	if c.Type == "Sequence" && len(c.Decoders) == 1 {
		c = c.Decoders[0]
	}
	if c.Type != "ByteLevel" {
		return errkind.BadInputf("tokenizer.json: decoder %q is not supported; %s", c.Type, supportedPipeline)
	}
	return nil
}

// addToken records an added token; the same id may be named again with the
// same text.
func (b *build) addToken(id int64, text string, special bool, file string) error {
	if text == "" {
		return errkind.BadInputf("%s: added token %d has empty text", file, id)
	}
	if a, ok := b.added[id]; ok {
		if a.text != text {
			return errkind.BadInputf("%s gives id %d to %q but %s gives it to %q; make the files agree", file, id, text, a.file, a.text)
		}
		a.special = a.special || special
		return nil
	}
	b.added[id] = &addedToken{text: text, special: special, file: file}
	return nil
}

func (b *build) readAddedTokensJSON(files map[string][]byte) error {
	data, ok := files["added_tokens.json"]
	if !ok {
		return nil
	}
	var m map[string]int64
	if err := decodeJSON("added_tokens.json", data, &m); err != nil {
		return err
	}
	texts := slices.Sorted(maps.Keys(m))
	for _, text := range texts {
		if err := b.addToken(m[text], text, false, "added_tokens.json"); err != nil {
			return err
		}
	}
	return nil
}

// tokenText is a special token as configs write it: a string, an object
// with "content", or null.
type tokenText string

func (t *tokenText) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*t = tokenText(s)
		return nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(data, &obj); err != nil || (obj.Content == "" && string(bytes.TrimSpace(data)) != "null") {
		return fmt.Errorf("want a string or {\"content\": ...}, got %s", data)
	}
	*t = tokenText(obj.Content)
	return nil
}

// specialsConfig is the part of tokenizer_config.json and
// special_tokens_map.json that names special tokens.
type specialsConfig struct {
	EOS        tokenText   `json:"eos_token"`
	BOS        tokenText   `json:"bos_token"`
	Pad        tokenText   `json:"pad_token"`
	Unk        tokenText   `json:"unk_token"`
	Additional []tokenText `json:"additional_special_tokens"`
}

func (b *build) nameSpecials(file string, c specialsConfig) {
	for _, n := range []struct {
		role, key string
		text      tokenText
	}{{"eos", "eos_token", c.EOS}, {"bos", "bos_token", c.BOS}, {"pad", "pad_token", c.Pad}, {"unk", "unk_token", c.Unk}} {
		if n.text != "" {
			b.specials = append(b.specials, namedToken{role: n.role, text: string(n.text), file: file, key: n.key})
		}
	}
	for _, text := range c.Additional {
		if text != "" {
			b.specials = append(b.specials, namedToken{text: string(text), file: file, key: "additional_special_tokens"})
		}
	}
}

func (b *build) readTokenizerConfig(files map[string][]byte) error {
	data, ok := files["tokenizer_config.json"]
	if !ok {
		return nil
	}
	var c struct {
		specialsConfig
		AddPrefixSpace *bool `json:"add_prefix_space"`
		Decoder        map[string]struct {
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens_decoder"`
	}
	if err := decodeJSON("tokenizer_config.json", data, &c); err != nil {
		return err
	}
	if c.AddPrefixSpace != nil {
		b.prefixSpace = *c.AddPrefixSpace
	}
	for _, key := range slices.Sorted(maps.Keys(c.Decoder)) {
		id, err := strconv.ParseInt(key, 10, 64)
		if err != nil {
			return errkind.BadInputf("tokenizer_config.json: added_tokens_decoder key %q is not an id", key)
		}
		if err := b.addToken(id, c.Decoder[key].Content, c.Decoder[key].Special, "tokenizer_config.json"); err != nil {
			return err
		}
	}
	b.nameSpecials("tokenizer_config.json", c.specialsConfig)
	return nil
}

func (b *build) readSpecialTokensMap(files map[string][]byte) error {
	data, ok := files["special_tokens_map.json"]
	if !ok {
		return nil
	}
	var c specialsConfig
	if err := decodeJSON("special_tokens_map.json", data, &c); err != nil {
		return err
	}
	b.nameSpecials("special_tokens_map.json", c)
	return nil
}

// ids is an id or a list of ids, as generation_config.json writes eos_token_id.
type ids []int64

func (v *ids) UnmarshalJSON(data []byte) error {
	var one *int64
	if err := json.Unmarshal(data, &one); err == nil {
		if one != nil {
			*v = ids{*one}
		}
		return nil
	}
	var list []int64
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("want an id or a list of ids, got %s", data)
	}
	*v = list
	return nil
}

func (b *build) readGenerationConfig(files map[string][]byte) error {
	data, ok := files["generation_config.json"]
	if !ok {
		return nil
	}
	var c struct {
		EOS ids `json:"eos_token_id"`
		BOS ids `json:"bos_token_id"`
		Pad ids `json:"pad_token_id"`
	}
	if err := decodeJSON("generation_config.json", data, &c); err != nil {
		return err
	}
	for _, n := range []struct {
		role, key string
		ids       ids
	}{{"eos", "eos_token_id", c.EOS}, {"bos", "bos_token_id", c.BOS}, {"pad", "pad_token_id", c.Pad}} {
		for i, id := range n.ids {
			role := n.role
			if i > 0 {
				role = "" // more eos ids: kept as added specials
			}
			b.specials = append(b.specials, namedToken{role: role, id: id, file: "generation_config.json", key: n.key})
		}
	}
	return nil
}

// assemble checks the ids, the merges and the special tokens, and builds
// the tokenizer.
func (b *build) assemble() (*FileBPE, error) {
	byID := map[int64]string{}
	byText := map[string]int64{}
	var maxID int64 = -1
	for _, e := range b.vocab {
		if e.id < 0 || e.id > 1<<31-2 {
			return nil, errkind.BadInputf("%s: token %q has id %d; ids run from 0", b.vocabFile, e.text, e.id)
		}
		if other, dup := byID[e.id]; dup {
			return nil, errkind.BadInputf("%s gives id %d to both %q and %q; each id must name one token", b.vocabFile, e.id, other, e.text)
		}
		byID[e.id] = e.text
		byText[e.text] = e.id
		maxID = max(maxID, e.id)
	}
	for _, id := range slices.Sorted(maps.Keys(b.added)) {
		a := b.added[id]
		if id < 0 || id > 1<<31-2 {
			return nil, errkind.BadInputf("%s: added token %q has id %d; ids run from 0", a.file, a.text, id)
		}
		if text, ok := byID[id]; ok && text != a.text {
			return nil, errkind.BadInputf("%s gives id %d to %q but %s gives it to %q; make the files agree", a.file, id, a.text, b.vocabFile, text)
		}
		if other, ok := byText[a.text]; ok && other != id {
			return nil, errkind.BadInputf("%s gives %q id %d but it has id %d already; each token has one id", a.file, a.text, id, other)
		}
		byID[id] = a.text
		byText[a.text] = id
		maxID = max(maxID, id)
	}
	if maxID < 0 {
		return nil, errkind.BadInputf("%s has an empty vocabulary", b.vocabFile)
	}
	if int64(len(byID)) != maxID+1 {
		for id := range maxID + 1 {
			if _, ok := byID[id]; !ok {
				return nil, errkind.BadInputf("%s: no token has id %d, but ids go up to %d; ids must have no gaps", b.vocabFile, id, maxID)
			}
		}
	}

	t := &FileBPE{
		tokens:       make([][]byte, maxID+1),
		merges:       make(map[uint64]merge, len(b.merges)),
		ignoreMerges: b.ignoreMerges,
		prefixSpace:  b.prefixSpace,
		cache:        map[string][]int32{},
	}
	for id, text := range byID {
		if _, isAdded := b.added[id]; isAdded {
			t.tokens[id] = []byte(text)
			continue
		}
		raw, ok := byteLevelDecode(text)
		if !ok {
			if text == endOfText || isNamed(b.specials, text) {
				t.tokens[id] = []byte(text)
				continue
			}
			return nil, errkind.BadInputf("%s: token %q (id %d) has a character outside the byte-level alphabet; this is not a byte-level BPE vocabulary", b.vocabFile, text, id)
		}
		t.tokens[id] = raw
	}
	for c := range 256 {
		id, ok := byText[string(byteChars[c])]
		if !ok {
			return nil, errkind.BadInputf("%s has no token for byte 0x%02x (%q); a byte-level BPE needs all 256", b.vocabFile, c, byteChars[c])
		}
		t.byteIDs[c] = int32(id)
	}
	if t.ignoreMerges {
		t.vocab = make(map[string]int32, len(b.vocab))
		for _, e := range b.vocab {
			if _, isAdded := b.added[e.id]; !isAdded {
				t.vocab[string(t.tokens[e.id])] = int32(e.id)
			}
		}
	}
	for i, m := range b.merges {
		l, lok := byText[m[0]]
		r, rok := byText[m[1]]
		id, ok := byText[m[0]+m[1]]
		switch {
		case !lok || !rok:
			missing := m[0]
			if lok {
				missing = m[1]
			}
			return nil, errkind.BadInputf("%s: merge %d (%q %q) names %q, which is not in %s; use the merges and vocabulary of one model", b.mergesFile, i+1, m[0], m[1], missing, b.vocabFile)
		case !ok:
			return nil, errkind.BadInputf("%s: merge %d (%q %q) makes %q, which is not in %s; use the merges and vocabulary of one model", b.mergesFile, i+1, m[0], m[1], m[0]+m[1], b.vocabFile)
		}
		// a repeated merge keeps its last rank, as GPT-2's encoder does
		t.merges[uint64(uint32(l))<<32|uint64(uint32(r))] = merge{rank: int32(i), id: int32(id)}
	}

	specials, err := b.resolveSpecials(byID, byText)
	if err != nil {
		return nil, err
	}
	t.info = Info{Kind: "byte-level BPE", Source: b.source, Vocab: len(t.tokens), Merges: len(b.merges), Notes: b.notes}
	isSpecial := map[int64]bool{}
	roles := map[string]namedToken{}
	for _, s := range specials {
		isSpecial[s.id] = true
		if _, ok := roles[s.role]; s.role != "" && !ok {
			roles[s.role] = s
		} else if s.role != "" && roles[s.role].id != s.id {
			t.info.Notes = append(t.info.Notes, fmt.Sprintf("%s names %s %q (id %d); using %q (id %d) from %s, and keeping %q as a special token",
				s.file, s.key, byID[s.id], s.id, byID[roles[s.role].id], roles[s.role].id, roles[s.role].file, byID[s.id]))
		}
	}
	special := func(id int64) Special {
		a, isAdded := b.added[id]
		return Special{ID: int32(id), Text: byID[id], Special: isSpecial[id] || (isAdded && a.special)}
	}
	eos, ok := roles["eos"]
	if !ok {
		id, found := byText[endOfText]
		if !found {
			return nil, errkind.BadInputf("no end-of-text token: name eos_token in tokenizer_config.json (or special_tokens_map.json, or eos_token_id in generation_config.json); the vocabulary has no %q either", endOfText)
		}
		eos = namedToken{id: id}
		isSpecial[id] = true
		t.info.Notes = append(t.info.Notes, fmt.Sprintf("eot: no eos_token named; using %q (id %d) from the vocabulary", endOfText, id))
	}
	t.eot = int32(eos.id)
	t.info.EOT = special(eos.id)
	if pad, ok := roles["pad"]; ok {
		t.info.Pad = special(pad.id)
	} else {
		t.info.Pad = t.info.EOT
		t.info.Notes = append(t.info.Notes, "pad: no pad_token named; padding with the end-of-text token")
	}
	if bos, ok := roles["bos"]; ok {
		s := special(bos.id)
		t.info.BOS = &s
	}
	for id := range maxID + 1 {
		if _, isAdded := b.added[id]; isAdded || isSpecial[id] {
			t.info.Added = append(t.info.Added, special(id))
		}
	}
	t.added = indexAdded(t.info.Added)
	return t, nil
}

func isNamed(specials []namedToken, text string) bool {
	for _, s := range specials {
		if s.text == text {
			return true
		}
	}
	return false
}

// resolveSpecials gives every named token its id, in the order the files
// were read.
func (b *build) resolveSpecials(byID map[int64]string, byText map[string]int64) ([]namedToken, error) {
	out := make([]namedToken, 0, len(b.specials))
	for _, s := range b.specials {
		if s.text == "" {
			if _, ok := byID[s.id]; !ok {
				return nil, errkind.BadInputf("%s: %s %d is not an id of the vocabulary [0,%d)", s.file, s.key, s.id, len(byID))
			}
		} else {
			id, ok := byText[s.text]
			if !ok {
				return nil, errkind.BadInputf("%s: %s %q is not in the vocabulary or the added tokens; add it to added_tokens or name a token the vocabulary has", s.file, s.key, s.text)
			}
			s.id = id
		}
		out = append(out, s)
	}
	return out, nil
}
