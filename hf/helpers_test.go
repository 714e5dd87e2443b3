package hf

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/instructflow/instructflow/model"
)

// tinyCfg is the shape of the test models; its vocabulary is tinyTokenizer's.
var tinyCfg = model.Config{Vocab: 259, Context: 16, Layers: 2, Heads: 2, Width: 8}

// tinyTokenizer returns the files of a byte-level BPE of 259 tokens: the 256
// bytes, two merges and <|endoftext|> (id 258).
func tinyTokenizer(t *testing.T) map[string][]byte {
	t.Helper()
	vocab := map[string]int{}
	for i, r := range byteRunes() {
		vocab[string(r)] = i
	}
	vocab["Ġt"], vocab["he"], vocab["<|endoftext|>"] = 256, 257, 258
	vb, err := json.Marshal(vocab)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"vocab.json": vb,
		"merges.txt": []byte("#version: 0.2\nĠ t\nh e\n"),
	}
}

// byteRunes is GPT-2's byte-to-character table, in id order.
func byteRunes() []rune {
	var bs []int
	for b := '!'; b <= '~'; b++ {
		bs = append(bs, int(b))
	}
	for b := '¡'; b <= '¬'; b++ {
		bs = append(bs, int(b))
	}
	for b := '®'; b <= 'ÿ'; b++ {
		bs = append(bs, int(b))
	}
	rs := make([]rune, 256)
	for _, b := range bs {
		rs[b] = rune(b)
	}
	n := 0
	for b := range 256 {
		if !slices.Contains(bs, b) {
			rs[b] = rune(256 + n)
			n++
		}
	}
	return rs
}

// randomModel returns a model of shape cfg with random weights; every tensor,
// biases and LoRA B included, is nonzero.
func randomModel(t *testing.T, cfg model.Config, seed uint64) *model.Model {
	t.Helper()
	m, err := model.New(cfg, model.NewRNG(seed))
	if err != nil {
		t.Fatal(err)
	}
	rng := model.NewRNG(seed + 1)
	for i := range m.Params {
		m.Params[i] += 0.01 * rng.Norm()
	}
	return m
}

func engineBytes(t *testing.T, m *model.Model) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := m.WriteWeights(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// exportFolder writes m as a Hugging Face folder and returns its path.
func exportFolder(t *testing.T, m *model.Model, kind Kind) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hf")
	if err := Write(context.Background(), dir, Export{Model: m, Kind: kind, TokenizerFiles: tinyTokenizer(t), EOT: 258, Pad: 258, Card: []byte("# tiny\n")}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// stTensor is a tensor for writeST, the tests' own safetensors writer.
type stTensor struct {
	name  string
	dtype string
	shape []int
	data  []byte
}

// writeST writes a safetensors file of ts, in order.
func writeST(t *testing.T, path string, ts []stTensor) {
	t.Helper()
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	off := 0
	var body []byte
	for _, x := range ts {
		header[x.name] = map[string]any{"dtype": x.dtype, "shape": x.shape, "data_offsets": []int{off, off + len(x.data)}}
		off += len(x.data)
		body = append(body, x.data...)
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(append(out, h...), body...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readST reads the tensors of a safetensors file the tests wrote or Write
// wrote, in file order.
func readST(t *testing.T, path string) []stTensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &raw); err != nil {
		t.Fatal(err)
	}
	var ts []stTensor
	var los []int
	for name, msg := range raw {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			DType   string `json:"dtype"`
			Shape   []int  `json:"shape"`
			Offsets [2]int `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &e); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, stTensor{name, e.DType, e.Shape, b[8+int(n)+e.Offsets[0] : 8+int(n)+e.Offsets[1]]})
		los = append(los, e.Offsets[0])
	}
	idx := make([]int, len(ts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return los[a] - los[b] })
	out := make([]stTensor, len(ts))
	for i, j := range idx {
		out[i] = ts[j]
	}
	return out
}

// editConfig rewrites dir's config.json through edit.
func editConfig(t *testing.T, dir string, edit func(c map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	edit(c)
	if b, err = json.Marshal(c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// editWeights rewrites dir's model.safetensors through edit.
func editWeights(t *testing.T, dir string, edit func(ts []stTensor) []stTensor) {
	t.Helper()
	path := filepath.Join(dir, "model.safetensors")
	writeST(t, path, edit(readST(t, path)))
}

func f32Data(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}
