package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/errkind"
)

// Every command prints through one printer: --output json and its alias
// --json give the same JSON, text is the default, and a format it does not
// know is refused before the command runs.
func TestOutputFormats(t *testing.T) {
	asJSON, _, err := runCLI(t, "config", "show", "--output", "json")
	var v map[string]any
	if err != nil || json.Unmarshal([]byte(asJSON), &v) != nil || v["temporal"] == nil {
		t.Fatalf("--output json: %v\n%s", err, asJSON)
	}
	if alias, _, err := runCLI(t, "config", "show", "--json"); err != nil || alias != asJSON {
		t.Errorf("--json printed other output than --output json: %v\n%s", err, alias)
	}
	text, _, err := runCLI(t, "config", "show")
	if err != nil || json.Valid([]byte(text)) || !strings.Contains(text, "temporal:") {
		t.Errorf("the default is not the text (YAML) form: %v\n%s", err, text)
	}
	if _, _, err := runCLI(t, "config", "show", "--output", "yaml"); err == nil || !strings.Contains(err.Error(), "use text or json") {
		t.Errorf("--output yaml: %v, want a refusal naming the formats", err)
	}
}

// The CLI, not the library, adds what to do about an error of a kind.
func TestErrorAdvice(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("checkpoint: load runs/r/sft/3/: file model.safetensors: %w", errkind.Corrupt), "rerun what wrote them"},
		{fmt.Errorf("postgres: snapshot x: %w", errkind.Conflict), "choose another name"},
		{fmt.Errorf("postgres: connect to 127.0.0.1:5432: %w: dial tcp: connection refused", errkind.Unavailable), "`instructflow dev` starts the local stack"},
	} {
		var b strings.Builder
		report(&b, tc.err)
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], tc.err.Error()) || !strings.Contains(lines[1], tc.want) {
			t.Errorf("report(%v) =\n%s\nwant the error, then advice containing %q", tc.err, b.String(), tc.want)
		}
	}
	var b strings.Builder
	report(&b, errors.New("run start: give the run spec with -f FILE"))
	if strings.Count(b.String(), "\n") != 1 {
		t.Errorf("an error of no kind got advice:\n%s", b.String())
	}
}
