package activities

import "syscall"

// procAttr puts a trainer in a process group of its own (so that it is
// stopped as a whole) and has Linux kill it when the worker dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
