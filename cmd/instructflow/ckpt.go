package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/storage/objectstore"
)

func newCkptCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ckpt",
		Short: "Put and get verified checkpoints in the object store (for external trainers)",
		Long: `ckpt moves checkpoints between a local folder and the object store in
InstructFlow's one format: KEY is a checkpoint's folder, PREFIX/STEP/ (e.g.
runs/r1/sft/40/), holding its files and manifest.json (each file's size and
SHA-256), written last. A checkpoint without its manifest does not exist.

External trainers (docs/trainer-contract.md) in any language use it to commit
what they save and to read what they start from. The object store's settings
come from the environment (INSTRUCTFLOW_S3_*), as the worker passes them.`,
	}
	cmd.AddCommand(newCkptPutCmd(a), newCkptGetCmd(a))
	return cmd
}

// ckptResult is what put and get print.
type ckptResult struct {
	Key    string `json:"key"`
	Step   int64  `json:"step"`
	SHA256 string `json:"sha256"`
	Files  int    `json:"files"`
	Bytes  int64  `json:"bytes"`
}

// ckptCmd builds a ckpt subcommand: it parses KEY (args[keyArg]) and
// prints what do returns; do opens the object store with store once its
// local side is checked.
func ckptCmd(a *app, c *cobra.Command, keyArg int, do func(cmd *cobra.Command, store func() (checkpoint.Store, error), step int64, args []string) (ckptResult, error)) *cobra.Command {
	c.Args = cobra.ExactArgs(2)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		prefix, step, err := checkpoint.ParseKey(args[keyArg])
		if err != nil {
			return err
		}
		store := func() (checkpoint.Store, error) {
			cfg, err := a.config()
			if err != nil {
				return checkpoint.Store{}, err
			}
			objects, err := objectstore.Open(cmd.Context(), cfg.S3)
			return checkpoint.Store{Blobs: objects, Prefix: prefix}, err
		}
		res, err := do(cmd, store, step, args)
		if err != nil {
			return err
		}
		res.Key, res.Step = prefix+fmt.Sprint(step)+"/", step
		return a.printer(cmd).Print(res, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "%s: %d files, %d bytes, manifest SHA-256 %s\n", res.Key, res.Files, res.Bytes, res.SHA256)
			return err
		})
	}
	return c
}

func newCkptPutCmd(a *app) *cobra.Command {
	return ckptCmd(a, &cobra.Command{
		Use:   "put DIR KEY",
		Short: "Commit the files of a local folder as the checkpoint KEY (files first, manifest last)",
		Long: `put uploads every file of DIR (a flat folder; a manifest.json in it is
ignored), then the manifest that commits them, and prints its SHA-256.
Putting the same files again changes nothing; a committed checkpoint with
other content is never replaced.`,
	}, 1, func(cmd *cobra.Command, store func() (checkpoint.Store, error), step int64, args []string) (ckptResult, error) {
		files, err := checkpoint.ReadDir(args[0])
		if err != nil {
			return ckptResult{}, err
		}
		s, err := store()
		if err != nil {
			return ckptResult{}, err
		}
		id, err := s.Save(cmd.Context(), step, files)
		if err != nil {
			return ckptResult{}, err
		}
		res := ckptResult{SHA256: id, Files: len(files)}
		for _, f := range files {
			res.Bytes += int64(len(f.Data))
		}
		return res, nil
	})
}

func newCkptGetCmd(a *app) *cobra.Command {
	var want string
	c := ckptCmd(a, &cobra.Command{
		Use:   "get KEY DIR",
		Short: "Read the checkpoint KEY into a local folder, verifying every file",
		Long: `get reads the committed checkpoint KEY, checks every file against its
manifest (and the manifest against --sha256 when given) and writes the files
into DIR, which must not hold any of them yet. Nothing is written unless
everything verifies.`,
	}, 0, func(cmd *cobra.Command, store func() (checkpoint.Store, error), step int64, args []string) (ckptResult, error) {
		s, err := store()
		if err != nil {
			return ckptResult{}, err
		}
		cp, err := s.Load(cmd.Context(), step)
		if err != nil {
			return ckptResult{}, err
		}
		if want != "" && cp.ID != want {
			return ckptResult{}, fmt.Errorf("ckpt get: %s has manifest SHA-256 %s, not %s as expected: %w", s.Key(step), cp.ID, want, errkind.Corrupt)
		}
		if err := checkpoint.WriteDir(args[1], cp); err != nil {
			return ckptResult{}, err
		}
		res := ckptResult{SHA256: cp.ID, Files: len(cp.Files)}
		for _, d := range cp.Files {
			res.Bytes += int64(len(d))
		}
		return res, nil
	})
	c.Flags().StringVar(&want, "sha256", "", "the manifest SHA-256 the checkpoint must have")
	return c
}
