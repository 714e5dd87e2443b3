package devstack

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// prepareDataDir makes dir absolute, creates it private (0700) when missing,
// and refuses a data dir that is not this user's or that holds symlinks:
// devstack writes its logs, pid files and databases there, as root when run
// as root, and must not be led to write anywhere else. It returns the
// absolute path with the data dir's own symlinks resolved, for all later use.
func prepareDataDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("devstack: data dir: %w", err)
	}
	if err := mkdirAll(abs); err != nil {
		return "", fmt.Errorf("devstack: data dir: %w", err)
	}
	// A data dir that is itself a link (to a bigger disk) is fine: resolve it
	// once, and check what it points to.
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return "", fmt.Errorf("devstack: data dir: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("devstack: data dir: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("devstack: data dir %s is not a folder; set data_dir (INSTRUCTFLOW_DATA_DIR or --data-dir) to a folder of your own", abs)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Geteuid() {
		return "", fmt.Errorf("devstack: data dir %s belongs to uid %d, not to you (uid %d); set data_dir (INSTRUCTFLOW_DATA_DIR or --data-dir) to a folder of your own", abs, uid, os.Geteuid())
	}
	if link, target := findSymlink(abs); link != "" {
		return "", fmt.Errorf("devstack: data dir %s holds a symlink, %s -> %s; devstack does not write through links, so remove it (and keep the real folder inside the data dir) or choose another data_dir", abs, link, target)
	}
	return abs, nil
}

// findSymlink returns the first symlink in the data dir and its target, or
// "" when there is none. It does not descend into the Postgres cluster (whose
// pg_tblspc holds links by design) or the object store's buckets (objects
// are data, served by versitygw); their folders themselves are checked.
func findSymlink(dataDir string) (link, target string) {
	_ = filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable entries are reported by whoever opens them
		}
		if d.Type()&fs.ModeSymlink != 0 {
			link = path
			target, _ = os.Readlink(path)
			return filepath.SkipAll
		}
		if d.IsDir() && path != dataDir && filepath.Dir(path) == dataDir && (d.Name() == "postgres" || d.Name() == "s3") {
			return filepath.SkipDir
		}
		return nil
	})
	if link != "" {
		if rel, err := filepath.Rel(dataDir, link); err == nil {
			link = rel
		}
	}
	return link, target
}
