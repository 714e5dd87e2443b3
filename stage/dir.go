package stage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Dir is a Sink in a local folder: <dir>/<step>/ holds the files and
// manifest.json (size and SHA-256 of each), written last. A step folder is
// first written under a temporary name and renamed, so a crash never leaves
// a half checkpoint that looks committed.
type Dir struct {
	Path string
}

const manifestName = "manifest.json"

type manifest struct {
	Step  int64           `json:"step"`
	Files []manifestEntry `json:"files"`
}

type manifestEntry struct {
	Name   string `json:"name"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
}

// Save implements Sink.
func (d Dir) Save(_ context.Context, step int64, files []File) (string, error) {
	m := manifest{Step: step}
	for _, f := range files {
		if f.Name == "" || f.Name == manifestName || filepath.Base(f.Name) != f.Name || f.Name[0] == '.' {
			return "", fmt.Errorf("stage: save checkpoint %d: invalid file name %q", step, f.Name)
		}
		sum := sha256.Sum256(f.Data)
		m.Files = append(m.Files, manifestEntry{Name: f.Name, Size: len(f.Data), SHA256: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(m.Files, func(a, b manifestEntry) int { return strings.Compare(a.Name, b.Name) })
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	id := hex.EncodeToString(sum[:])
	final := filepath.Join(d.Path, strconv.FormatInt(step, 10))
	if old, err := os.ReadFile(filepath.Join(final, manifestName)); err == nil {
		if string(old) == string(raw) {
			return id, nil // a retried save of the same content
		}
		return "", fmt.Errorf("stage: save checkpoint %d in %s: a committed checkpoint with other content exists", step, d.Path)
	}
	if err := os.MkdirAll(d.Path, 0o755); err != nil {
		return "", fmt.Errorf("stage: save checkpoint: %w", err)
	}
	tmp, err := os.MkdirTemp(d.Path, ".tmp-")
	if err != nil {
		return "", fmt.Errorf("stage: save checkpoint: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(tmp, f.Name), f.Data, 0o644); err != nil {
			return "", fmt.Errorf("stage: save checkpoint: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, manifestName), raw, 0o644); err != nil {
		return "", fmt.Errorf("stage: save checkpoint: %w", err)
	}
	_ = os.RemoveAll(final) // an uncommitted leftover of a crashed save
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("stage: save checkpoint: %w", err)
	}
	return id, nil
}

// Latest implements Sink.
func (d Dir) Latest(_ context.Context) (Checkpoint, bool, error) {
	entries, err := os.ReadDir(d.Path)
	if errors.Is(err, os.ErrNotExist) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("stage: latest in %s: %w", d.Path, err)
	}
	var steps []int64
	for _, e := range entries {
		if s, err := strconv.ParseInt(e.Name(), 10, 64); err == nil && e.IsDir() {
			steps = append(steps, s)
		}
	}
	slices.Sort(steps)
	for i := len(steps) - 1; i >= 0; i-- {
		dir := filepath.Join(d.Path, strconv.FormatInt(steps[i], 10))
		raw, err := os.ReadFile(filepath.Join(dir, manifestName))
		if errors.Is(err, os.ErrNotExist) {
			continue // never committed
		}
		if err != nil {
			return Checkpoint{}, false, fmt.Errorf("stage: latest: %w", err)
		}
		cp, err := d.verify(dir, raw)
		return cp, err == nil, err
	}
	return Checkpoint{}, false, nil
}

// verify reads the files a manifest lists and checks them.
func (d Dir) verify(dir string, raw []byte) (Checkpoint, error) {
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Checkpoint{}, fmt.Errorf("stage: checkpoint %s: unreadable manifest: %w", dir, ErrCorrupt)
	}
	sum := sha256.Sum256(raw)
	cp := Checkpoint{Step: m.Step, Files: map[string][]byte{}, ID: hex.EncodeToString(sum[:])}
	for _, e := range m.Files {
		data, err := os.ReadFile(filepath.Join(dir, filepath.Base(e.Name)))
		if err != nil {
			return Checkpoint{}, fmt.Errorf("stage: checkpoint %s: file %s: %v: %w", dir, e.Name, err, ErrCorrupt)
		}
		got := sha256.Sum256(data)
		if len(data) != e.Size || hex.EncodeToString(got[:]) != e.SHA256 {
			return Checkpoint{}, fmt.Errorf("stage: checkpoint %s: file %s does not match its manifest: %w", dir, e.Name, ErrCorrupt)
		}
		cp.Files[e.Name] = data
	}
	return cp, nil
}

// ErrCorrupt: a committed checkpoint's files do not match its manifest.
var ErrCorrupt = errors.New("corrupt checkpoint")
