// Package chat is conversations as the data formats give them (system,
// user and assistant turns, or HH-RLHF transcripts) and the chat templates
// that render one to the text a model reads, the same way in every stage.
//
// A prompt is stored as text, with its turns beside it when it has more
// than one user turn (or a system turn): Identity gives both. The "plain"
// template renders the stored text as it is, which is how every stage
// read prompts before templates existed; the others render the turns.
package chat

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"unicode"
)

// Role is who speaks a turn.
type Role string

const (
	System    Role = "system"
	User      Role = "user"
	Assistant Role = "assistant"
)

// ParseRole checks a role named by a data file.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case System, User, Assistant:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: use system, user or assistant", s)
}

// turn is "a user turn", "an assistant turn", ...
func (r Role) turn() string {
	if r == Assistant {
		return "an assistant"
	}
	return "a " + string(r)
}

// Message is one turn.
type Message struct {
	Role    Role   `json:"role"`
	Content string `json:"content"`
}

// CheckPrompt says what is wrong with msgs as a prompt: a prompt has at
// least one turn, a system turn only first, and ends with a user turn.
func CheckPrompt(msgs []Message) error {
	if len(msgs) == 0 {
		return errors.New("the conversation has no turns")
	}
	for i, m := range msgs {
		if m.Role == System && i > 0 {
			return fmt.Errorf("turn %d is a system turn; only the first turn may be", i)
		}
	}
	if last := msgs[len(msgs)-1]; last.Role != User {
		return fmt.Errorf("the prompt ends with %s turn; it must end with a user turn", last.Role.turn())
	}
	return nil
}

// Identity is how a prompt of turns msgs (valid for CheckPrompt) is
// stored: a single user turn is its content, with no turns beside it (the
// same prompt as a plain string); any other conversation is its HH
// rendering, with the turns.
func Identity(msgs []Message) (text string, turns []Message) {
	if len(msgs) == 1 && msgs[0].Role == User {
		return msgs[0].Content, nil
	}
	return renderHH(msgs), msgs
}

// Turns is the conversation of a stored prompt: its turns, or one user
// turn of its text.
func Turns(text string, turns []Message) []Message {
	if turns != nil {
		return turns
	}
	return []Message{{Role: User, Content: text}}
}

// HH-RLHF transcript tags.
const (
	humanTag     = "\n\nHuman:"
	assistantTag = "\n\nAssistant:"
)

// ParseHH parses an HH-RLHF transcript ("\n\nHuman: ...\n\nAssistant:
// ..."): text before the first tag is a system turn; each turn's content
// is its text with surrounding white space trimmed. A transcript that ends
// with a bare "\n\nAssistant:" (a prompt) ends with an empty assistant
// turn.
func ParseHH(s string) ([]Message, error) {
	var msgs []Message
	var role Role
	start := 0 // of the current turn's content
	for i := 0; ; {
		j := strings.Index(s[i:], "\n\n")
		if j < 0 {
			break
		}
		j += i
		next := Role("")
		switch {
		case strings.HasPrefix(s[j:], humanTag):
			next = User
		case strings.HasPrefix(s[j:], assistantTag):
			next = Assistant
		default:
			i = j + 1
			continue
		}
		if role != "" {
			msgs = append(msgs, Message{Role: role, Content: strings.TrimSpace(s[start:j])})
		} else if sys := strings.TrimSpace(s[:j]); sys != "" {
			msgs = append(msgs, Message{Role: System, Content: sys})
		}
		role, start = next, j+len(humanTag)
		if next == Assistant {
			start = j + len(assistantTag)
		}
		i = start
	}
	if role == "" {
		return nil, errors.New(`the transcript has no "\n\nHuman:" turn`)
	}
	msgs = append(msgs, Message{Role: role, Content: strings.TrimSpace(s[start:])})
	if first := msgs[0]; first.Role == Assistant || first.Role == System && msgs[1].Role == Assistant {
		return nil, errors.New(`the transcript starts with an assistant turn; it must start with "\n\nHuman:"`)
	}
	return msgs, nil
}

// SplitHH splits an HH-RLHF pair into the shared prompt (up to and including
// the last "\n\nAssistant:" that both transcripts share) and the two final
// responses. mismatch is true when either transcript's own last assistant
// turn starts elsewhere, i.e. the two transcripts do not share their prompt.
func SplitHH(chosen, rejected string) (prompt, c, r string, mismatch, ok bool) {
	common := 0
	for common < len(chosen) && common < len(rejected) && chosen[common] == rejected[common] {
		common++
	}
	cut := strings.LastIndex(chosen[:common], assistantTag)
	if cut < 0 {
		return "", "", "", false, false
	}
	end := cut + len(assistantTag)
	prompt = chosen[:end]
	mismatch = strings.LastIndex(chosen, assistantTag) != cut || strings.LastIndex(rejected, assistantTag) != cut
	return prompt, chosen[end:], rejected[end:], mismatch, true
}

// ParseHHPrompt parses the prompt of an HH-RLHF transcript: the text up to
// and including its last "\n\nAssistant:".
func ParseHHPrompt(prompt string) ([]Message, error) {
	if !strings.HasSuffix(prompt, assistantTag) {
		return nil, errors.New(`the prompt does not end with "\n\nAssistant:"`)
	}
	msgs, err := ParseHH(prompt)
	if err != nil {
		return nil, err
	}
	msgs = msgs[:len(msgs)-1] // the empty turn of the final tag
	if err := CheckPrompt(msgs); err != nil {
		return nil, err
	}
	return msgs, nil
}

// Template renders a conversation to model text.
type Template interface {
	// Render renders msgs, which end with a user turn, followed by the
	// start of the assistant's reply; text is the prompt as stored (see
	// Identity). Only a user template can fail.
	Render(msgs []Message, text string) (string, error)
	// Target is a target (a demonstration, a label's response, a sample)
	// as it follows the rendered prompt, before the tokenizer's end of text.
	Target(t string) string
	// Reply is a sampled continuation of a rendered prompt cut where the
	// template ends the assistant's turn (hh: at "\n\nHuman:", chatml:
	// at "<|im_end|>"), as it is stored and shown.
	Reply(sample string) string
}

// The built-in templates.
var (
	Plain  Template = plain{}
	HH     Template = hh{}
	ChatML Template = chatml{}
)

// Builtin names the built-in templates.
var Builtin = map[string]Template{"plain": Plain, "hh": HH, "chatml": ChatML}

// ParseTemplate returns a built-in template by name, or, when s holds
// "{{", a Go text/template run on {{.Messages}} (each .Role and
// .Content) and {{.Text}}; it must render a sample conversation.
func ParseTemplate(s string) (Template, error) {
	if t, ok := Builtin[s]; ok {
		return t, nil
	}
	if !strings.Contains(s, "{{") {
		return nil, fmt.Errorf("unknown template %q: use plain, hh, chatml or a Go text/template (with {{range .Messages}}...{{end}})", s)
	}
	t, err := template.New("chat").Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	u := user{t: t}
	sample := []Message{{System, "Be brief."}, {User, "Hi."}, {Assistant, "Hello."}, {User, "Bye?"}}
	if _, err := u.Render(sample, renderHH(sample)); err != nil {
		return nil, fmt.Errorf("template: a sample conversation: %w", err)
	}
	return u, nil
}

type plain struct{}

func (plain) Render(_ []Message, text string) (string, error) { return text, nil }
func (plain) Target(t string) string                          { return t }
func (plain) Reply(s string) string                           { return s }

type hh struct{}

func (hh) Render(msgs []Message, _ string) (string, error) {
	return renderHH(msgs), nil
}

func renderHH(msgs []Message) string {
	var b strings.Builder
	for _, m := range msgs {
		switch m.Role {
		case System:
			b.WriteString(m.Content)
		case User:
			b.WriteString(humanTag + " " + m.Content)
		default:
			b.WriteString(assistantTag + " " + m.Content)
		}
	}
	b.WriteString(assistantTag)
	return b.String()
}

// Target starts the reply with a space after "Assistant:", unless it
// starts with white space already (as HH-RLHF's responses do).
func (hh) Target(t string) string {
	if t == "" || unicode.IsSpace(rune(t[0])) {
		return t
	}
	return " " + t
}

func (hh) Reply(s string) string { return cutAt(s, humanTag) }

// cutAt is s up to the first stop.
func cutAt(s, stop string) string {
	if i := strings.Index(s, stop); i >= 0 {
		return s[:i]
	}
	return s
}

type chatml struct{}

func (chatml) Render(msgs []Message, _ string) (string, error) {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "<|im_start|>%s\n%s<|im_end|>\n", m.Role, m.Content)
	}
	b.WriteString("<|im_start|>assistant\n")
	return b.String(), nil
}

func (chatml) Target(t string) string { return t + "<|im_end|>" }
func (chatml) Reply(s string) string  { return cutAt(s, "<|im_end|>") }

type user struct{ t *template.Template }

func (u user) Render(msgs []Message, text string) (string, error) {
	var b bytes.Buffer
	err := u.t.Execute(&b, struct {
		Messages []Message
		Text     string
	}{msgs, text})
	if err != nil {
		return "", fmt.Errorf("chat: template: %w", err)
	}
	return b.String(), nil
}

func (user) Target(t string) string { return t }
func (user) Reply(s string) string  { return s }
