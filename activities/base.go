package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/modelstore"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/sampling"
	"github.com/instructflow/instructflow/tasks"
	"github.com/instructflow/instructflow/tokenizer"
)

// baseModel reads the run's base model, the checkpoint `model import`
// stored, with only the files want accepts (all when nil). Its manifest
// must be the one the run was started with (model.base_sha256): a missing
// or altered model is not retried.
func (a *Activities) baseModel(ctx context.Context, m runspec.Model, want func(string) bool) (map[string][]byte, error) {
	files, err := modelstore.Files(ctx, a.Objects, m, want)
	if errors.Is(err, errkind.Corrupt) || errors.Is(err, errkind.NotFound) {
		return nil, fmt.Errorf("%w: base model: %w; import the model again under a new name and start a new run", errkind.BadInput, err)
	}
	return files, err
}

// tokenizerOf returns the tokenizer of a run: its base model's, else its
// task's.
func (a *Activities) tokenizerOf(ctx context.Context, s runspec.Spec) (tokenizer.Tokenizer, error) {
	if s.Model.Base == "" {
		task, err := tasks.Lookup(s.Data.Task)
		if err != nil {
			return nil, errkind.BadInputf("data.task: %v", err)
		}
		return task.Tokenizer(), nil
	}
	files, err := a.baseModel(ctx, s.Model, func(name string) bool { return slices.Contains(tokenizer.FileNames, name) })
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromFiles(files)
	if err != nil {
		return nil, errkind.BadInputf("base model %s: tokenizer: %v", s.Model.Base, err)
	}
	return tok, nil
}

// judgeOf returns the gold judge of the run's task; ok is false when the
// task has none (or there is no task).
func judgeOf(s runspec.Spec) (judge sampling.Judge, ok bool) {
	task, err := tasks.Lookup(s.Data.Task)
	if err != nil {
		return nil, false
	}
	j, ok := task.(tasks.Judged)
	if !ok {
		return nil, false
	}
	return j.Judge, true
}
