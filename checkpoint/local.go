package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/stage"
)

// Committed returns the manifest SHA-256 of the checkpoint committed at
// step, reading and checking only its manifest (Load reads and verifies
// every file too). No manifest is errkind.NotFound.
func (s Store) Committed(ctx context.Context, step int64) (string, error) {
	dir := s.Key(step)
	raw, err := ReadBlob(ctx, s.Blobs, dir+ManifestName, MaxManifestBytes)
	if errors.Is(err, errkind.NotFound) {
		return "", fmt.Errorf("checkpoint: %s: %w", dir, errNoManifest)
	}
	if err != nil {
		return "", fmt.Errorf("checkpoint: %s: %w", dir, err)
	}
	if _, err := parseManifest(dir, step, raw); err != nil {
		return "", err
	}
	return sha(raw), nil
}

// ParseKey splits the key of a checkpoint's folder, <prefix><step>/ (the
// trailing slash may be left out), into its store's prefix and its step.
func ParseKey(key string) (prefix string, step int64, err error) {
	k := strings.TrimSuffix(key, "/")
	i := strings.LastIndex(k, "/")
	step, perr := strconv.ParseInt(k[i+1:], 10, 64)
	if i < 0 || perr != nil || step < 0 || strconv.FormatInt(step, 10) != k[i+1:] || strings.Contains(k, "..") || strings.HasPrefix(k, "/") {
		return "", 0, errkind.BadInputf("checkpoint key %q is not PREFIX/STEP/ (e.g. runs/r1/sft/40/)", key)
	}
	return k[:i+1], step, nil
}

// ReadDir returns the files of a local checkpoint folder: its regular
// files, sorted by name, without a manifest.json (Save writes its own).
// A subfolder or a name the format does not take is refused.
func ReadDir(dir string) ([]stage.File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", dir, err)
	}
	var files []stage.File
	for _, e := range entries {
		if e.Name() == ManifestName {
			continue
		}
		if !e.Type().IsRegular() || !validName(e.Name()) {
			return nil, errkind.BadInputf("checkpoint: %s: %s is not a plain file with a name of letters, digits, '.', '_' or '-'; a checkpoint is one flat folder", dir, e.Name())
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("checkpoint: read %s: %w", dir, err)
		}
		files = append(files, stage.File{Name: e.Name(), Data: data})
	}
	if len(files) == 0 {
		return nil, errkind.BadInputf("checkpoint: %s has no files to commit", dir)
	}
	return files, nil
}

// WriteDir writes a loaded checkpoint's files into dir (made if missing;
// it must hold none of them, which is checked before anything is written),
// each through a temporary file and a rename.
func WriteDir(dir string, cp stage.Checkpoint) error {
	names := make([]string, 0, len(cp.Files))
	for n := range cp.Files {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			return errkind.BadInputf("checkpoint: %s exists; get a checkpoint into an empty folder", filepath.Join(dir, n))
		}
		names = append(names, n)
	}
	slices.Sort(names)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		tmp := p + ".part"
		if err := os.WriteFile(tmp, cp.Files[n], 0o644); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return nil
}
