package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/instructflow/instructflow/errkind"
)

// readFolder returns the tokenizer files of dir, gunzipping NAME.gz.
func readFolder(t testing.TB, dir string, names ...string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, name := range names {
		if data, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			files[name] = data
			continue
		}
		gz, err := os.ReadFile(filepath.Join(dir, name+".gz"))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = data
	}
	return files
}

var (
	gpt2FilesOnce sync.Once
	gpt2Files     map[string][]byte
)

// gpt2Sources are GPT-2's vocabulary as each reader takes it.
func gpt2Sources(t testing.TB) map[string]map[string][]byte {
	gpt2FilesOnce.Do(func() {
		gpt2Files = readFolder(t, "testdata/gpt2", "vocab.json", "merges.txt", "tokenizer.json")
	})
	return map[string]map[string][]byte{
		"vocab.json+merges.txt": {"vocab.json": gpt2Files["vocab.json"], "merges.txt": gpt2Files["merges.txt"]},
		"tokenizer.json":        {"tokenizer.json": gpt2Files["tokenizer.json"]},
	}
}

func loadGPT2(t testing.TB, source string) *FileBPE {
	t.Helper()
	tok, err := FromFiles(gpt2Sources(t)[source])
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func strops(t testing.TB, source string) map[string][]byte {
	t.Helper()
	files := readFolder(t, "testdata/strops", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
	if source == "tokenizer.json" {
		delete(files, "vocab.json")
		delete(files, "merges.txt")
	} else {
		delete(files, "tokenizer.json")
	}
	return files
}

// corpusTexts are the lines of the corpus (with their ends), the whole
// corpus, and texts with invalid UTF-8.
func corpusTexts(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile("testdata/corpus.txt")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	texts := strings.SplitAfter(text, "\n")
	return append(texts, text, "", " ", "  x", "\r\n\r\n", "ok\xffno", "\xe6\x97", "abc \xf0\x9f\x99", "\xc0\x80")
}

func TestFromFilesMatchesCompiledGPT2(t *testing.T) {
	ref := NewGPT2()
	for _, source := range []string{"vocab.json+merges.txt", "tokenizer.json"} {
		t.Run(source, func(t *testing.T) {
			tok := loadGPT2(t, source)
			info := tok.Info()
			if info.Source != source || info.Vocab != 50257 || info.Merges != 50000 || tok.VocabSize() != 50257 ||
				tok.EOT() != 50256 || info.EOT.Text != "<|endoftext|>" || info.Pad.ID != 50256 {
				t.Fatalf("info %+v", info)
			}
			for _, text := range corpusTexts(t) {
				want, wantErr := ref.Encode(text)
				got, err := tok.Encode(text)
				if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
					t.Fatalf("Encode(%q) error %v, compiled-in codec %v", text, err, wantErr)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("Encode(%q)\n = %v\nwant %v", text, got, want)
				}
				if err != nil {
					continue
				}
				back, err := tok.Decode(got)
				if err != nil || back != text {
					t.Fatalf("Decode(Encode(%q)) = %q, %v", text, back, err)
				}
				// windows that cut characters apart give U+FFFD, as in the codec
				for i := range got {
					for k := 1; k <= 3 && i+k <= len(got); k++ {
						g, err1 := tok.Decode(got[i : i+k])
						w, err2 := ref.Decode(got[i : i+k])
						if g != w || err1 != nil || err2 != nil {
							t.Fatalf("Decode(%v) = %q, %v; codec %q, %v", got[i:i+k], g, err1, w, err2)
						}
					}
				}
			}
		})
	}
}

// The compiled-in codec drops DEL; GPT-2's encoder (and
// scripts/bpe_reference.py) give it its byte token.
func TestDEL(t *testing.T) {
	tok := loadGPT2(t, "vocab.json+merges.txt")
	got, err := tok.Encode("a\x7fb")
	if err != nil || !slices.Equal(got, []int32{64, 221, 65}) {
		t.Fatalf("Encode(a DEL b) = %v, %v; want [64 221 65]", got, err)
	}
	if codec, _ := NewGPT2().Encode("a\x7fb"); !slices.Equal(codec, []int32{64, 65}) {
		t.Logf("the compiled-in codec now encodes DEL: %v; compare it in the tests again", codec)
	}
}

func TestDecodeCutCharacter(t *testing.T) {
	tok := loadGPT2(t, "vocab.json+merges.txt")
	ref := NewGPT2()
	ids, err := tok.Encode("🙂")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < 2 {
		t.Fatalf("🙂 is one token %v; want it in byte tokens", ids)
	}
	got, err := tok.Decode(ids[:1])
	if err != nil || got != "\uFFFD" {
		t.Fatalf("Decode(%v) = %q, %v; want U+FFFD", ids[:1], got, err)
	}
	if want, _ := ref.Decode(ids[:1]); want != got {
		t.Fatalf("codec decodes %v to %q, FileBPE to %q", ids[:1], want, got)
	}
}

// reference is expected.json as scripts/bpe_reference.py writes it.
type reference struct {
	Cases []struct {
		Text string  `json:"text"`
		IDs  []int32 `json:"ids"`
	} `json:"cases"`
}

func readReference(t *testing.T, path string) reference {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(data, &ref); err != nil || len(ref.Cases) == 0 {
		t.Fatalf("%s: %v (%d cases)", path, err, len(ref.Cases))
	}
	return ref
}

func checkReference(t *testing.T, tok *FileBPE, ref reference) {
	t.Helper()
	for _, c := range ref.Cases {
		got, err := tok.Encode(c.Text)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.IDs) {
			t.Fatalf("Encode(%q)\n = %v\nreference %v", c.Text, got, c.IDs)
		}
		back, err := tok.Decode(got)
		if err != nil || back != c.Text {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", c.Text, back, err)
		}
	}
}

func TestStropsMatchesReferenceScript(t *testing.T) {
	ref := readReference(t, "testdata/strops/expected.json")
	for _, source := range []string{"vocab.json+merges.txt", "tokenizer.json"} {
		t.Run(source, func(t *testing.T) {
			tok, err := FromFiles(strops(t, source))
			if err != nil {
				t.Fatal(err)
			}
			info := tok.Info()
			if info.Source != source || info.Vocab != 400 || info.Merges != 143 || tok.EOT() != 399 ||
				info.EOT.Text != "<|endoftext|>" || info.BOS == nil || info.BOS.ID != 399 || info.Pad.ID != 399 {
				t.Fatalf("info %+v", info)
			}
			checkReference(t, tok, ref)
			for _, word := range []string{"reverse", " upper", " the"} {
				if ids, err := tok.Encode(word); err != nil || len(ids) != 1 {
					t.Fatalf("Encode(%q) = %v, %v; want one token of the trained vocabulary", word, ids, err)
				}
			}
		})
	}
}

// The reference script run on GPT-2's files agrees with the Go side: a check
// of the script that writes the strops expectations.
func TestGPT2MatchesReferenceScript(t *testing.T) {
	checkReference(t, loadGPT2(t, "vocab.json+merges.txt"), readReference(t, "testdata/gpt2/expected.json"))
}

func TestSplitGPT2(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"it's I'LL we'd 'sam", []string{"it", "'s", " I", "'", "LL", " we", "'d", " '", "sam"}},
		{"a  b", []string{"a", " ", " b"}},
		{"a   \n\n  b  ", []string{"a", "   \n\n ", " b", "  "}},
		{"x\ny", []string{"x", "\n", "y"}},
		{" 123abc ½", []string{" 123", "abc", " ½"}},
		{"?!... ---", []string{"?!...", " ---"}},
		{"e\u0301 naïve", []string{"e", "\u0301", " naïve"}},
		{"日本語。", []string{"日本語", "。"}},
		{"a\u00a0b\u3000", []string{"a", "\u00a0", "b", "\u3000"}},
		{" ", []string{" "}},
	}
	for _, tc := range tests {
		var got []string
		splitGPT2(tc.text, func(p string) { got = append(got, p) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("splitGPT2(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestEncodeSpecial(t *testing.T) {
	tok := loadGPT2(t, "vocab.json+merges.txt")
	plain, err := tok.Encode("a<|endoftext|>b")
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := NewGPT2().Encode("a<|endoftext|>b"); !slices.Equal(plain, want) || slices.Contains(plain, 50256) {
		t.Fatalf("Encode = %v, want the codec's %v without the EOT id", plain, want)
	}
	got, err := tok.EncodeSpecial("a<|endoftext|>b")
	if err != nil || !slices.Equal(got, []int32{64, 50256, 65}) {
		t.Fatalf("EncodeSpecial = %v, %v; want [64 50256 65]", got, err)
	}
	if s, err := tok.Decode(got); err != nil || s != "ab" {
		t.Fatalf("Decode = %q, %v; want EOT to decode to nothing", s, err)
	}
	if _, err := tok.EncodeSpecial("<|endoftext|>\xff"); err == nil || !strings.Contains(err.Error(), "invalid UTF-8 at byte 13") {
		t.Fatalf("EncodeSpecial of invalid UTF-8: %v", err)
	}

	files := strops(t, "vocab.json+merges.txt")
	files["added_tokens.json"] = []byte(`{"<|im": 400, "<|im_start|>": 401}`)
	files["generation_config.json"] = []byte(`{"eos_token_id": [399, 401], "pad_token_id": 400}`)
	chat, err := FromFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	info := chat.Info()
	want := []Special{{399, "<|endoftext|>", true}, {400, "<|im", true}, {401, "<|im_start|>", true}}
	if !slices.Equal(info.Added, want) || info.Pad.ID != 400 || chat.VocabSize() != 402 || chat.EOT() != 399 {
		t.Fatalf("info %+v", info)
	}
	got, err = chat.EncodeSpecial("<|im_start|>sort<|im x")
	if err != nil {
		t.Fatal(err)
	}
	sortIDs, _ := chat.Encode("sort")
	xIDs, _ := chat.Encode(" x")
	if wantIDs := slices.Concat([]int32{401}, sortIDs, []int32{400}, xIDs); !slices.Equal(got, wantIDs) {
		t.Fatalf("EncodeSpecial = %v, want %v (longest added token first)", got, wantIDs)
	}
	if s, err := chat.Decode(got); err != nil || s != "<|im_start|>sort<|im x" {
		t.Fatalf("Decode = %q, %v; want added tokens as their text", s, err)
	}
}

func TestPrefixSpace(t *testing.T) {
	files := strops(t, "tokenizer.json")
	files["tokenizer.json"] = bytes.Replace(files["tokenizer.json"], []byte(`"add_prefix_space": false`), []byte(`"add_prefix_space": true`), 1)
	delete(files, "tokenizer_config.json") // it says add_prefix_space false, and would win
	tok, err := FromFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := FromFiles(strops(t, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"reverse abc=cba", " upper ab=AB"} {
		got, _ := tok.Encode(text)
		want, _ := plain.Encode(" " + strings.TrimPrefix(text, " "))
		if !slices.Equal(got, want) {
			t.Errorf("Encode(%q) with add_prefix_space = %v, want %v", text, got, want)
		}
	}
}

// bad returns the strops files with name replaced by data (nil: removed).
func bad(t *testing.T, source string, edits map[string]string) map[string][]byte {
	files := strops(t, source)
	for name, data := range edits {
		if data == "" {
			delete(files, name)
		} else {
			files[name] = []byte(data)
		}
	}
	return files
}

func TestFromFilesErrors(t *testing.T) {
	tj := string(strops(t, "tokenizer.json")["tokenizer.json"])
	vocab := string(strops(t, "vocab.json+merges.txt")["vocab.json"])
	tests := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"nothing", map[string][]byte{"tokenizer_config.json": []byte(`{}`)}, "no tokenizer files: want vocab.json and merges.txt, or tokenizer.json"},
		{"missing merges.txt", bad(t, "vocab.json+merges.txt", map[string]string{"merges.txt": ""}), "vocab.json is present but merges.txt is missing"},
		{"missing vocab.json", bad(t, "vocab.json+merges.txt", map[string]string{"vocab.json": ""}), "merges.txt is present but vocab.json is missing"},
		{"bad JSON", bad(t, "vocab.json+merges.txt", map[string]string{"vocab.json": `{"a": 0,`}), "vocab.json is not valid JSON for a tokenizer file"},
		{"bad config JSON", bad(t, "vocab.json+merges.txt", map[string]string{"tokenizer_config.json": `{"eos_token": 3}`}), "tokenizer_config.json is not valid JSON"},
		{"WordPiece", bad(t, "tokenizer.json", map[string]string{"tokenizer.json": strings.Replace(tj, `"type": "BPE"`, `"type": "WordPiece"`, 1)}), `tokenizer.json: model type "WordPiece" is not supported; supported: model BPE`},
		{"Unigram", map[string][]byte{"tokenizer.json": []byte(`{"model": {"type": "Unigram", "vocab": [["a", 0]]}}`)}, `model type "Unigram" is not supported`},
		{"byte_fallback", bad(t, "tokenizer.json", map[string]string{"tokenizer.json": strings.Replace(tj, `"byte_fallback": false`, `"byte_fallback": true`, 1)}), "model.byte_fallback (a SentencePiece-style BPE) is not supported"},
		{"normalizer", bad(t, "tokenizer.json", map[string]string{"tokenizer.json": strings.Replace(tj, `"normalizer": null`, `"normalizer": {"type": "Lowercase"}`, 1)}), `normalizer "Lowercase" is not supported`},
		{"pre-tokenizer", bad(t, "tokenizer.json", map[string]string{"tokenizer.json": strings.Replace(tj, `"pre_tokenizer": {"type": "ByteLevel"`, `"pre_tokenizer": {"type": "Metaspace"`, 1)}), `pre_tokenizer "Metaspace" is not supported`},
		{"pre-tokenizer beside vocab.json", bad(t, "vocab.json+merges.txt", map[string]string{"tokenizer.json": strings.Replace(tj, `"pre_tokenizer": {"type": "ByteLevel"`, `"pre_tokenizer": {"type": "Whitespace"`, 1)}), `pre_tokenizer "Whitespace" is not supported`},
		{"decoder", bad(t, "tokenizer.json", map[string]string{"tokenizer.json": strings.Replace(tj, `"decoder": {"type": "ByteLevel"`, `"decoder": {"type": "WordPiece"`, 1)}), `decoder "WordPiece" is not supported`},
		{"merge not in vocab", bad(t, "vocab.json+merges.txt", map[string]string{"merges.txt": "#version: 0.2\ne r\nq zz\n"}), `merges.txt: merge 2 ("q" "zz") names "zz", which is not in vocab.json`},
		{"merge result not in vocab", bad(t, "vocab.json+merges.txt", map[string]string{"merges.txt": "#version: 0.2\nq z\n"}), `merges.txt: merge 1 ("q" "z") makes "qz", which is not in vocab.json`},
		{"bad merge line", bad(t, "vocab.json+merges.txt", map[string]string{"merges.txt": "#version: 0.2\ne r x\n"}), `merges.txt line 2 is "e r x"; want two tokens separated by one space`},
		{"duplicate id", bad(t, "vocab.json+merges.txt", map[string]string{"vocab.json": strings.Replace(vocab, `"<|endoftext|>": 399`, `"<|endoftext|>": 398`, 1)}), `vocab.json gives id 398 to both`},
		{"gap", bad(t, "vocab.json+merges.txt", map[string]string{"vocab.json": strings.Replace(vocab, `"<|endoftext|>": 399`, `"<|endoftext|>": 401`, 1), "tokenizer_config.json": ""}), "vocab.json: no token has id 399, but ids go up to 401"},
		{"added id clash", bad(t, "vocab.json+merges.txt", map[string]string{"added_tokens.json": `{"<pad>": 5}`}), `added_tokens.json gives id 5 to "<pad>" but vocab.json gives it to`},
		{"no eos anywhere", bad(t, "vocab.json+merges.txt", map[string]string{
			"vocab.json":              strings.Replace(vocab, `"<|endoftext|>": 399`, `"<eos>": 399`, 1),
			"tokenizer_config.json":   `{}`,
			"special_tokens_map.json": "",
		}), "no end-of-text token: name eos_token in tokenizer_config.json"},
		{"eos not in vocab", bad(t, "vocab.json+merges.txt", map[string]string{"special_tokens_map.json": `{"eos_token": "</s>"}`}), `special_tokens_map.json: eos_token "</s>" is not in the vocabulary`},
		{"generation eos out of range", bad(t, "vocab.json+merges.txt", map[string]string{"generation_config.json": `{"eos_token_id": 500}`}), "generation_config.json: eos_token_id 500 is not an id of the vocabulary [0,400)"},
		{"too large", bad(t, "tokenizer.json", map[string]string{"tokenizer.json": strings.Repeat(" ", MaxFileSize+1)}), "tokenizer.json is 67108865 bytes, over the 64 MiB read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := FromFiles(tc.files)
			if err == nil {
				t.Fatalf("FromFiles succeeded (%+v), want an error containing %q", tok.Info(), tc.want)
			}
			if !errors.Is(err, errkind.BadInput) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want BadInput containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestSpecialsFromConfigs(t *testing.T) {
	files := strops(t, "vocab.json+merges.txt")
	delete(files, "tokenizer_config.json")
	delete(files, "special_tokens_map.json")
	tok, err := FromFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	info := tok.Info()
	if info.EOT.ID != 399 || info.Pad.ID != 399 || info.BOS != nil || len(info.Added) != 1 || len(info.Notes) != 2 {
		t.Fatalf("info %+v; want eot and pad <|endoftext|>, with notes saying so", info)
	}
	if !strings.Contains(info.Notes[0], "no eos_token named") || !strings.Contains(info.Notes[1], "padding with the end-of-text token") {
		t.Fatalf("notes %q", info.Notes)
	}

	files["tokenizer_config.json"] = []byte(`{"eos_token": {"content": "<|endoftext|>"}, "pad_token": null,
		"added_tokens_decoder": {"400": {"content": "<|pad|>", "special": true}}}`)
	files["generation_config.json"] = []byte(`{"eos_token_id": 400, "bos_token_id": 399, "pad_token_id": 400}`)
	tok, err = FromFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	info = tok.Info()
	if info.EOT.ID != 399 || info.Pad != (Special{400, "<|pad|>", true}) || info.BOS == nil || info.BOS.ID != 399 || len(info.Notes) != 1 ||
		!strings.Contains(info.Notes[0], `generation_config.json names eos_token_id "<|pad|>" (id 400); using "<|endoftext|>" (id 399) from tokenizer_config.json`) {
		t.Fatalf("info %+v", info)
	}
	if s, err := tok.Decode([]int32{400, 399}); err != nil || s != "<|pad|>" {
		t.Fatalf("Decode = %q, %v", s, err)
	}
}

func FuzzFileBPEMatchesGPT2(f *testing.F) {
	for _, text := range corpusTexts(f) {
		f.Add(text)
	}
	tok := loadGPT2(f, "vocab.json+merges.txt")
	ref := NewGPT2()
	f.Fuzz(func(t *testing.T, text string) {
		got, err := tok.Encode(text)
		want, wantErr := ref.Encode(text)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("Encode(%q) error %v, codec %v", text, err, wantErr)
		}
		if err != nil {
			return
		}
		// The codec drops U+007F (its compiled regexp leaves DEL out of
		// [^\s\p{L}\p{N}]); compare where it keeps all of text.
		if back, _ := ref.Decode(want); back == text && !slices.Equal(got, want) {
			t.Fatalf("Encode(%q) = %v, codec %v", text, got, want)
		}
		if back, err := tok.Decode(got); err != nil || back != text {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", text, back, err)
		}
	})
}

func BenchmarkEncodeCorpus(b *testing.B) {
	data, err := os.ReadFile("testdata/corpus.txt")
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat(string(data), 64) // about 100 KB
	for _, bc := range []struct {
		name string
		tok  Tokenizer
	}{
		{"FromFiles-gpt2", loadGPT2(b, "vocab.json+merges.txt")},
		{"NewGPT2", NewGPT2()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				if _, err := bc.tok.Encode(text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
