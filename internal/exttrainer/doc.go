// Package exttrainer holds the end-to-end tests of external trainers
// (docs/trainer-contract.md): runs whose stages train on the reference
// PyTorch trainer (trainers/torch), under torchrun with 2 processes (gloo)
// or alone, next to the built-in stages; its loss curve against the
// built-in trainer's; bad input; kill -9 of the trainer's process group and
// of the worker. It drives the built binary against the shared test stack
// and needs Debian's python3-torch.
package exttrainer
