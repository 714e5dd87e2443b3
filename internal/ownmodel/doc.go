// Package ownmodel holds the end-to-end test of a run on a user's own model:
// a Hugging Face GPT-2 folder (F16, two shards, its own byte-level BPE
// tokenizer) imported with `instructflow model import`, a pipeline run whose
// spec names only model.base (and the demo data), and the policy exported
// back to a Hugging Face folder whose weights and logits are the engine's.
// It drives the built binary against the shared test stack.
package ownmodel
