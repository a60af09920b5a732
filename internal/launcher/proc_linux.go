package launcher

import "syscall"

// sysProcAttr puts a child in its own process group, and has the kernel
// send it SIGTERM if the launcher dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
