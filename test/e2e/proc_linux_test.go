package e2e

import "syscall"

// sysProcAttr has the kernel stop `mercato up` (and so, in turn, its
// services) if the test binary dies without stopping it, e.g. on a test
// timeout.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
