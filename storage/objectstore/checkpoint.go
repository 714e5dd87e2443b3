package objectstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/storage"
)

// ManifestName is the file that commits a checkpoint. It is written last.
const ManifestName = "manifest.json"

// Ref names one checkpoint: a run's stage at a step.
type Ref struct {
	Run   string `json:"run"`
	Stage string `json:"stage"`
	Step  int64  `json:"step"`
}

// Validate checks that the ref can only build keys under its own prefix.
func (r Ref) Validate() error {
	if err := storage.ValidateID("run", r.Run); err != nil {
		return err
	}
	if err := storage.ValidateID("stage", r.Stage); err != nil {
		return err
	}
	if r.Step < 0 {
		return fmt.Errorf("invalid step %d: steps start at 0", r.Step)
	}
	return nil
}

// Prefix is the checkpoint's folder: runs/<run>/<stage>/<step>/.
func (r Ref) Prefix() string {
	return stagePrefix(r.Run, r.Stage) + strconv.FormatInt(r.Step, 10) + "/"
}

func (r Ref) String() string { return r.Prefix() }

func stagePrefix(run, stage string) string { return "runs/" + run + "/" + stage + "/" }

// File is one file of a checkpoint.
type File struct {
	Name string
	Data []byte
}

// Manifest lists a checkpoint's files with their sizes and hashes. It holds
// no time stamp, so the same checkpoint always has the same manifest.
type Manifest struct {
	Format int             `json:"format"`
	Ref    Ref             `json:"ref"`
	Files  []ManifestEntry `json:"files"` // sorted by name
}

// ManifestEntry describes one file.
type ManifestEntry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Checkpoint is a loaded, verified checkpoint.
type Checkpoint struct {
	Ref      Ref
	Manifest Manifest
	// ManifestSHA256 identifies the checkpoint's whole content: it is what
	// Temporal payloads carry.
	ManifestSHA256 string
	Files          map[string][]byte
}

var fileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// SaveCheckpoint writes the files, then the manifest that commits them. If
// the checkpoint was committed before with the same content (a retried
// activity), it succeeds without writing; with other content it refuses, as
// a committed checkpoint never changes. It returns the manifest's SHA-256.
func (s *Store) SaveCheckpoint(ctx context.Context, ref Ref, files []File) (string, error) {
	if err := ref.Validate(); err != nil {
		return "", fmt.Errorf("objectstore: save checkpoint: %w", err)
	}
	m := Manifest{Format: 1, Ref: ref}
	for _, f := range files {
		if !fileName.MatchString(f.Name) || f.Name == ManifestName || strings.Contains(f.Name, "..") {
			return "", fmt.Errorf("objectstore: save checkpoint %s: invalid file name %q", ref, f.Name)
		}
		sum := sha256.Sum256(f.Data)
		m.Files = append(m.Files, ManifestEntry{Name: f.Name, Size: int64(len(f.Data)), SHA256: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(m.Files, func(a, b ManifestEntry) int { return strings.Compare(a.Name, b.Name) })
	for i := 1; i < len(m.Files); i++ {
		if m.Files[i].Name == m.Files[i-1].Name {
			return "", fmt.Errorf("objectstore: save checkpoint %s: file %q given twice", ref, m.Files[i].Name)
		}
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", fmt.Errorf("objectstore: save checkpoint %s: %w", ref, err)
	}
	manifest = append(manifest, '\n')
	sum := sha256.Sum256(manifest)
	manifestSHA := hex.EncodeToString(sum[:])

	existing, err := s.Get(ctx, ref.Prefix()+ManifestName)
	switch {
	case err == nil && bytes.Equal(existing, manifest):
		return manifestSHA, nil
	case err == nil:
		return "", fmt.Errorf("objectstore: save checkpoint %s: a committed checkpoint with other content exists; committed checkpoints never change", ref)
	case !errors.Is(err, storage.ErrNotFound):
		return "", fmt.Errorf("objectstore: save checkpoint %s: %w", ref, err)
	}
	for _, f := range files {
		if err := s.Put(ctx, ref.Prefix()+f.Name, f.Data); err != nil {
			return "", fmt.Errorf("objectstore: save checkpoint: %w", err)
		}
	}
	if err := s.Put(ctx, ref.Prefix()+ManifestName, manifest); err != nil {
		return "", fmt.Errorf("objectstore: save checkpoint: %w", err)
	}
	return manifestSHA, nil
}

// Latest returns the newest committed checkpoint (highest step with a
// manifest) of a run's stage, or storage.ErrNotFound when there is none.
// Folders without a manifest (a save that crashed) are skipped.
func (s *Store) Latest(ctx context.Context, run, stage string) (Ref, error) {
	for _, kind := range [][2]string{{"run", run}, {"stage", stage}} {
		if err := storage.ValidateID(kind[0], kind[1]); err != nil {
			return Ref{}, fmt.Errorf("objectstore: latest: %w", err)
		}
	}
	prefix := stagePrefix(run, stage)
	keys, err := s.list(ctx, prefix, false)
	if err != nil {
		return Ref{}, fmt.Errorf("objectstore: latest %s: %w", prefix, err)
	}
	var steps []int64
	for _, k := range keys {
		step, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(k, prefix), "/"), 10, 64)
		if err == nil && step >= 0 {
			steps = append(steps, step)
		}
	}
	slices.Sort(steps)
	for i := len(steps) - 1; i >= 0; i-- {
		ref := Ref{Run: run, Stage: stage, Step: steps[i]}
		committed, err := s.list(ctx, ref.Prefix()+ManifestName, false)
		if err != nil {
			return Ref{}, fmt.Errorf("objectstore: latest %s: %w", prefix, err)
		}
		if slices.Contains(committed, ref.Prefix()+ManifestName) {
			return ref, nil
		}
	}
	return Ref{}, fmt.Errorf("objectstore: latest %s: no committed checkpoint: %w", prefix, storage.ErrNotFound)
}

// LoadCheckpoint reads a committed checkpoint and verifies the size and
// SHA-256 of every file. A missing manifest is storage.ErrNotFound; a missing,
// truncated or altered file is storage.ErrCorrupt, and no bytes are returned.
func (s *Store) LoadCheckpoint(ctx context.Context, ref Ref) (Checkpoint, error) {
	if err := ref.Validate(); err != nil {
		return Checkpoint{}, fmt.Errorf("objectstore: load checkpoint: %w", err)
	}
	raw, err := s.Get(ctx, ref.Prefix()+ManifestName)
	if errors.Is(err, storage.ErrNotFound) {
		return Checkpoint{}, fmt.Errorf("objectstore: load checkpoint %s: no manifest, so it was never committed: %w", ref, storage.ErrNotFound)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("objectstore: load checkpoint %s: %w", ref, err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil || m.Format != 1 || m.Ref != ref {
		return Checkpoint{}, fmt.Errorf("objectstore: load checkpoint %s: manifest is unreadable or names another checkpoint: %w", ref, storage.ErrCorrupt)
	}
	sum := sha256.Sum256(raw)
	cp := Checkpoint{Ref: ref, Manifest: m, ManifestSHA256: hex.EncodeToString(sum[:]), Files: map[string][]byte{}}
	for _, e := range m.Files {
		if !fileName.MatchString(e.Name) || strings.Contains(e.Name, "..") {
			return Checkpoint{}, fmt.Errorf("objectstore: load checkpoint %s: manifest names invalid file %q: %w", ref, e.Name, storage.ErrCorrupt)
		}
		data, err := s.Get(ctx, ref.Prefix()+e.Name)
		if errors.Is(err, storage.ErrNotFound) {
			return Checkpoint{}, fmt.Errorf("objectstore: load checkpoint %s: file %s is missing: %w", ref, e.Name, storage.ErrCorrupt)
		}
		if err != nil {
			return Checkpoint{}, fmt.Errorf("objectstore: load checkpoint %s: %w", ref, err)
		}
		got := sha256.Sum256(data)
		if int64(len(data)) != e.Size || hex.EncodeToString(got[:]) != e.SHA256 {
			return Checkpoint{}, fmt.Errorf("objectstore: load checkpoint %s: file %s has %d bytes with SHA-256 %x, manifest says %d bytes with %s: %w",
				ref, e.Name, len(data), got[:6], e.Size, e.SHA256[:12], storage.ErrCorrupt)
		}
		cp.Files[e.Name] = data
	}
	return cp, nil
}

// StageSink is a run's stage as a stage.Sink: the trainers' checkpoints
// under runs/<run>/<stage>/<step>/.
type StageSink struct {
	Store      *Store
	Run, Stage string
}

// Save implements stage.Sink.
func (s StageSink) Save(ctx context.Context, step int64, files []stage.File) (string, error) {
	fs := make([]File, len(files))
	for i, f := range files {
		fs[i] = File{Name: f.Name, Data: f.Data}
	}
	return s.Store.SaveCheckpoint(ctx, Ref{Run: s.Run, Stage: s.Stage, Step: step}, fs)
}

// Latest implements stage.Sink.
func (s StageSink) Latest(ctx context.Context) (stage.Checkpoint, bool, error) {
	ref, err := s.Store.Latest(ctx, s.Run, s.Stage)
	if errors.Is(err, storage.ErrNotFound) {
		return stage.Checkpoint{}, false, nil
	}
	if err != nil {
		return stage.Checkpoint{}, false, err
	}
	cp, err := s.Store.LoadCheckpoint(ctx, ref)
	if err != nil {
		return stage.Checkpoint{}, false, err
	}
	return stage.Checkpoint{Step: ref.Step, Files: cp.Files, ID: cp.ManifestSHA256}, true, nil
}

// Sink returns a run's stage as a stage.Sink.
func (s *Store) Sink(run, stageName string) stage.Sink {
	return StageSink{Store: s, Run: run, Stage: stageName}
}
