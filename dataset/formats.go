// Package dataset is a user's demonstrations and prompts as the data
// formats people use give them (TRL prompt-completion and prompt-only, the
// OpenAI/TRL messages format, Alpaca, HH-RLHF transcripts), validated line
// by line, with the split of every prompt drawn from its hash.
package dataset

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/internal/jsonl"
)

// Format is an import format, one JSON object a line.
type Format string

const (
	// FormatPromptCompletion (TRL): {"prompt": s|turns, "completion": s|turns}
	FormatPromptCompletion Format = "prompt-completion"
	// FormatMessages (OpenAI, TRL): {"messages": turns}; the last assistant
	// turn is the target (every one with AllTurns).
	FormatMessages Format = "messages"
	// FormatPrompt (TRL prompt-only): {"prompt": s|turns}
	FormatPrompt Format = "prompt"
	// FormatAlpaca: {"instruction": s, "input"?: s, "output": s}
	FormatAlpaca Format = "alpaca"
	// FormatHH (Anthropic HH-RLHF): {"chosen": transcript, "rejected"?: transcript};
	// the chosen side is the demonstration.
	FormatHH Format = "hh"
)

// Formats lists the formats, for help and messages.
var Formats = []Format{FormatPromptCompletion, FormatMessages, FormatPrompt, FormatAlpaca, FormatHH}

// ParseFormat checks a format name given by a user.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown format %q: use prompt-completion, messages, prompt, alpaca or hh", s)
}

// Kind is what a row of a dataset is.
type Kind string

const (
	// Demonstration is a prompt with a target (SFT).
	Demonstration Kind = "demonstration"
	// Prompt is a prompt alone (label collection, PPO).
	Prompt Kind = "prompt"
)

// Split is the side of a prompt: trained on or held out.
type Split string

const (
	Train   Split = "train"
	Heldout Split = "heldout"
)

// Example is one row: a prompt with its split and, in a demonstration, the
// target.
type Example struct {
	Line int
	// Prompt is the prompt's stored text; Turns its conversation when it is
	// more than one user turn (see chat.Identity).
	Prompt string
	Turns  []chat.Message
	// Target is the demonstration; "" in a prompt row.
	Target string
	Split  Split
}

// Kind is a demonstration when the row has a target.
func (e Example) Kind() Kind {
	if e.Target != "" {
		return Demonstration
	}
	return Prompt
}

// ContentHash identifies the row in its dataset: importing it again adds
// nothing.
func (e Example) ContentHash() [32]byte {
	h := sha256.New()
	h.Write([]byte("instructflow dataset row v1"))
	for _, s := range []string{string(e.Kind()), e.Prompt, e.Target} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// SplitOf is the split of a prompt for a held-out fraction: drawn from the
// SHA-256 of its stored text, so that a prompt lands on the same side on
// every import with the same fraction, whatever file it comes in.
func SplitOf(prompt string, heldoutFraction float64) Split {
	sum := sha256.Sum256([]byte(prompt))
	u := float64(binary.BigEndian.Uint64(sum[:8])) / math.Exp2(64)
	if u < heldoutFraction {
		return Heldout
	}
	return Train
}

// Options say how to read a file.
type Options struct {
	Format Format
	// Kind is what to store; "" = the format's own (prompts for
	// FormatPrompt, demonstrations otherwise). Prompts of a demonstration
	// format drop the targets.
	Kind Kind
	// AllTurns makes every assistant turn of a messages conversation a
	// target, with the turns before it as its prompt.
	AllTurns bool
	// Field names, as OpenRLHF's --input_key and friends ("" = the format's).
	PromptKey, CompletionKey, MessagesKey string
	// MaxChars is the longest prompt or target accepted, in characters.
	MaxChars int
	// Split puts every prompt in one split; else HeldoutFraction draws it
	// from the prompt's hash (SplitOf).
	Split           Split
	HeldoutFraction float64
	jsonl.Options
}

// DefaultMaxChars is the default limit on a prompt or target.
const DefaultMaxChars = 32768

// Reader reads and validates a file (see jsonl.Reader: Problems, Counts,
// Rows); Next returns the accepted rows, several for a line with AllTurns.
type Reader struct {
	*jsonl.Reader[[]Example, Rule]
	opts    Options
	pending []Example
	// Lines counts the lines whose rows were accepted.
	Lines int
}

// NewReader returns a reader of r.
func NewReader(r io.Reader, opts Options) (*Reader, error) {
	if _, err := ParseFormat(string(opts.Format)); err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	switch opts.Kind {
	case "":
		opts.Kind = Demonstration
		if opts.Format == FormatPrompt {
			opts.Kind = Prompt
		}
	case Prompt, Demonstration:
		if opts.Format == FormatPrompt && opts.Kind == Demonstration {
			return nil, errors.New("dataset: the prompt format has no targets: import it as prompts")
		}
	default:
		return nil, fmt.Errorf("dataset: unknown kind %q: use demonstration or prompt", opts.Kind)
	}
	if opts.AllTurns && opts.Format != FormatMessages {
		return nil, fmt.Errorf("dataset: all turns: only the messages format has several assistant turns, not %s", opts.Format)
	}
	switch opts.Split {
	case "":
		if !(opts.HeldoutFraction >= 0 && opts.HeldoutFraction < 1) {
			return nil, fmt.Errorf("dataset: held-out fraction %v: use 0 or more and less than 1", opts.HeldoutFraction)
		}
	case Train, Heldout:
		if opts.HeldoutFraction != 0 {
			return nil, errors.New("dataset: give a split or a held-out fraction, not both")
		}
	default:
		return nil, fmt.Errorf("dataset: unknown split %q: use train or heldout", opts.Split)
	}
	if opts.MaxChars <= 0 {
		opts.MaxChars = DefaultMaxChars
	}
	opts.PromptKey = cmp.Or(opts.PromptKey, "prompt")
	opts.CompletionKey = cmp.Or(opts.CompletionKey, "completion")
	opts.MessagesKey = cmp.Or(opts.MessagesKey, "messages")
	rd := &Reader{opts: opts}
	var err error
	rd.Reader, err = jsonl.NewReader(r, rd.parse, Rule.Action, opts.Options)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	return rd, nil
}

// Next returns the next accepted row; io.EOF at the end of the file; or an
// error wrapping jsonl.ErrRefused when a problem refuses the file.
func (rd *Reader) Next() (Example, error) {
	for len(rd.pending) == 0 {
		row, err := rd.Reader.Next()
		if errors.Is(err, io.EOF) {
			return Example{}, err
		}
		if err != nil {
			return Example{}, fmt.Errorf("dataset: %w", err)
		}
		rd.pending = row.Value
		rd.Lines++
		for i := range rd.pending {
			rd.pending[i].Line = row.Line
		}
	}
	ex := rd.pending[0]
	rd.pending = rd.pending[1:]
	return ex, nil
}

// Options are the reader's options with their defaults filled in.
func (rd *Reader) Options() Options { return rd.opts }

// parse reads one line into its rows.
func (rd *Reader) parse(raw []byte) ([]Example, []Problem) {
	var obj map[string]json.RawMessage
	if probs := jsonl.Decode(raw, &obj, RuleBadJSON, RuleMissingField); probs != nil {
		return nil, probs
	}
	if obj == nil {
		return nil, []Problem{{Rule: RuleBadJSON, Detail: "the line is JSON null, not an object"}}
	}
	var exs []Example
	var probs []Problem
	switch rd.opts.Format {
	case FormatPromptCompletion, FormatPrompt:
		exs, probs = rd.parsePromptCompletion(obj)
	case FormatMessages:
		exs, probs = rd.parseMessages(obj)
	case FormatAlpaca:
		exs, probs = rd.parseAlpaca(obj)
	default:
		exs, probs = rd.parseHH(obj)
	}
	if probs != nil {
		return nil, probs
	}
	for i := range exs {
		if p := rd.check(&exs[i]); p != nil {
			return nil, p
		}
	}
	return exs, nil
}

// text is a field that is a string or a list of turns.
type text struct {
	s     *string
	turns []chat.Message
}

// field reads a field that must be present (and not null).
func field(obj map[string]json.RawMessage, key string) (json.RawMessage, []Problem) {
	v, ok := obj[key]
	if !ok || string(v) == "null" {
		return nil, []Problem{{Rule: RuleMissingField, Detail: fmt.Sprintf("field %q is missing or null", key)}}
	}
	return v, nil
}

// stringField reads a field that must be a string; optional ones may be
// absent or null ("" then).
func stringField(obj map[string]json.RawMessage, key string, optional bool) (string, []Problem) {
	v, probs := field(obj, key)
	if probs != nil {
		if optional {
			return "", nil
		}
		return "", probs
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", []Problem{{Rule: RuleMissingField, Detail: fmt.Sprintf("field %q must be a string, not %s", key, jsonKind(v))}}
	}
	return s, nil
}

// textField reads a field that is a string or a list of {"role", "content"}.
func textField(obj map[string]json.RawMessage, key string) (text, []Problem) {
	v, probs := field(obj, key)
	if probs != nil {
		return text{}, probs
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return text{s: &s}, nil
	}
	var raw []map[string]json.RawMessage
	if json.Unmarshal(v, &raw) != nil {
		return text{}, []Problem{{Rule: RuleMissingField, Detail: fmt.Sprintf("field %q must be a string or a list of {\"role\", \"content\"} objects, not %s", key, jsonKind(v))}}
	}
	turns, probs := parseTurns(raw, key)
	return text{turns: turns}, probs
}

func parseTurns(raw []map[string]json.RawMessage, key string) ([]chat.Message, []Problem) {
	turns := make([]chat.Message, len(raw))
	for i, m := range raw {
		where := fmt.Sprintf("%s[%d]", key, i)
		if m == nil {
			return nil, []Problem{{Rule: RuleMissingField, Detail: where + " is null, not a {\"role\", \"content\"} object"}}
		}
		role, probs := stringField(m, "role", false)
		if probs != nil {
			probs[0].Detail = where + ": " + probs[0].Detail
			return nil, probs
		}
		content, probs := stringField(m, "content", false)
		if probs != nil {
			probs[0].Detail = where + ": " + probs[0].Detail
			return nil, probs
		}
		r, err := chat.ParseRole(role)
		if err != nil {
			return nil, []Problem{{Rule: RuleUnknownRole, Detail: where + ": " + err.Error()}}
		}
		turns[i] = chat.Message{Role: r, Content: content}
	}
	return turns, nil
}

func jsonKind(v json.RawMessage) string {
	switch s := strings.TrimSpace(string(v)); {
	case s == "":
		return "empty"
	case s[0] == '"':
		return "a string"
	case s[0] == '[':
		return "a list"
	case s[0] == '{':
		return "an object"
	case s == "true" || s == "false":
		return "a boolean"
	default:
		return "a number"
	}
}

// prompt makes a row's prompt from turns (checked) and its split.
func (rd *Reader) prompt(turns []chat.Message, where string) (Example, []Problem) {
	if err := chat.CheckPrompt(turns); err != nil {
		return Example{}, []Problem{{Rule: RuleBadConversation, Detail: where + ": " + err.Error()}}
	}
	for i, m := range turns {
		if len(turns) > 1 || m.Role != chat.User {
			if tag := hhTag(m.Content); tag != "" {
				return Example{}, []Problem{{Rule: RuleBadConversation,
					Detail: fmt.Sprintf("%s: turn %d holds %q, which would read as a new turn of the stored transcript; remove it", where, i, tag)}}
			}
		}
	}
	ex := Example{}
	ex.Prompt, ex.Turns = chat.Identity(turns)
	if ex.Turns == nil {
		// One user turn that is itself an HH transcript (a string prompt of
		// TRL data made from HH, most often) keeps its text and gets its
		// turns, as --format hh stores it: templates render the
		// conversation, not the transcript inside a new one.
		if t, err := chat.ParseHHPrompt(ex.Prompt); err == nil {
			ex.Turns = t
		}
	}
	return ex, nil
}

func hhTag(s string) string {
	for _, tag := range []string{"\n\nHuman:", "\n\nAssistant:"} {
		if strings.Contains(s, tag) {
			return tag
		}
	}
	return ""
}

func (rd *Reader) parsePromptCompletion(obj map[string]json.RawMessage) ([]Example, []Problem) {
	p, probs := textField(obj, rd.opts.PromptKey)
	if probs != nil {
		return nil, probs
	}
	turns := p.turns
	if p.s != nil {
		turns = []chat.Message{{Role: chat.User, Content: *p.s}}
	}
	ex, probs := rd.prompt(turns, "field "+fmt.Sprintf("%q", rd.opts.PromptKey))
	if probs != nil {
		return nil, probs
	}
	if rd.opts.Format == FormatPrompt || rd.opts.Kind == Prompt {
		return []Example{ex}, nil
	}
	c, probs := textField(obj, rd.opts.CompletionKey)
	if probs != nil {
		return nil, probs
	}
	if c.s != nil {
		ex.Target = *c.s
		return []Example{ex}, requireTarget(ex.Target, fmt.Sprintf("field %q", rd.opts.CompletionKey))
	}
	if len(c.turns) != 1 || c.turns[0].Role != chat.Assistant {
		roles := make([]string, len(c.turns))
		for i, m := range c.turns {
			roles[i] = string(m.Role)
		}
		return nil, []Problem{{Rule: RuleBadConversation,
			Detail: fmt.Sprintf("field %q is [%s]; a completion is one assistant turn", rd.opts.CompletionKey, strings.Join(roles, ", "))}}
	}
	ex.Target = c.turns[0].Content
	return []Example{ex}, requireTarget(ex.Target, fmt.Sprintf("field %q", rd.opts.CompletionKey))
}

// requireTarget refuses an empty target: a demonstration of nothing.
func requireTarget(t, name string) []Problem {
	if strings.TrimSpace(t) == "" {
		return []Problem{{Rule: RuleEmptyTarget, Detail: name + " is empty; a demonstration needs a target (import prompts alone with --kind prompt)"}}
	}
	return nil
}

func (rd *Reader) parseMessages(obj map[string]json.RawMessage) ([]Example, []Problem) {
	v, probs := field(obj, rd.opts.MessagesKey)
	if probs != nil {
		return nil, probs
	}
	var raw []map[string]json.RawMessage
	if json.Unmarshal(v, &raw) != nil {
		return nil, []Problem{{Rule: RuleMissingField, Detail: fmt.Sprintf("field %q must be a list of {\"role\", \"content\"} objects, not %s", rd.opts.MessagesKey, jsonKind(v))}}
	}
	turns, probs := parseTurns(raw, rd.opts.MessagesKey)
	if probs != nil {
		return nil, probs
	}
	key := fmt.Sprintf("field %q", rd.opts.MessagesKey)
	last := len(turns) - 1
	for last >= 0 && turns[last].Role != chat.Assistant {
		last--
	}
	endsWithTarget := last >= 0 && last == len(turns)-1
	if rd.opts.Kind == Prompt {
		// The prompt is what comes before the final reply, if there is one.
		if !endsWithTarget {
			last = len(turns)
		}
		ex, probs := rd.prompt(turns[:last], key)
		return []Example{ex}, probs
	}
	if !endsWithTarget {
		what := "has no turns"
		if len(turns) > 0 {
			what = fmt.Sprintf("ends with a %s turn", turns[len(turns)-1].Role)
		}
		return nil, []Problem{{Rule: RuleNoTarget, Detail: fmt.Sprintf("%s %s; a demonstration ends with the assistant turn it teaches (import prompts alone with --kind prompt)", key, what)}}
	}
	targets := []int{last}
	if rd.opts.AllTurns {
		targets = targets[:0]
		for i, m := range turns {
			if m.Role == chat.Assistant {
				targets = append(targets, i)
			}
		}
	}
	exs := make([]Example, 0, len(targets))
	for _, i := range targets {
		ex, probs := rd.prompt(turns[:i], fmt.Sprintf("%s (the prompt of turn %d)", key, i))
		if probs != nil {
			return nil, probs
		}
		ex.Target = turns[i].Content
		if probs := requireTarget(ex.Target, fmt.Sprintf("%s turn %d", key, i)); probs != nil {
			return nil, probs
		}
		exs = append(exs, ex)
	}
	return exs, nil
}

func (rd *Reader) parseAlpaca(obj map[string]json.RawMessage) ([]Example, []Problem) {
	instr, probs := stringField(obj, "instruction", false)
	if probs != nil {
		return nil, probs
	}
	input, probs := stringField(obj, "input", true)
	if probs != nil {
		return nil, probs
	}
	p := instr
	if strings.TrimSpace(input) != "" {
		p = instr + "\n\n" + input
	}
	ex, probs := rd.prompt([]chat.Message{{Role: chat.User, Content: p}}, `field "instruction"`)
	if probs != nil || rd.opts.Kind == Prompt {
		return []Example{ex}, probs
	}
	if ex.Target, probs = stringField(obj, "output", false); probs != nil {
		return nil, probs
	}
	return []Example{ex}, requireTarget(ex.Target, `field "output"`)
}

// assistantTag starts an assistant turn in an HH-RLHF transcript.
const assistantTag = "\n\nAssistant:"

func (rd *Reader) parseHH(obj map[string]json.RawMessage) ([]Example, []Problem) {
	chosen, probs := stringField(obj, "chosen", false)
	if probs != nil {
		return nil, probs
	}
	rejected, probs := stringField(obj, "rejected", true)
	if probs != nil {
		return nil, probs
	}
	// The prompt is the transcript up to its last assistant turn, the same
	// cut as 'labels import --format hh' makes of a pair, so that both
	// imports store the same prompt.
	var prompt string
	ok := false
	if rejected != "" && rejected != chosen {
		prompt, _, _, _, ok = chat.SplitHH(chosen, rejected)
	} else if cut := strings.LastIndex(chosen, assistantTag); cut >= 0 {
		prompt, ok = chosen[:cut+len(assistantTag)], true
	}
	if !ok {
		return nil, []Problem{{Rule: RuleBadTranscript, Detail: `the chosen transcript has no "\n\nAssistant:" turn (shared with the rejected one), so there is no prompt`}}
	}
	end := len(prompt)
	turns, err := chat.ParseHHPrompt(chosen[:end])
	if err != nil {
		return nil, []Problem{{Rule: RuleBadTranscript, Detail: "the chosen transcript's prompt: " + err.Error()}}
	}
	// HH prompts keep the transcript's own text (as labels import stores
	// them), with their turns for the templates that render turns.
	ex := Example{Prompt: chosen[:end], Turns: turns}
	if rd.opts.Kind == Prompt {
		return []Example{ex}, nil
	}
	ex.Target = chosen[end:]
	if strings.Contains(ex.Target, "\n\nHuman:") {
		return nil, []Problem{{Rule: RuleBadTranscript, Detail: `the chosen transcript goes on past its last assistant turn: its final response holds "\n\nHuman:"`}}
	}
	return []Example{ex}, requireTarget(ex.Target, "the chosen response")
}

// check applies the rules every format shares and draws the split.
func (rd *Reader) check(ex *Example) []Problem {
	var probs []Problem
	texts := []struct{ name, s string }{{"the prompt", ex.Prompt}, {"the target", ex.Target}}
	for _, t := range texts {
		if i := strings.IndexByte(t.s, 0); i >= 0 {
			probs = append(probs, Problem{Rule: RuleNUL,
				Detail: fmt.Sprintf(`%s holds a NUL character (\u0000) at character %d; remove it`, t.name, utf8.RuneCountInString(t.s[:i]))})
		}
	}
	if probs != nil {
		return probs
	}
	if strings.TrimSpace(ex.Prompt) == "" {
		return []Problem{{Rule: RuleEmptyPrompt, Detail: "the prompt is empty"}}
	}
	if n := len(ex.Turns); n > 0 && strings.TrimSpace(ex.Turns[n-1].Content) == "" {
		return []Problem{{Rule: RuleEmptyPrompt, Detail: "the prompt's last user turn is empty: there is nothing to answer"}}
	}
	for _, t := range texts {
		if n := utf8.RuneCountInString(t.s); n > rd.opts.MaxChars {
			probs = append(probs, Problem{Rule: RuleTooLong, Detail: fmt.Sprintf("%s has %d characters, over the limit of %d (--max-chars)", t.name, n, rd.opts.MaxChars)})
		}
	}
	ex.Split = rd.opts.Split
	if ex.Split == "" {
		ex.Split = SplitOf(ex.Prompt, rd.opts.HeldoutFraction)
	}
	return probs
}
