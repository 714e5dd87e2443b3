// Command instructflow runs the InstructGPT recipe (SFT -> reward model ->
// PPO) as one durable pipeline: the CLI, the worker and the local stack.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/instructflow/instructflow/errkind"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		report(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	root := newRootCmd()
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// report prints a command's error and, for the kinds that have one, what
// the user can do about it: libraries say what went wrong, the edge says
// what to do.
func report(w io.Writer, err error) {
	fmt.Fprintln(w, "instructflow:", err)
	if a := advice(err); a != "" {
		fmt.Fprintln(w, "instructflow:", a)
	}
}

func advice(err error) string {
	switch {
	case errors.Is(err, errkind.Corrupt):
		return "stored bytes no longer match the hash recorded for them and are not used; rerun what wrote them (in a new run for a checkpoint, a new snapshot for labels)"
	case errors.Is(err, errkind.Unavailable):
		return "is the service running? `instructflow dev` starts the local stack; otherwise fix its address (`instructflow config show`)"
	case errors.Is(err, errkind.Conflict):
		return "the name is taken by a record with other content: choose another name"
	}
	return ""
}
