package model

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/instructflow/instructflow/model/kernel"
)

// SampleConfig says how Sample picks tokens.
type SampleConfig struct {
	MaxTokens   int     // new tokens per sequence, at most
	Temperature float32 // logits are divided by it; 0 picks the most likely token (greedy)
	TopK        int     // keep the K most likely tokens; 0 keeps all
	TopP        float32 // keep the smallest set of most likely tokens whose probability reaches P; 0 or 1 keeps all
	StopToken   int32   // ends a sequence (and is returned with it); -1 for none
}

// Sequence is what Sample generated for one prompt.
type Sequence struct {
	Tokens []int32 // generated tokens, without the prompt, with the stop token if one was drawn
	// LogProbs[i] is log softmax(logits/Temperature)[Tokens[i]] over the whole
	// vocabulary, before top-k and top-p (plain log softmax when greedy): at
	// Temperature 1 it equals Forward's LogProbs for the same tokens.
	LogProbs []float32
}

// Sample continues every prompt, all of them in one batch that shares each
// step's matrix multiplies, with a key/value cache so each new token costs
// one row. Random draws come from rng in a fixed order (one per sequence per
// step, in prompt order), so results depend only on the seed.
func (m *Model) Sample(prompts [][]int32, sc SampleConfig, rng *RNG) ([]Sequence, error) {
	if err := m.checkSample(prompts, sc, rng); err != nil {
		return nil, err
	}
	total, longest := 0, 0
	for _, p := range prompts {
		total += len(p)
		longest = max(longest, len(p))
	}
	s := newSampler(m, len(prompts), longest+sc.MaxTokens, total)
	out := make([]Sequence, len(prompts))
	for b, p := range prompts {
		for t, tok := range p {
			s.addRow(b, t, tok)
		}
		s.want = append(s.want, len(s.rows)-1)
	}
	active := make([]int, len(prompts))
	for b := range active {
		active[b] = b
	}
	for len(active) > 0 {
		logits := s.forward()
		s.rows, s.want = s.rows[:0], s.want[:0]
		next := active[:0]
		for j, b := range active {
			tok, lp := s.pick(logits[j*m.Config.Vocab:(j+1)*m.Config.Vocab], sc, rng)
			seq := &out[b]
			seq.Tokens = append(seq.Tokens, tok)
			seq.LogProbs = append(seq.LogProbs, lp)
			if tok == sc.StopToken || len(seq.Tokens) == sc.MaxTokens {
				continue
			}
			next = append(next, b)
			s.addRow(b, len(prompts[b])+len(seq.Tokens)-1, tok)
			s.want = append(s.want, len(s.rows)-1)
		}
		active = next
	}
	return out, nil
}

func (m *Model) checkSample(prompts [][]int32, sc SampleConfig, rng *RNG) error {
	V := m.Config.Vocab
	switch {
	case len(prompts) == 0:
		return fmt.Errorf("model: sample: no prompts")
	case sc.MaxTokens < 1:
		return fmt.Errorf("model: sample: max tokens is %d, must be at least 1", sc.MaxTokens)
	case sc.Temperature < 0 || math.IsNaN(float64(sc.Temperature)):
		return fmt.Errorf("model: sample: temperature %v must not be negative", sc.Temperature)
	case sc.TopK < 0:
		return fmt.Errorf("model: sample: top-k %d must not be negative", sc.TopK)
	case !(sc.TopP >= 0 && sc.TopP <= 1):
		return fmt.Errorf("model: sample: top-p %v must be in [0,1]", sc.TopP)
	case sc.StopToken < -1 || int(sc.StopToken) >= V:
		return fmt.Errorf("model: sample: stop token %d is outside the vocabulary [0,%d) and not -1", sc.StopToken, V)
	case rng == nil && sc.Temperature > 0:
		return fmt.Errorf("model: sample: temperature %v needs an rng", sc.Temperature)
	}
	for b, p := range prompts {
		if len(p) == 0 {
			return fmt.Errorf("model: sample: prompt %d is empty", b)
		}
		if len(p)+sc.MaxTokens > m.Config.Context {
			return fmt.Errorf("model: sample: prompt %d has %d tokens, plus max tokens %d exceeds context n_positions %d", b, len(p), sc.MaxTokens, m.Config.Context)
		}
		for i, tok := range p {
			if tok < 0 || int(tok) >= V {
				return fmt.Errorf("model: sample: prompt %d token %d at position %d is outside the vocabulary [0,%d)", b, tok, i, V)
			}
		}
	}
	return nil
}

// sampler runs the model on rows: single tokens of some sequences at some
// positions. Each row's keys and values go into the cache before attention,
// so a row sees every earlier row of its sequence, in this call or before.
type sampler struct {
	m *Model
	// The key/value cache, per layer: keys (S, NH, hs, T), transposed so
	// attention reads them contiguously, and values (S, NH, T, hs). T is the
	// longest prompt plus the new tokens, at most the context.
	k, v [][]float32
	T    int
	// wteT (C,V) is the tied embedding transposed, so that the LM head is a
	// plain product, which the thin GEMM kernel runs without repacking wte.
	// With at most thinPanelRows sequences, the products of at most that
	// many rows (every decode step and the LM head) read weights packed
	// panel by panel instead (see packPanels): panels holds every block
	// linear's weights, and wteT is packed too. Otherwise panels is nil.
	wteT   []float32
	panels map[*linear][]float32
	rows   []sampleRow
	want   []int // rows whose logits forward returns, in order

	x, ln, atty        []float32 // (M,C); x is the residual stream
	mean, rstd         []float32 // (M)
	qkv                []float32 // (M,3C)
	fch, fchGelu       []float32 // (M,4C)
	u                  []float32 // (M,r)
	scores             []float32 // (M*NH, T)
	sel, selLN, logits []float32 // (W,C), (W,C), (W,V)
	order              []int32   // (V)
	probs              []float32 // (V)
}

type sampleRow struct {
	seq, pos int
	tok      int32
}

func newSampler(m *Model, S, T, maxRows int) *sampler {
	cfg := m.Config
	C := cfg.Width
	s := &sampler{m: m, k: make([][]float32, cfg.Layers), v: make([][]float32, cfg.Layers), T: T}
	for l := range s.k {
		s.k[l], s.v[l] = make([]float32, S*T*C), make([]float32, S*T*C)
	}
	s.rows = make([]sampleRow, 0, max(maxRows, S))
	V := cfg.Vocab
	if S > thinPanelRows {
		s.wteT = make([]float32, C*V)
		m.pool.run(chunks(V, colChunk), func(c int) {
			for v := c * colChunk; v < min(V, (c+1)*colChunk); v++ {
				for i, x := range m.wte.Data[v*C : (v+1)*C] {
					s.wteT[i*V+v] = x
				}
			}
		})
	} else {
		s.panels = make(map[*linear][]float32, 4*cfg.Layers)
		for l := range m.blocks {
			bl := &m.blocks[l]
			for _, lin := range []*linear{&bl.qkv, &bl.attProj, &bl.fc, &bl.fcProj} {
				s.panels[lin] = packPanels(m.pool, lin.w.Data, lin.C, lin.OC, false)
			}
		}
		s.wteT = packPanels(m.pool, m.wte.Data, C, V, true)
	}
	s.order, s.probs = make([]int32, cfg.Vocab), make([]float32, cfg.Vocab)
	return s
}

// panel returns lin's packed weights for a product of N rows, or nil where
// the row-major ones serve.
func (s *sampler) panel(lin *linear, N int) []float32 {
	if N > thinPanelRows {
		return nil
	}
	return s.panels[lin] // nil when nothing is packed
}

// thinPanelRows is the most rows that use the packed weights. A decode step
// of at most this many rows streams every weight from memory for little
// arithmetic, so the layout of the weights sets its speed; one of more rows
// does enough arithmetic per weight to read the row-major ones in p.gemm's
// tiles. A sampler of at most this many sequences packs its weights, a
// second copy of the model for the call.
const thinPanelRows = 64

func (s *sampler) addRow(seq, pos int, tok int32) {
	s.rows = append(s.rows, sampleRow{seq: seq, pos: pos, tok: tok})
}

// forward runs every row through the model and returns the logits (W,V) of
// the rows in want.
func (s *sampler) forward() []float32 {
	m, cfg := s.m, s.m.Config
	C, NH, T, V, r := cfg.Width, cfg.Heads, s.T, cfg.Vocab, cfg.LoRARank
	hs := C / NH
	M, W := len(s.rows), len(s.want)
	p := m.pool
	s.x, s.ln, s.atty = grow(s.x, M*C), grow(s.ln, M*C), grow(s.atty, M*C)
	s.mean, s.rstd = grow(s.mean, M), grow(s.rstd, M)
	s.qkv = grow(s.qkv, M*3*C)
	s.fch, s.fchGelu = grow(s.fch, M*4*C), grow(s.fchGelu, M*4*C)
	s.u = grow(s.u, M*r)
	s.scores = grow(s.scores, M*NH*T)
	for i, row := range s.rows {
		o, e, pe := s.x[i*C:(i+1)*C], m.wte.Data[int(row.tok)*C:], m.wpe.Data[row.pos*C:]
		for j := range o {
			o[j] = e[j] + pe[j]
		}
	}
	scale := 1 / float32(math.Sqrt(float64(hs)))
	for l := range m.blocks {
		bl := &m.blocks[l]
		kc, vc := s.k[l], s.v[l]
		layernormForward(p, s.ln, s.mean, s.rstd, s.x, bl.ln1w.Data, bl.ln1b.Data, M, C)
		linearForward(p, s.qkv, s.u, s.ln, &bl.qkv, s.panel(&bl.qkv, M), M, false)
		for i, row := range s.rows {
			for h := range NH {
				head := (row.seq*NH + h) * T * hs
				for d, x := range s.qkv[i*3*C+C+h*hs : i*3*C+C+(h+1)*hs] {
					kc[head+d*T+row.pos] = x
				}
				copy(vc[head+row.pos*hs:head+(row.pos+1)*hs], s.qkv[i*3*C+2*C+h*hs:])
			}
		}
		p.run(M*NH, func(task int) {
			i, h := task/NH, task%NH
			row := s.rows[i]
			n := row.pos + 1
			base := (row.seq*NH + h) * T * hs
			kernel.Attend(s.atty[i*C+h*hs:], s.qkv[i*3*C+h*hs:], kc[base:], vc[base:], n, hs, T, scale, s.scores[task*T:(task+1)*T])
		})
		linearForward(p, s.x, s.u, s.atty, &bl.attProj, s.panel(&bl.attProj, M), M, true)
		layernormForward(p, s.ln, s.mean, s.rstd, s.x, bl.ln2w.Data, bl.ln2b.Data, M, C)
		linearForward(p, s.fch, s.u, s.ln, &bl.fc, s.panel(&bl.fc, M), M, false)
		geluForward(p, s.fchGelu, s.fch, M*4*C)
		linearForward(p, s.x, s.u, s.fchGelu, &bl.fcProj, s.panel(&bl.fcProj, M), M, true)
	}
	s.sel, s.selLN = grow(s.sel, W*C), grow(s.selLN, W*C)
	for j, i := range s.want {
		copy(s.sel[j*C:(j+1)*C], s.x[i*C:(i+1)*C])
	}
	layernormForward(p, s.selLN, s.mean, s.rstd, s.sel, m.lnfw.Data, m.lnfb.Data, W, C)
	s.logits = grow(s.logits, W*V)
	if s.panels != nil { // W <= S <= thinPanelRows
		p.gemmPanels(false, W, V, C, 1, s.selLN, C, s.wteT, 0, s.logits, V)
	} else {
		p.gemm(false, false, W, V, C, 1, s.selLN, C, s.wteT, V, 0, s.logits, V)
	}
	return s.logits
}

// pick draws the next token from one row of logits and returns it with its
// log-probability (see Sequence.LogProbs).
func (s *sampler) pick(z []float32, sc SampleConfig, rng *RNG) (int32, float32) {
	temp := sc.Temperature
	if temp == 0 {
		best := 0
		for i, v := range z {
			if v > z[best] {
				best = i
			}
		}
		sum, _ := kernel.Exps(s.probs, z, z[best], 1)
		return int32(best), -float32(math.Log(float64(sum)))
	}
	// probs = exp((z - max)/temp), unnormalised, summing to total
	zmax := z[0]
	for _, v := range z[1:] {
		zmax = max(zmax, v)
	}
	probs, inv := s.probs, 1/temp
	sum, _ := kernel.Exps(probs, z, zmax, inv)
	total := float64(sum)
	V := len(z)
	cand := s.order[:V]
	for i := range cand {
		cand[i] = int32(i)
	}
	if (sc.TopK > 0 && sc.TopK < V) || (sc.TopP > 0 && sc.TopP < 1) {
		slices.SortFunc(cand, func(a, b int32) int {
			if c := cmp.Compare(z[b], z[a]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		if sc.TopK > 0 && sc.TopK < V {
			cand = cand[:sc.TopK]
		}
		if sc.TopP > 0 && sc.TopP < 1 {
			var cum float64
			for j, i := range cand {
				cum += float64(probs[i])
				if cum >= float64(sc.TopP)*total {
					cand = cand[:j+1]
					break
				}
			}
		}
	}
	mass := total
	if len(cand) < V {
		mass = 0
		for _, i := range cand {
			mass += float64(probs[i])
		}
	}
	target := float64(rng.Float32()) * mass
	choice := cand[len(cand)-1]
	var acc float64
	for _, i := range cand {
		acc += float64(probs[i])
		if acc > target {
			choice = i
			break
		}
	}
	return choice, (z[choice]-zmax)*inv - float32(math.Log(total))
}
