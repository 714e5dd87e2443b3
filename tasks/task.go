package tasks

import (
	"fmt"
	"slices"
	"strings"

	"github.com/instructflow/instructflow/tokenizer"
)

// Task is a built-in task a run can name (data.task): the tokenizer its
// data is written in. A task may also have a gold judge (Judged) and
// simulated labelers (Simulated); a run on a user's own model and data has
// no task, and its tokenizer is its base model's.
type Task interface {
	Name() string
	Tokenizer() tokenizer.Tokenizer
}

// Judged is a task whose responses a gold judge scores in [0, 1]; the
// evaluation stage uses it, the reward model never sees it.
type Judged interface {
	Task
	Judge(prompt, response string) (float64, error)
}

// Simulated is a task whose labeling batches a panel of simulated labelers
// can rank (a demo without people).
type Simulated interface {
	Task
	// LabelItem ranks one batch item: who ranked it and the rank of each
	// response (1 = best; ties share a rank).
	LabelItem(seed uint64, item int, prompt string, responses []string, unreliable float64) (labeler string, ranks []int)
}

var registry = []Task{strops{}}

// Names lists the built-in tasks.
func Names() []string {
	out := make([]string, len(registry))
	for i, t := range registry {
		out[i] = t.Name()
	}
	return out
}

// Lookup returns the task called name.
func Lookup(name string) (Task, error) {
	i := slices.IndexFunc(registry, func(t Task) bool { return t.Name() == name })
	if i < 0 {
		return nil, fmt.Errorf("tasks: no task %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return registry[i], nil
}

// strops is the demo task of this package.
type strops struct{}

func (strops) Name() string                   { return "strops" }
func (strops) Tokenizer() tokenizer.Tokenizer { return Tokenizer() }
func (strops) Judge(prompt, response string) (float64, error) {
	return Judge(prompt, response)
}
func (strops) LabelItem(seed uint64, item int, prompt string, responses []string, unreliable float64) (string, []int) {
	return LabelItem(seed, item, prompt, responses, unreliable)
}
