// Package hf reads a Hugging Face GPT-2-family model folder (config.json,
// safetensors weights, one file or shards with an index, and the tokenizer's
// files) into the engine's form, and writes engine models back out as a
// folder Hugging Face tools load.
//
// Open validates a folder without loading its weights and reports every
// problem at once; Folder.WriteWeights then streams the weights, one tensor
// at a time, as the engine's F32 model.safetensors, byte for byte what
// model.WriteWeights writes for the same model. Write exports a model; an
// export opened again gives back the same bytes.
package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/tokenizer"
)

// Folder is a validated Hugging Face model folder. Its weights stay on disk
// until WriteWeights.
type Folder struct {
	Dir          string
	Architecture string       // ArchLMHead, ArchBase or ArchScorer
	Config       model.Config // the engine's shape; ValueHead for ArchScorer
	DTypes       []string     // of the weights, sorted: F32, F16, BF16
	Files        []string     // the safetensors files read, sorted
	Params       int64        // in the engine's model
	Tokenizer    *tokenizer.FileBPE
	// TokenizerFiles are the tokenizer's files present, by base name, to be
	// stored with the model.
	TokenizerFiles map[string][]byte

	tensors []source    // the engine's tensors, in model.New's order
	lmHead  *tensorInfo // lm_head.weight, when the file has one: it must equal wte
}

// source says where one of the engine's tensors comes from.
type source struct {
	spec  model.TensorSpec
	name  string     // in the file
	t     tensorInfo // when value is nil
	value *float32   // a scalar from config.json (the score bias)
}

// problems collects what is wrong with a folder, one "FILE: what is wrong;
// what to do" line each.
type problems []string

func (p *problems) add(file, format string, args ...any) {
	*p = append(*p, file+": "+fmt.Sprintf(format, args...))
}

// Open reads and validates the Hugging Face folder dir: config.json, the
// weights' headers and the tokenizer. It loads no weights. Every problem found
// is reported in one errkind.BadInput error, one line each.
func Open(dir string) (*Folder, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, errkind.BadInputf("hf: open %s: not a folder; give the folder of a Hugging Face model (config.json, model.safetensors, tokenizer files)", dir)
	}
	f := &Folder{Dir: dir}
	var probs problems

	var pc parsedConfig
	shaped := false // config.json gives a GPT-2 shape to check the rest against
	data, err := readSmall(filepath.Join(dir, configFile), maxConfigBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		probs.add(configFile, "missing; a Hugging Face model folder has one (save_pretrained writes it)")
	case err != nil:
		probs.add(configFile, "%v; make it a readable file", err)
	default:
		var cp []string
		pc, cp, shaped = parseConfig(data)
		probs = append(probs, cp...)
	}

	tensors, weightsName, files, wp := readWeights(dir)
	probs = append(probs, wp...)
	f.Files = files

	tok, tokFiles, tp := readTokenizer(dir)
	probs = append(probs, tp...)
	f.Tokenizer, f.TokenizerFiles = tok, tokFiles

	if shaped && tensors != nil {
		probs = append(probs, f.match(pc, tensors, weightsName)...)
	}
	if shaped && tok != nil {
		if n := tok.VocabSize(); n != pc.cfg.Vocab {
			probs.add(tok.Info().Source, "the tokenizer has %d tokens but config.json vocab_size is %d; the engine needs them equal: resize the embeddings to len(tokenizer) (model.resize_token_embeddings(len(tokenizer)) in transformers) and save the model again", n, pc.cfg.Vocab)
		}
	}
	if len(probs) > 0 {
		return nil, errkind.BadInputf("hf: open %s: %d problem(s):\n%s", dir, len(probs), strings.Join(probs, "\n"))
	}
	f.Params = f.Config.ParamCount()
	return f, nil
}

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return b, nil
}

// maxIndexBytes bounds model.safetensors.index.json.
const maxIndexBytes = 16 << 20

// readWeights reads the headers of the folder's safetensors files. It returns
// the tensors by the names the files use, the file that names them all
// (model.safetensors or the index), the files read, and the problems found;
// tensors is nil when the weights cannot be used.
func readWeights(dir string) (map[string]tensorInfo, string, []string, problems) {
	var probs problems
	if _, err := os.Stat(filepath.Join(dir, weightsFile)); err == nil {
		ts, err := readFileHeader(dir, weightsFile)
		if err != nil {
			probs.add(weightsFile, "damaged safetensors header (%v); download or save the weights again", err)
			return nil, weightsFile, nil, probs
		}
		return ts, weightsFile, []string{weightsFile}, nil
	}
	data, err := readSmall(filepath.Join(dir, indexFile), maxIndexBytes)
	if errors.Is(err, fs.ErrNotExist) {
		if p := pickles(dir); len(p) > 0 {
			probs.add(p[0], "a PyTorch pickle, which this tool does not read (loading a pickle can run code); convert the weights to safetensors: in transformers, model.save_pretrained(dir, safe_serialization=True); with torch alone, "+
				`safetensors.torch.save_file({k: v.clone().contiguous() for k, v in torch.load("%s", map_location="cpu").items()}, "model.safetensors", metadata={"format": "pt"})`, p[0])
		} else {
			probs.add(weightsFile, "missing, and there is no %s either; put the model's safetensors weights in the folder (save_pretrained writes them)", indexFile)
		}
		return nil, weightsFile, nil, probs
	}
	if err != nil {
		probs.add(indexFile, "%v; make it a readable file", err)
		return nil, indexFile, nil, probs
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		probs.add(indexFile, "not valid JSON (%v); fix it or save the model again", err)
		return nil, indexFile, nil, probs
	}
	if len(idx.WeightMap) == 0 {
		probs.add(indexFile, "weight_map names no tensors; save the model again")
		return nil, indexFile, nil, probs
	}
	var shards []string
	for _, s := range idx.WeightMap {
		if !slices.Contains(shards, s) {
			shards = append(shards, s)
		}
	}
	slices.Sort(shards)
	headers := map[string]map[string]tensorInfo{}
	var read []string
	for _, s := range shards {
		if s != filepath.Base(s) || s == "." || s == ".." || strings.ContainsRune(s, '\\') {
			probs.add(indexFile, "names shard %q, which is not a file name in the folder; the shards must sit beside the index", s)
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, s)); errors.Is(err, fs.ErrNotExist) {
			probs.add(s, "missing, named by %s; download it into the folder", indexFile)
			continue
		}
		ts, err := readFileHeader(dir, s)
		if err != nil {
			probs.add(s, "damaged safetensors header (%v); download or save the weights again", err)
			continue
		}
		headers[s] = ts
		read = append(read, s)
	}
	out := map[string]tensorInfo{}
	missing := map[string][]string{}
	for name, s := range idx.WeightMap {
		h, ok := headers[s]
		if !ok {
			continue
		}
		t, ok := h[name]
		if !ok {
			missing[s] = append(missing[s], name)
			continue
		}
		out[name] = t
	}
	for _, s := range shards {
		if m := missing[s]; len(m) > 0 {
			slices.Sort(m)
			probs.add(s, "does not hold %s, which %s says it does; download the shard again or save the model again", list(m), indexFile)
		}
	}
	if len(probs) > 0 {
		return nil, indexFile, read, probs
	}
	return out, indexFile, read, nil
}

// readFileHeader reads the header of the safetensors file name in dir.
func readFileHeader(dir, name string) (map[string]tensorInfo, error) {
	fh, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	return readHeader(fh, fi.Size(), name)
}

// pickles returns the folder's PyTorch pickle weights, pytorch_model.bin
// first.
func pickles(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		n := e.Name()
		if n == "training_args.bin" || n == "pytorch_model.bin" {
			continue
		}
		switch filepath.Ext(n) {
		case ".bin", ".pt", ".pth", ".ckpt":
			out = append(out, n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pytorch_model.bin")); err == nil {
		out = append([]string{"pytorch_model.bin"}, out...)
	}
	return out
}

// list names up to 10 items, then says how many more there are.
func list(items []string) string {
	if len(items) <= 10 {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:10], ", "), len(items)-10)
}

var floatDTypes = []string{"F32", "F16", "BF16"}

// match maps the file's tensors to the engine's and records them in f.
func (f *Folder) match(pc parsedConfig, tensors map[string]tensorInfo, weightsName string) problems {
	var probs problems
	arch := pc.arch
	if arch == "" {
		_, score := tensors["score.weight"]
		_, prefixed := tensors["transformer.wte.weight"]
		switch {
		case score:
			arch = ArchScorer
		case !prefixed:
			arch = ArchBase
		default:
			arch = ArchLMHead
		}
	}
	cfg := pc.cfg
	cfg.ValueHead = arch == ArchScorer
	f.Architecture, f.Config = arch, cfg

	find := func(name string) (string, tensorInfo, bool) {
		if t, ok := tensors[name]; ok {
			return name, t, true
		}
		n := strings.TrimPrefix(name, "transformer.")
		t, ok := tensors[n]
		return n, t, ok
	}
	used := map[string]bool{}
	var missing []string
	dtypes := map[string]bool{}
	check := func(name string, t tensorInfo, want []int) bool {
		if !slices.Contains(floatDTypes, t.DType) {
			probs.add(t.File, "tensor %s has dtype %s; supported: F32, F16, BF16: save the model in one of them (model.to(torch.float32))", name, t.DType)
			return false
		}
		dtypes[t.DType] = true
		if slices.Equal(t.Shape, want) {
			return true
		}
		if strings.HasSuffix(name, "wte.weight") && len(t.Shape) == 2 && t.Shape[1] == want[1] {
			probs.add(t.File, "tensor %s has %d rows but config.json vocab_size is %d; they must agree: use the config.json saved with these weights", name, t.Shape[0], want[0])
		} else {
			probs.add(t.File, "tensor %s has shape %v, want %v for config.json's shape; use the config.json saved with these weights", name, t.Shape, want)
		}
		return false
	}
	for _, s := range cfg.Layout() {
		if s.Name == "v_head.summary.bias" {
			b := pc.scoreBias
			f.tensors = append(f.tensors, source{spec: s, value: &b})
			continue
		}
		want := s.Name
		if s.Name == "v_head.summary.weight" {
			want = "score.weight"
		}
		name, t, ok := find(want)
		if !ok {
			missing = append(missing, want)
			continue
		}
		used[name] = true
		if check(name, t, s.Shape) {
			f.tensors = append(f.tensors, source{spec: s, name: name, t: t})
		}
	}
	if name, t, ok := find("lm_head.weight"); ok {
		used[name] = true
		if check(name, t, []int{cfg.Vocab, cfg.Width}) {
			f.lmHead = &t
		}
	}
	if len(missing) > 0 {
		probs.add(weightsName, "missing tensors %s of a %s with config.json's shape; use the weights saved with this config.json", list(missing), arch)
	}
	var extra []string
	for name := range tensors {
		if !used[name] && !strings.HasSuffix(name, ".attn.bias") && !strings.HasSuffix(name, ".attn.masked_bias") {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		probs.add(weightsName, "unknown tensors %s, not part of a %s; save the model without them (supported: %s)", list(extra), arch, strings.Join(supportedArchs, ", "))
	}
	for d := range dtypes {
		f.DTypes = append(f.DTypes, d)
	}
	slices.Sort(f.DTypes)
	return probs
}
