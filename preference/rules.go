package preference

import "github.com/instructflow/instructflow/internal/jsonl"

// Rule names one validation rule of the import.
type Rule string

// The validation rules. Their actions are in rules, below.
const (
	RuleBadJSON            Rule = "bad_json"
	RuleMissingField       Rule = "missing_field"
	RuleNotPermutation     Rule = "not_permutation"
	RuleDuplicateResponses Rule = "duplicate_responses"
	RuleIdenticalPair      Rule = "identical_pair"
	RuleBadTranscript      Rule = "bad_transcript"
	RuleEmptyPrompt        Rule = "empty_prompt"
	RuleTooLong            Rule = "too_long"
	RuleEmptyResponse      Rule = "empty_response"
	RulePromptMismatch     Rule = "prompt_mismatch"
	RuleNUL                Rule = "nul_character"
	RuleEmptyLabeler       Rule = "empty_labeler"
	RuleTooManyResponses   Rule = "too_many_responses"
)

// Action is what a problem does to its row and file.
type Action = jsonl.Action

const (
	// ActionRefuse refuses the whole file (with --skip-invalid: skips the row);
	// reading stops at the first such problem unless the reader keeps going.
	ActionRefuse = jsonl.Refuse
	// ActionSkip leaves the row out and imports the rest.
	ActionSkip = jsonl.Skip
	// ActionFlag keeps the row, marked with the rule's name, for the audit.
	ActionFlag = jsonl.Flag
)

var rules = jsonl.RuleTable[Rule]{
	{RuleBadJSON, ActionRefuse, "the line is not a JSON object (or not UTF-8)"},
	{RuleMissingField, ActionRefuse, "a required field is missing, null or of the wrong type"},
	{RuleNUL, ActionRefuse, `a string holds a NUL character (\u0000), which Postgres text cannot store`},
	{RuleEmptyLabeler, ActionRefuse, "the labeler is empty or blank (pairwise: leave the field out to use --labeler)"},
	{RuleNotPermutation, ActionRefuse, "ranking is not a permutation of the response indices (or fewer than 2 responses)"},
	{RuleTooManyResponses, ActionRefuse, "more responses than --max-k (audit, reward model and export are quadratic in K)"},
	{RuleDuplicateResponses, ActionRefuse, "two responses of one ranking are identical"},
	{RuleIdenticalPair, ActionRefuse, "chosen is identical to rejected"},
	{RuleBadTranscript, ActionRefuse, `HH transcripts share no "\n\nAssistant:" turn`},
	{RuleEmptyPrompt, ActionRefuse, "the prompt, or an HH prompt's last human turn, is empty or blank"},
	{RuleTooLong, ActionSkip, "a prompt or response is longer than --max-chars"},
	{RuleEmptyResponse, ActionFlag, "a response is empty or blank"},
	{RulePromptMismatch, ActionFlag, "HH transcripts do not share their prompt (their last assistant turns start at different places)"},
}

// Action is what the rule does (--skip-invalid, in the reader, turns
// refusals into skips).
func (r Rule) Action() Action { return rules.Action(r) }

// RulesHelp is the table of rules for `labels import --help`.
func RulesHelp() string { return rules.Help() }

// Problem is one thing wrong with one line of an import.
type Problem = jsonl.Problem[Rule]
