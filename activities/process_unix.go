//go:build unix && !linux

package activities

import "syscall"

// procAttr puts a trainer in a process group of its own, so that it is
// stopped as a whole. (Only Linux can kill it when the worker dies.)
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
