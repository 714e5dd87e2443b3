package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/instructflow/instructflow/errkind"
)

// Folder is Blobs in a local folder: a key is a path below Path. Each Put
// writes a temporary file, syncs it and renames it, so neither a crash nor
// a power loss leaves a file half written under its name.
type Folder struct {
	Path string
}

// Dir returns a Store of checkpoints in a local folder: <dir>/<step>/.
func Dir(dir string) Store { return Store{Blobs: Folder{Path: dir}} }

func (f Folder) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "..") || strings.Contains(key, "\\") {
		return "", fmt.Errorf("checkpoint: folder %s: invalid key %q", f.Path, key)
	}
	return filepath.Join(f.Path, filepath.FromSlash(key)), nil
}

// Put implements Blobs.
func (f Folder) Put(_ context.Context, key string, data []byte) error {
	p, err := f.path(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("checkpoint: put %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("checkpoint: put %s: %w", key, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err == nil {
		err = syncDir(dir) // the rename itself survives a power loss
	}
	if err != nil {
		return fmt.Errorf("checkpoint: put %s: %w", key, err)
	}
	return nil
}

// Open implements Blobs.
func (f Folder) Open(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := f.path(key)
	if err != nil {
		return nil, err
	}
	r, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checkpoint: open %s: %w", key, errkind.NotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s: %w", key, err)
	}
	return r, nil
}

// List implements Blobs. Temporary files of a Put in progress are left out.
// The walk starts at the deepest folder the prefix names.
func (f Folder) List(_ context.Context, prefix string) ([]string, error) {
	root := f.Path
	if i := strings.LastIndex(prefix, "/"); i > 0 {
		p, err := f.path(prefix[:i])
		if err != nil {
			return nil, err
		}
		root = p
	}
	var keys []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		rel, err := filepath.Rel(f.Path, p)
		if err != nil {
			return err
		}
		if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list %s in %s: %w", prefix, f.Path, err)
	}
	return keys, nil
}

// Delete implements Blobs; deleting a missing key is not an error.
func (f Folder) Delete(_ context.Context, key string) error {
	p, err := f.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint: delete %s: %w", key, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
