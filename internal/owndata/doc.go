// Package owndata holds the end-to-end test of a run on a user's own data:
// the demo task written out as the files people have (prompt-completion
// and prompt-only JSONL, pairwise preference JSONL), imported through the
// generic path (`data import`, `labels import`, `labels snapshot`, no task
// named), and a pipeline run that names only those datasets and that
// snapshot, evaluated by its reward model and by people (the simulated
// labelers answer the human evaluation's batch) beside the task's gold
// judge. It drives the built binary against the shared test stack.
package owndata
