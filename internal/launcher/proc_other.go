//go:build !unix

package launcher

import (
	"os"
	"syscall"
)

// sysProcAttr has nothing to add where there are no process groups.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup kills p: without POSIX signals there is no graceful request.
func signalGroup(p *os.Process, _ bool) error { return p.Kill() }
