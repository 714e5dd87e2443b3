package devstack

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// portFree reports whether nothing listens on 127.0.0.1:port.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// portHolder names the process that listens on port, as "pid 123 (nginx)",
// reading /proc. It returns "an unknown process" when the holder cannot be
// seen (another user's process without privileges, another namespace).
func portHolder(port int) string {
	inodes := listeningInodes(port)
	if len(inodes) == 0 {
		return "an unknown process"
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		link, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		inode := strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")
		if !inodes[inode] {
			continue
		}
		pid := strings.Split(fd, "/")[2]
		comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
		return fmt.Sprintf("pid %s (%s)", pid, strings.TrimSpace(string(comm)))
	}
	return "an unknown process"
}

// listeningInodes returns the socket inodes of TCP listeners on port.
func listeningInodes(port int) map[string]bool {
	inodes := map[string]bool{}
	hexPort := fmt.Sprintf(":%04X", port)
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ... inode (field 9); st 0A = LISTEN
			if len(fields) < 10 || fields[3] != "0A" || !strings.HasSuffix(fields[1], hexPort) {
				continue
			}
			inodes[fields[9]] = true
		}
		f.Close()
	}
	return inodes
}

// processIs reports whether pid runs the program exe (by /proc/<pid>/exe,
// not by a name in its command line) with dir, or a path inside dir, among
// its arguments. That is how devstack recognises a server it started for
// this data dir, and nothing else that happens to reuse the pid or the name.
func processIs(pid int, exe, dir string) bool {
	if pid <= 0 || exe == "" || dir == "" {
		return false
	}
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	got, err := os.Readlink(filepath.Join(proc, "exe"))
	if err != nil {
		return false // gone, a zombie, or not ours to inspect
	}
	// A program replaced on disk while it runs (go install) reads "(deleted)".
	if strings.TrimSuffix(got, " (deleted)") != resolvePath(exe) {
		return false
	}
	cmdline, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	if err != nil {
		return false
	}
	dir = filepath.Clean(dir)
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if arg == dir || strings.HasPrefix(arg, dir+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// resolvePath returns path with its symlinks resolved, as the kernel shows
// it in /proc/<pid>/exe, or path itself when it cannot be resolved.
func resolvePath(path string) string {
	if r, err := filepath.EvalSymlinks(path); err == nil {
		if a, err := filepath.Abs(r); err == nil {
			return a
		}
	}
	return path
}

// readPID reads the first line of a pid file (postmaster.pid has more).
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}
