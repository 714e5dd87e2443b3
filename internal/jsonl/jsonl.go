// Package jsonl reads outside data one JSON object a line, the way every
// import of InstructFlow does: gzip read transparently, lines numbered,
// each problem named by a rule whose action keeps the row flagged, skips it
// or refuses the whole file, and reading stopped at the first refusal
// unless the caller wants every problem counted (a dry run).
package jsonl

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"
)

// Action is what a problem does to its row and file.
type Action string

const (
	// Refuse refuses the whole file (with SkipInvalid: skips the row).
	Refuse Action = "refuse file"
	// Skip leaves the row out and imports the rest.
	Skip Action = "skip row"
	// Flag keeps the row, marked with the rule's name.
	Flag Action = "keep, flagged"
)

// Problem is one thing wrong with one line; K is the importer's rule type.
type Problem[K ~string] struct {
	Line   int    `json:"line"`
	Rule   K      `json:"rule"`
	Detail string `json:"detail"`
}

func (p Problem[K]) String() string {
	return fmt.Sprintf("line %d: %s: %s", p.Line, p.Rule, p.Detail)
}

// Options tune a reader.
type Options struct {
	// SkipInvalid skips rows that would otherwise refuse the whole file.
	SkipInvalid bool
	// KeepReading reads on after a problem that refuses the file, to count
	// every problem; by default reading stops there.
	KeepReading bool
	// MaxProblems is how many problems the reader keeps, in line order
	// (DefaultMaxProblems when 0); the rest are only counted.
	MaxProblems int
}

// DefaultMaxProblems is how many problems a reader keeps by default.
const DefaultMaxProblems = 20

// RuleTable lists an import's rules: what each does and means.
type RuleTable[K ~string] []struct {
	Rule   K
	Action Action
	What   string
}

// Action is what rule r does; a rule the table lacks is a programmer
// error.
func (t RuleTable[K]) Action(r K) Action {
	for _, x := range t {
		if x.Rule == r {
			return x.Action
		}
	}
	panic("jsonl: unknown rule " + string(r))
}

// Help is the table as an import's --help lists it.
func (t RuleTable[K]) Help() string {
	wr, wa := 0, 0
	for _, x := range t {
		wr, wa = max(wr, len(x.Rule)), max(wa, len(x.Action))
	}
	var b strings.Builder
	for _, x := range t {
		fmt.Fprintf(&b, "  %-*s %-*s %s\n", wr+1, x.Rule, wa+1, x.Action, x.What)
	}
	return b.String()
}

// ErrRefused is returned by Next when a problem refuses the file: at that
// problem, or at the end of the file with KeepReading.
var ErrRefused = errors.New("the file is refused")

// maxLines is the most lines a file may have: line numbers are stored as
// 32-bit integers (a variable for tests).
var maxLines = math.MaxInt32

// Row is one accepted line: its number, the parsed value and the rules of
// the problems that flag it.
type Row[R any, K ~string] struct {
	Line  int
	Value R
	Flags []K
}

// Reader reads and validates a file line by line. Parse turns one
// non-blank line into a value and its problems; action says what each
// rule does. Problems keeps the first MaxProblems problems and the first
// refusal; Counts counts every problem by rule; Rows counts non-blank lines.
type Reader[R any, K ~string] struct {
	parse   func(raw []byte) (R, []Problem[K])
	action  func(K) Action
	opts    Options
	sc      *bufio.Scanner
	line    int
	refused bool

	Problems []Problem[K]
	Counts   map[K]int
	Rows     int
}

// NewReader returns a reader of r (gzip or not).
func NewReader[R any, K ~string](r io.Reader, parse func([]byte) (R, []Problem[K]), action func(K) Action, opts Options) (*Reader[R, K], error) {
	if opts.MaxProblems <= 0 {
		opts.MaxProblems = DefaultMaxProblems
	}
	br := bufio.NewReaderSize(r, 1<<20)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		br = bufio.NewReaderSize(gz, 1<<20)
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	return &Reader[R, K]{parse: parse, action: action, opts: opts, sc: sc, Counts: map[K]int{}}, nil
}

// Action is what rule does in this reader (SkipInvalid turns refusals
// into skips).
func (rd *Reader[R, K]) Action(rule K) Action {
	a := rd.action(rule)
	if a == Refuse && rd.opts.SkipInvalid {
		return Skip
	}
	return a
}

// Next returns the next accepted row; io.EOF at the end of the file; or an
// error wrapping ErrRefused when a problem refuses the file (see Problems).
func (rd *Reader[R, K]) Next() (Row[R, K], error) {
	for !rd.refused || rd.opts.KeepReading {
		if !rd.sc.Scan() {
			if err := rd.sc.Err(); err != nil {
				if errors.Is(err, bufio.ErrTooLong) {
					return Row[R, K]{}, fmt.Errorf("line %d is longer than 64 MiB", rd.line+1)
				}
				return Row[R, K]{}, fmt.Errorf("read line %d: %w", rd.line+1, err)
			}
			break
		}
		rd.line++
		if rd.line > maxLines {
			return Row[R, K]{}, fmt.Errorf("line %d: a file may have at most %d lines; split it", rd.line, maxLines)
		}
		raw := bytes.TrimSpace(rd.sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		rd.Rows++
		v, probs := rd.parse(raw)
		row := Row[R, K]{Line: rd.line, Value: v}
		skip := false
		for _, p := range probs {
			p.Line = rd.line
			rd.Counts[p.Rule]++
			action := rd.Action(p.Rule)
			// The first refusing problem is kept even past MaxProblems, so
			// that a refusal can always say where.
			if len(rd.Problems) < rd.opts.MaxProblems || action == Refuse && !rd.refused {
				rd.Problems = append(rd.Problems, p)
			}
			switch action {
			case Flag:
				row.Flags = append(row.Flags, p.Rule)
			case Refuse:
				rd.refused = true
				skip = true
			default:
				skip = true
			}
		}
		if !skip {
			return row, nil
		}
	}
	if rd.refused {
		return Row[R, K]{}, rd.refusal()
	}
	return Row[R, K]{}, io.EOF
}

// refusal is the error of a refused file, naming its first refusing problem.
func (rd *Reader[R, K]) refusal() error {
	for _, p := range rd.Problems {
		if rd.Action(p.Rule) == Refuse {
			return fmt.Errorf("%w: %s", ErrRefused, p)
		}
	}
	return ErrRefused // every kept problem is a flag or a skip; the refusing one came later
}

// Line is the number of the last line read.
func (rd *Reader[R, K]) Line() int { return rd.line }

// Refused reports whether a problem refuses the whole file.
func (rd *Reader[R, K]) Refused() bool { return rd.refused }

// ProblemCount is the number of problems found, kept or not.
func (rd *Reader[R, K]) ProblemCount() int {
	n := 0
	for _, c := range rd.Counts {
		n += c
	}
	return n
}

// Decode unmarshals a line into v. A line that is not UTF-8 or not JSON is
// a problem of rule badJSON; a field of the wrong type one of missingField.
func Decode[K ~string](raw []byte, v any, badJSON, missingField K) []Problem[K] {
	if !utf8.Valid(raw) {
		return []Problem[K]{{Rule: badJSON, Detail: "not valid UTF-8"}}
	}
	err := json.Unmarshal(raw, v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return []Problem[K]{{Rule: badJSON, Detail: fmt.Sprintf("the line is a JSON %s, not an object", typeErr.Value)}}
	case errors.As(err, &typeErr):
		return []Problem[K]{{Rule: missingField, Detail: fmt.Sprintf("field %q must be %s, not JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)}}
	default:
		return []Problem[K]{{Rule: badJSON, Detail: err.Error()}}
	}
}
