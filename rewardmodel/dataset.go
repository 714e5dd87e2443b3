package rewardmodel

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tokenizer"
)

// Dataset is comparisons tokenised for training, kept in a temporary file:
// memory holds one offset per comparison, and a training step or an
// evaluation batch reads only its own comparisons back. So the stage's
// memory is bounded by its batches, not by the snapshot. Comparisons that
// cannot teach anything (all responses tie, or two responses are the same
// token sequence) are skipped and counted.
//
// Add comparisons, then pass the dataset in Input; Close removes the file.
type Dataset struct {
	tok   tokenizer.Tokenizer
	f     *os.File
	w     *bufio.Writer
	off   []int64 // record i is [off[i], off[i+1]); off[0] = 0
	given int     // comparisons added, skipped ones included
	// Skipped counts the comparisons left out.
	Skipped int
	// longest is the most tokens of a sequence (prompt, response and end of
	// text) in any comparison given, and where: Train refuses a dataset
	// whose sequences do not fit the model's context.
	longest, longestAt, longestResp int
	buf                             []byte
}

// NewDataset starts an empty dataset of comparisons tokenised with tok.
func NewDataset(tok tokenizer.Tokenizer) (*Dataset, error) {
	f, err := os.CreateTemp("", "instructflow-rm-*.bin")
	if err != nil {
		return nil, fmt.Errorf("rewardmodel: dataset file: %w", err)
	}
	return &Dataset{tok: tok, f: f, w: bufio.NewWriter(f), off: []int64{0}}, nil
}

// datasetOf is a dataset of cs.
func datasetOf(tok tokenizer.Tokenizer, cs []Comparison) (*Dataset, error) {
	d, err := NewDataset(tok)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if err := d.Add(c); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// Add tokenises a comparison and appends it (or counts it as skipped). A
// comparison without K >= 2 responses and ranks, or with a response the
// tokenizer cannot encode, is bad input naming it (by the number of
// comparisons added before it).
func (d *Dataset) Add(c Comparison) error {
	i := d.given
	d.given++
	if len(c.Responses) < 2 || len(c.Ranks) != len(c.Responses) {
		return errkind.BadInputf("rewardmodel: comparison %d has %d responses and %d ranks; need K >= 2 of each", i, len(c.Responses), len(c.Ranks))
	}
	if len(c.Labeler) > math.MaxUint16 || len(c.Responses) > math.MaxUint16 {
		return errkind.BadInputf("rewardmodel: comparison %d has a labeler name of %d bytes and %d responses; both must be under 65,536", i, len(c.Labeler), len(c.Responses))
	}
	e := encoded{ranks: c.Ranks, labeler: c.Labeler}
	decided, duplicate := false, false
	seen := map[string]bool{}
	for j, r := range c.Responses {
		seq, err := Sequence(d.tok, c.Prompt, r)
		if err != nil {
			return errkind.BadInputf("rewardmodel: comparison %d response %d: %v", i, j, err)
		}
		if len(seq.Tokens) > d.longest {
			d.longest, d.longestAt, d.longestResp = len(seq.Tokens), i, j
		}
		key := fmt.Sprint(seq.Tokens[seq.PromptLen:])
		duplicate = duplicate || seen[key]
		seen[key] = true
		e.seqs = append(e.seqs, seq)
		if c.Ranks[j] != c.Ranks[0] {
			decided = true
		}
	}
	if !decided || duplicate {
		d.Skipped++
		return nil
	}
	d.buf = appendRecord(d.buf[:0], e)
	if _, err := d.w.Write(d.buf); err != nil {
		return fmt.Errorf("rewardmodel: dataset file: %w", err)
	}
	d.off = append(d.off, d.off[len(d.off)-1]+int64(len(d.buf)))
	return nil
}

// Len is how many comparisons the dataset holds (skipped ones not counted).
func (d *Dataset) Len() int { return len(d.off) - 1 }

// Close removes the dataset's file.
func (d *Dataset) Close() error {
	d.f.Close()
	return os.Remove(d.f.Name())
}

// fits refuses sequences longer than the context ctxLen.
func (d *Dataset) fits(ctxLen int) error {
	if d.longest > ctxLen {
		return errkind.BadInputf("rewardmodel: comparison %d response %d has %d tokens with its prompt, more than the context %d", d.longestAt, d.longestResp, d.longest, ctxLen)
	}
	return nil
}

// get reads comparisons idx back, in that order.
func (d *Dataset) get(idx []int) ([]encoded, error) {
	if d.w.Buffered() > 0 {
		if err := d.w.Flush(); err != nil {
			return nil, fmt.Errorf("rewardmodel: dataset file: %w", err)
		}
	}
	out := make([]encoded, len(idx))
	for n, i := range idx {
		size := int(d.off[i+1] - d.off[i])
		d.buf = slices.Grow(d.buf[:0], size)[:size]
		if _, err := d.f.ReadAt(d.buf, d.off[i]); err != nil {
			return nil, fmt.Errorf("rewardmodel: dataset file: comparison %d: %w", i, err)
		}
		e, err := parseRecord(d.buf)
		if err != nil {
			return nil, fmt.Errorf("rewardmodel: dataset file: comparison %d: %w", i, err)
		}
		out[n] = e
	}
	return out, nil
}

// span reads comparisons [start, end) back.
func (d *Dataset) span(start, end int) ([]encoded, error) {
	idx := make([]int, end-start)
	for i := range idx {
		idx[i] = start + i
	}
	return d.get(idx)
}

// A record is, little-endian: the labeler (uint16 length, bytes), K
// (uint16), K ranks (int32), then K sequences (prompt length and token
// count as uint32, the tokens as int32).
func appendRecord(b []byte, e encoded) []byte {
	le := binary.LittleEndian
	b = le.AppendUint16(b, uint16(len(e.labeler)))
	b = append(b, e.labeler...)
	b = le.AppendUint16(b, uint16(len(e.seqs)))
	for _, r := range e.ranks {
		b = le.AppendUint32(b, uint32(int32(r)))
	}
	for _, s := range e.seqs {
		b = le.AppendUint32(b, uint32(s.PromptLen))
		b = le.AppendUint32(b, uint32(len(s.Tokens)))
		for _, t := range s.Tokens {
			b = le.AppendUint32(b, uint32(t))
		}
	}
	return b
}

func parseRecord(b []byte) (encoded, error) {
	le := binary.LittleEndian
	var e encoded
	take := func(n int) []byte {
		if len(b) < n {
			b = nil
			return nil
		}
		out := b[:n]
		b = b[n:]
		return out
	}
	u16 := func() int {
		if x := take(2); x != nil {
			return int(le.Uint16(x))
		}
		return 0
	}
	u32 := func() uint32 {
		if x := take(4); x != nil {
			return le.Uint32(x)
		}
		return 0
	}
	e.labeler = string(take(u16()))
	k := u16()
	e.ranks = make([]int, k)
	for i := range e.ranks {
		e.ranks[i] = int(int32(u32()))
	}
	e.seqs = make([]stage.Seq, k)
	for i := range e.seqs {
		e.seqs[i].PromptLen = int(u32())
		e.seqs[i].Tokens = make([]int32, u32())
		for t := range e.seqs[i].Tokens {
			e.seqs[i].Tokens[t] = int32(u32())
		}
	}
	if b == nil {
		return encoded{}, io.ErrUnexpectedEOF
	}
	return e, nil
}
