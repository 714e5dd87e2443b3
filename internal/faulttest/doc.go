// Package faulttest is the durable pipeline's end-to-end proof: real
// Temporal, Postgres and versitygw on a private stack, workers as separate
// processes of the built binary, and the CLI driven as a user would. Its
// tests kill, stop and cut off those processes mid-run and check that every
// run finishes with bit-identical checkpoints. They need
// INSTRUCTFLOW_INTEGRATION=1 (make test sets it) and run without -race.
package faulttest
