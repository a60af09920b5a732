//go:build unix

package launcher

import (
	"os"
	"syscall"
)

// signalGroup sends SIGTERM (or SIGKILL when kill is set) to the process
// group p leads, so anything the service started stops with it.
func signalGroup(p *os.Process, kill bool) error {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	return syscall.Kill(-p.Pid, sig)
}
