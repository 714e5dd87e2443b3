package devstack

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// startSh runs /bin/sh (a link to dash or bash) with args after the script,
// as a stand-in for a server whose command line names a folder.
func startSh(t *testing.T, args ...string) int {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", "sleep 60"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

func TestProcessIsChecksProgramAndDataDir(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pid := startSh(t, data+"/temporal/temporal.db")
	// A process that merely has the service's name in its command line, as
	// `vim temporal.yaml` or a recycled pid would: the old substring match
	// took it for the service.
	impostor := startSh(t, "temporal", "postgres", "versitygw", data)
	for _, tc := range []struct {
		name string
		pid  int
		exe  string
		dir  string
		want bool
	}{
		{"same program, path inside the data folder", pid, "/bin/sh", data + "/temporal", true},
		{"same program, the data folder itself", impostor, "/bin/sh", data, true},
		{"another program with the name in its arguments", impostor, filepath.Join(PostgresBinDir, "postgres"), data, false},
		{"same program, another data dir", pid, "/bin/sh", filepath.Join(dir, "other"), false},
		{"same program, a data dir that only shares a prefix", pid, "/bin/sh", data + "/temp", false},
		{"no such process", 1 << 30, "/bin/sh", data, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := processIs(tc.pid, tc.exe, tc.dir); got != tc.want {
				t.Errorf("processIs(%d, %s, %s) = %v, want %v", tc.pid, tc.exe, tc.dir, got, tc.want)
			}
		})
	}
}

func TestServiceReusesOnlyItsOwnEarlierProcess(t *testing.T) {
	data := t.TempDir()
	pidFile := filepath.Join(data, "versitygw.pid")
	s := newObjectStore(Options{DataDir: data, S3Port: 1}, "/usr/local/bin/versitygw")
	other := startSh(t, "versitygw", filepath.Join(data, "s3"))
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(other)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pid := s.earlier(); pid != 0 {
		t.Errorf("a /bin/sh naming versitygw and the data dir was taken for the earlier versitygw (pid %d)", pid)
	}
	ours := newObjectStore(Options{DataDir: data, S3Port: 1}, "/bin/sh")
	if pid := ours.earlier(); pid != other {
		t.Errorf("earlier() = %d, want %d for a process of the same program on the same folder", pid, other)
	}
}

func TestDataDirAndServiceFoldersArePrivate(t *testing.T) {
	parent := t.TempDir()
	dir, err := prepareDataDir(filepath.Join(parent, "a", "data"))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{DataDir: dir, TemporalPort: 1, TemporalUIPort: 2, S3Port: 3}
	for _, s := range []*service{newTemporal(opts, "/bin/true"), newObjectStore(opts, "/bin/true")} {
		if err := s.prepare(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := mkdirAll(filepath.Dir(newObjectStore(opts, "x").logFile)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(parent, "a"), dir, filepath.Join(dir, "temporal"), filepath.Join(dir, "s3"), filepath.Join(dir, "logs")} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", p, st.Mode().Perm())
		}
	}
}

func TestDataDirRefusesAnotherUsersFolder(t *testing.T) {
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	} else {
		dir = "/" // root's
	}
	_, err := prepareDataDir(dir)
	if err == nil || !strings.Contains(err.Error(), "not to you") || !strings.Contains(err.Error(), "INSTRUCTFLOW_DATA_DIR") {
		t.Fatalf("prepareDataDir(%s) = %v, want a refusal that says to choose a data_dir of your own", dir, err)
	}
}

func TestDataDirRefusesSymlinks(t *testing.T) {
	for _, link := range []string{"logs", "temporal/temporal.db", "versitygw.pid", "s3"} {
		t.Run(link, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(link)), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc", filepath.Join(dir, link)); err != nil {
				t.Fatal(err)
			}
			_, err := prepareDataDir(dir)
			if err == nil || !strings.Contains(err.Error(), "holds a symlink, "+link+" -> /etc") {
				t.Fatalf("got %v, want a refusal naming %s", err, link)
			}
		})
	}
	// The data dir itself may be a link (to a bigger disk): it is resolved.
	real := t.TempDir()
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(real, alias); err != nil {
		t.Fatal(err)
	}
	got, err := prepareDataDir(alias)
	if err != nil || got != real {
		t.Errorf("prepareDataDir(link to %s) = %q, %v; want the resolved folder", real, got, err)
	}
}

func TestBlockedAtFindsTheClosedFolder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create folders owned by another user")
	}
	base := openTempDir(t)
	closed := filepath.Join(base, "home")
	data := filepath.Join(closed, "x", "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	nobody := account{uid: 65534, gid: 65534, gids: []uint32{65534}}
	if got, err := nobody.blockedAt(data); err != nil || got != closed {
		t.Errorf("blockedAt = %q, %v; want %s (mode 0700, root's)", got, err, closed)
	}
	// Group search permission is enough for a member of the group.
	if err := os.Chmod(closed, 0o710); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(closed, 0, 4242); err != nil {
		t.Fatal(err)
	}
	member := account{uid: 65534, gid: 65534, gids: []uint32{65534, 4242}}
	if got, err := member.blockedAt(data); err != nil || got != "" {
		t.Errorf("a member of the folder's group: blockedAt = %q, %v; want reachable", got, err)
	}
	if got, _ := nobody.blockedAt(data); got != closed {
		t.Errorf("a non-member: blockedAt = %q, want %s", got, closed)
	}
	// The owner needs its own x bit.
	if err := os.Chown(closed, 65534, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(closed, 0o077); err != nil {
		t.Fatal(err)
	}
	if got, _ := nobody.blockedAt(data); got != closed {
		t.Errorf("owner without u+x: blockedAt = %q, want %s", got, closed)
	}
}

// openTempDir returns a fresh folder that every user may enter (t.TempDir's
// folders are 0700).
func openTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "instructflow-open-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// privateParent returns a data dir path under a fresh 0700 folder, as
// root's home or `mktemp -d` gives, and points sharedRoot at a fresh folder
// for the test.
func privateParent(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the postgres user's reach matters only when devstack runs as root")
	}
	if _, err := postgresAccount(); err != nil {
		t.Skipf("no postgres user: %v", err)
	}
	parent := t.TempDir() // 0700, root's
	root, err := os.MkdirTemp("", "instructflow-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	old := sharedRoot
	sharedRoot = filepath.Join(root, "instructflow")
	t.Cleanup(func() { sharedRoot = old })
	return filepath.Join(parent, ".instructflow")
}

func TestLocatePostgresOutsideAPrivateParent(t *testing.T) {
	dataDir := privateParent(t)
	dataDir, err := prepareDataDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	home, err := locatePostgres(dataDir, &log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(home.dir, sharedRoot+"/") || home.why == "" {
		t.Fatalf("cluster at %s (%q), want it under %s since the postgres user cannot reach %s", home.dir, home.why, sharedRoot, dataDir)
	}
	acct, _ := postgresAccount()
	folder := filepath.Dir(home.dir)
	st, err := os.Stat(folder)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 || st.Sys().(*syscall.Stat_t).Uid != acct.uid {
		t.Errorf("%s: mode %v uid %d, want 0700 and the postgres user's", folder, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid)
	}
	if blocked, err := acct.blockedAt(folder); err != nil || blocked != "" {
		t.Errorf("the postgres user cannot reach %s: blocked at %q (%v)", folder, blocked, err)
	}

	// The next start finds the same folder again.
	again, err := locatePostgres(dataDir, &log)
	if err != nil || again.dir != home.dir {
		t.Errorf("second locate: %s, %v; want %s", again.dir, err, home.dir)
	}

	// A copied data dir does not share the cluster: one message says why.
	copyDir := filepath.Join(filepath.Dir(dataDir), "copy")
	if err := mkdirAll(copyDir); err != nil {
		t.Fatal(err)
	}
	rec, _ := os.ReadFile(filepath.Join(dataDir, locationFile))
	if err := os.WriteFile(filepath.Join(copyDir, locationFile), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := locatePostgres(copyDir, &log); err == nil || !strings.Contains(err.Error(), "moved or copied") {
		t.Errorf("a copied data dir: %v, want a refusal that says it was moved or copied", err)
	}

	// A data dir removed and created again at the same path starts afresh.
	if err := os.WriteFile(filepath.Join(home.dir+"-marker"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	if dataDir, err = prepareDataDir(dataDir); err != nil {
		t.Fatal(err)
	}
	fresh, err := locatePostgres(dataDir, &log)
	if err != nil || fresh.dir != home.dir {
		t.Fatalf("after removing the data dir: %s, %v", fresh.dir, err)
	}
	if _, err := os.Stat(home.dir + "-marker"); err == nil {
		t.Error("the cluster folder of the removed data dir was kept")
	}
	if !strings.Contains(log.String(), "removed "+folder) {
		t.Errorf("log %q does not say that the old cluster was removed", log.String())
	}
}

func TestLocatePostgresKeepsAReachableDataDir(t *testing.T) {
	privateParent(t) // root and sharedRoot
	dataDir := filepath.Join(openTempDir(t), ".instructflow")
	if err := os.MkdirAll(dataDir, 0o755); err != nil { // as earlier versions left it
		t.Fatal(err)
	}
	home, err := locatePostgres(dataDir, io.Discard)
	if err != nil || home.dir != filepath.Join(dataDir, "postgres") || home.why != "" {
		t.Errorf("locate = %+v, %v; want %s/postgres", home, err, dataDir)
	}
}
