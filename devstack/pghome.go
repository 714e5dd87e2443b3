package devstack

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sharedRoot holds, when devstack runs as root and the postgres user cannot
// reach the data dir (a data dir under root's 0700 home, or under a
// `mktemp -d` folder), one folder per data dir for its Postgres cluster.
// Tests point it elsewhere.
var sharedRoot = "/var/lib/instructflow"

const (
	// locationFile, in the data dir, records where its cluster lives when
	// that is under sharedRoot.
	locationFile = "postgres.location"
	// ownerFile, in a folder under sharedRoot, names the data dir it serves.
	ownerFile = "datadir"
)

// pgHome is where one data dir's Postgres cluster lives.
type pgHome struct {
	dir   string // the cluster (PGDATA), also its unix socket folder
	pwDir string // where initdb reads its password file; the postgres user reaches it
	// why is empty when the cluster is DataDir/postgres; otherwise it says
	// why it lives under sharedRoot instead, for dev to print.
	why string
}

// locatePostgres decides where the cluster of dataDir (absolute, resolved)
// lives. Not as root, or when the postgres user can reach it, that is
// DataDir/postgres. As root with a data dir the postgres user cannot reach,
// it is sharedRoot/<hash of dataDir>/pgdata, created 0700 for the postgres
// user and recorded in DataDir/postgres.location so that the next start finds
// it again. The user's folders are never made more open.
func locatePostgres(dataDir string, log io.Writer) (pgHome, error) {
	inside := pgHome{dir: filepath.Join(dataDir, "postgres"), pwDir: dataDir}
	if os.Geteuid() != 0 {
		return inside, nil
	}
	acct, err := postgresAccount()
	if err != nil {
		return pgHome{}, err
	}
	record := filepath.Join(dataDir, locationFile)
	if b, err := os.ReadFile(record); err == nil {
		return recordedHome(dataDir, record, strings.TrimSpace(string(b)), acct)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return pgHome{}, fmt.Errorf("read %s: %w", record, err)
	}
	blocked, err := acct.blockedAt(dataDir)
	if err != nil {
		return pgHome{}, err
	}
	if blocked == "" {
		return inside, nil
	}
	if err := ensureSharedRoot(acct); err != nil {
		return pgHome{}, err
	}
	sum := sha256.Sum256([]byte(dataDir))
	folder := filepath.Join(sharedRoot, hex.EncodeToString(sum[:8]))
	if _, err := os.Lstat(folder); err == nil {
		// No record in the data dir, yet a folder for its path: it served an
		// earlier data dir at this path that was removed, with the Temporal
		// history and checkpoints its labels refer to. Start afresh.
		if err := removeOrphan(folder, dataDir, log); err != nil {
			return pgHome{}, err
		}
	}
	if err := os.Mkdir(folder, 0o700); err != nil {
		return pgHome{}, fmt.Errorf("create %s: %w", folder, err)
	}
	if err := os.WriteFile(filepath.Join(folder, ownerFile), []byte(dataDir+"\n"), 0o600); err != nil {
		return pgHome{}, fmt.Errorf("create %s: %w", folder, err)
	}
	if err := os.Chown(folder, int(acct.uid), int(acct.gid)); err != nil {
		return pgHome{}, fmt.Errorf("create %s: %w", folder, err)
	}
	// The record last: it commits the folder, so a start that failed above
	// leaves no record of a folder that is not ready.
	if err := os.WriteFile(record, []byte(folder+"\n"), 0o600); err != nil {
		return pgHome{}, fmt.Errorf("record the cluster's folder: %w", err)
	}
	return externalHome(folder, blocked), nil
}

func externalHome(folder, blocked string) pgHome {
	return pgHome{
		dir:   filepath.Join(folder, "pgdata"),
		pwDir: folder,
		why:   fmt.Sprintf("the postgres user cannot enter %s", blocked),
	}
}

// recordedHome checks the folder a data dir's postgres.location names.
func recordedHome(dataDir, record, folder string, acct account) (pgHome, error) {
	if filepath.Dir(folder) != filepath.Clean(sharedRoot) {
		return pgHome{}, fmt.Errorf("%s names %q, which is not a folder of %s; remove %s to start a fresh cluster", record, folder, sharedRoot, record)
	}
	st, err := os.Lstat(folder)
	if err != nil {
		return pgHome{}, fmt.Errorf("the cluster recorded in %s is gone (%v); remove %s to start a fresh cluster", record, err, record)
	}
	if !st.IsDir() || st.Sys().(*syscall.Stat_t).Uid != acct.uid {
		return pgHome{}, fmt.Errorf("%s is not a folder of the postgres user; remove %s to start a fresh cluster", folder, record)
	}
	owner, _ := os.ReadFile(filepath.Join(folder, ownerFile))
	if got := strings.TrimSpace(string(owner)); got != dataDir {
		return pgHome{}, fmt.Errorf("the cluster in %s belongs to data dir %s, not to %s (was the data dir moved or copied?); move it back, or remove %s to start a fresh cluster here", folder, got, dataDir, record)
	}
	return externalHome(folder, "the data dir"), nil
}

// removeOrphan removes a folder under sharedRoot whose data dir is gone,
// unless its Postgres still runs.
func removeOrphan(folder, dataDir string, log io.Writer) error {
	pgdata := filepath.Join(folder, "pgdata")
	if pid := readPID(filepath.Join(pgdata, "postmaster.pid")); processIs(pid, filepath.Join(PostgresBinDir, "postgres"), pgdata) {
		return fmt.Errorf("%s holds the cluster of an earlier data dir at %s, and its Postgres still runs (pid %d); stop it with `kill %d` and start again", folder, dataDir, pid, pid)
	}
	if err := os.RemoveAll(folder); err != nil {
		return fmt.Errorf("remove the cluster of a removed data dir: %w", err)
	}
	fmt.Fprintf(log, "devstack: removed %s, the Postgres cluster of an earlier data dir at %s that was removed\n", folder, dataDir)
	return nil
}

// ensureSharedRoot creates sharedRoot (root's, 0711: others may enter but not
// list it) or checks that nobody but root can change it.
func ensureSharedRoot(acct account) error {
	if err := os.MkdirAll(sharedRoot, 0o711); err != nil {
		return fmt.Errorf("create %s: %w", sharedRoot, err)
	}
	st, err := os.Lstat(sharedRoot)
	if err != nil {
		return err
	}
	sys := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || sys.Uid != 0 || st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s must be a folder owned by root that only root can write (it is %s, uid %d); fix it or remove it", sharedRoot, st.Mode(), sys.Uid)
	}
	blocked, err := acct.blockedAt(sharedRoot)
	if err != nil {
		return err
	}
	if blocked != "" {
		return fmt.Errorf("neither the data dir nor %s can be entered by the postgres user (%s is closed to it); choose a data_dir it can reach", sharedRoot, blocked)
	}
	return nil
}

// account is a user as file permissions see it.
type account struct {
	uid  uint32
	gid  uint32
	gids []uint32 // primary and supplementary groups
}

func postgresAccount() (account, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return account{}, fmt.Errorf("running as root needs the postgres user to run Postgres (install the postgresql package): %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	a := account{uid: uint32(uid), gid: uint32(gid), gids: []uint32{uint32(gid)}}
	groups, _ := u.GroupIds()
	for _, g := range groups {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			a.gids = append(a.gids, uint32(n))
		}
	}
	return a, nil
}

// blockedAt returns the first folder, from / down to dir itself, that the
// account may not enter (search permission, by the mode bits), or "" when it
// can reach dir. dir must exist.
func (a account) blockedAt(dir string) (string, error) {
	dir = filepath.Clean(dir)
	path := string(filepath.Separator)
	parts := strings.Split(strings.TrimPrefix(dir, path), string(filepath.Separator))
	for i := -1; i < len(parts); i++ {
		if i >= 0 {
			if parts[i] == "" {
				continue
			}
			path = filepath.Join(path, parts[i])
		}
		st, err := os.Stat(path)
		if err != nil {
			return "", err
		}
		if !a.canSearch(st) {
			return path, nil
		}
	}
	return "", nil
}

func (a account) canSearch(st fs.FileInfo) bool {
	sys := st.Sys().(*syscall.Stat_t)
	perm := st.Mode().Perm()
	switch {
	case sys.Uid == a.uid:
		return perm&0o100 != 0
	case a.inGroup(sys.Gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

func (a account) inGroup(gid uint32) bool {
	for _, g := range a.gids {
		if g == gid {
			return true
		}
	}
	return false
}
