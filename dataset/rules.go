package dataset

import "github.com/instructflow/instructflow/internal/jsonl"

// Rule names one validation rule of the import.
type Rule string

// The validation rules; their actions are in rules, below.
const (
	RuleBadJSON         Rule = "bad_json"
	RuleMissingField    Rule = "missing_field"
	RuleNUL             Rule = "nul_character"
	RuleUnknownRole     Rule = "unknown_role"
	RuleBadConversation Rule = "bad_conversation"
	RuleNoTarget        Rule = "no_target"
	RuleBadTranscript   Rule = "bad_transcript"
	RuleEmptyPrompt     Rule = "empty_prompt"
	RuleEmptyTarget     Rule = "empty_target"
	RuleTooLong         Rule = "too_long"
)

// Problem is one thing wrong with one line of an import.
type Problem = jsonl.Problem[Rule]

// Action is what a problem does to its row and file.
type Action = jsonl.Action

var rules = jsonl.RuleTable[Rule]{
	{RuleBadJSON, jsonl.Refuse, "the line is not a JSON object (or not UTF-8)"},
	{RuleMissingField, jsonl.Refuse, "a required field is missing, null or of the wrong type"},
	{RuleNUL, jsonl.Refuse, `a string holds a NUL character (\u0000), which Postgres text cannot store`},
	{RuleUnknownRole, jsonl.Refuse, "a turn's role is not system, user or assistant"},
	{RuleBadConversation, jsonl.Refuse, "a prompt's turns do not end with a user turn, a system turn is not first, or a completion is not one assistant turn"},
	{RuleNoTarget, jsonl.Refuse, "a conversation imported as demonstrations does not end with an assistant turn"},
	{RuleBadTranscript, jsonl.Refuse, `an HH transcript has no "\n\nAssistant:" turn, or does not start with "\n\nHuman:"`},
	{RuleEmptyPrompt, jsonl.Refuse, "the prompt, or its last user turn, is empty or blank"},
	{RuleEmptyTarget, jsonl.Refuse, "a demonstration's target is empty or blank"},
	{RuleTooLong, jsonl.Skip, "a prompt or target is longer than --max-chars (with --all-turns: the whole line)"},
}

// Action is what the rule does (--skip-invalid, in the reader, turns
// refusals into skips).
func (r Rule) Action() Action { return rules.Action(r) }

// RulesHelp is the table of rules for `data import --help`.
func RulesHelp() string { return rules.Help() }
