package dataset

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"slices"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/preference"
)

// Stats describes a dataset's rows: counts by split and kind, repeats,
// lengths and a few sample rows.
type Stats struct {
	Rows   int64                    `json:"rows"`
	Counts map[Split]map[Kind]int64 `json:"counts"`
	// RepeatedPrompts are prompts with more than one row (several
	// demonstrations, or a prompt row beside its demonstrations).
	RepeatedPrompts int64 `json:"repeated_prompts"`
	// NearDuplicates are rows whose prompt and target are those of an
	// earlier row up to white space.
	NearDuplicates int64 `json:"near_duplicates"`
	// Length percentiles of prompts (as rendered) and targets, in Unit.
	Unit    string      `json:"unit"`
	Prompt  Percentiles `json:"prompt_length"`
	Target  Percentiles `json:"target_length"` // of demonstrations
	Samples []Example   `json:"samples"`
}

// Percentiles of a length.
type Percentiles struct {
	P50 int `json:"p50"`
	P90 int `json:"p90"`
	P99 int `json:"p99"`
	Max int `json:"max"`
}

// StatsBuilder accumulates Stats row by row.
type StatsBuilder struct {
	s       Stats
	length  func(string) int
	prompts map[[32]byte]int
	seen    map[[32]byte]bool
	pl, tl  []int
	rows    int64
	samples []int64 // row numbers to keep
}

// NewStats starts stats of n rows whose lengths length measures in unit
// (characters, or a model's tokens); it keeps the rows at the quartiles
// as samples.
func NewStats(n int64, unit string, length func(string) int) *StatsBuilder {
	b := &StatsBuilder{length: length, prompts: map[[32]byte]int{}, seen: map[[32]byte]bool{}}
	b.s.Unit, b.s.Counts = unit, map[Split]map[Kind]int64{}
	for _, q := range []int64{1, 2, 3} {
		if i := q * n / 4; !slices.Contains(b.samples, i) && i < n {
			b.samples = append(b.samples, i)
		}
	}
	return b
}

// Add counts one row; rendered is its prompt as the model reads it.
func (b *StatsBuilder) Add(ex Example, rendered string) {
	if b.s.Counts[ex.Split] == nil {
		b.s.Counts[ex.Split] = map[Kind]int64{}
	}
	b.s.Counts[ex.Split][ex.Kind()]++
	p := sha256.Sum256([]byte(ex.Prompt))
	if b.prompts[p]++; b.prompts[p] == 2 {
		b.s.RepeatedPrompts++
	}
	np, nt := preference.NormHash(ex.Prompt), preference.NormHash(ex.Target)
	key := sha256.Sum256(append(np[:], nt[:]...))
	if b.seen[key] {
		b.s.NearDuplicates++
	}
	b.seen[key] = true
	b.pl = append(b.pl, b.length(rendered))
	if ex.Kind() == Demonstration {
		b.tl = append(b.tl, b.length(ex.Target))
	}
	if slices.Contains(b.samples, b.rows) {
		b.s.Samples = append(b.s.Samples, ex)
	}
	b.rows++
}

// Stats returns what was added.
func (b *StatsBuilder) Stats() Stats {
	b.s.Rows = b.rows
	b.s.Prompt, b.s.Target = percentiles(b.pl), percentiles(b.tl)
	if b.s.Samples == nil {
		b.s.Samples = []Example{}
	}
	return b.s
}

func percentiles(v []int) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	slices.Sort(v)
	at := func(q float64) int { return v[min(len(v)-1, int(q*float64(len(v))))] }
	return Percentiles{P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: v[len(v)-1]}
}

// exported is a row as `data export` writes it: TRL prompt-completion,
// conversational when the prompt has turns.
type exported struct {
	Prompt     any   `json:"prompt"`
	Completion any   `json:"completion,omitempty"`
	Split      Split `json:"split"`
}

// WriteJSONL writes ex as one line that 'data import --format
// prompt-completion' reads back (a prompt row without a completion reads
// back with --kind prompt). The same row always gives the same bytes.
func WriteJSONL(w io.Writer, ex Example) error {
	e := exported{Prompt: ex.Prompt, Split: ex.Split}
	// A conversation is written as its turns, unless its stored text is
	// not their rendering (an HH transcript, kept as written): then as the
	// text, which imports back to the same text and turns.
	asTurns := false
	if ex.Turns != nil {
		text, _ := chat.Identity(ex.Turns)
		asTurns = text == ex.Prompt
	}
	if asTurns {
		e.Prompt = ex.Turns
	}
	if ex.Target != "" {
		e.Completion = ex.Target
		if asTurns {
			e.Completion = []chat.Message{{Role: chat.Assistant, Content: ex.Target}}
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
