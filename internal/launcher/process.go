package launcher

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"time"
)

// child is one service running as its own process.
type child struct {
	// name labels the process in the log; adminAddr is its admin HTTP
	// address (/readyz).
	name      string
	adminAddr string
	cmd       *exec.Cmd
	stdout    *lineWriter
	stderr    *lineWriter

	// done is closed once the process has exited and its output is
	// flushed; exitErr is Wait's result, set before.
	done    chan struct{}
	exitErr error
}

// exitStatus describes how the process ended, e.g. "exit status 1" or
// "signal: killed".
func (c *child) exitStatus() string {
	var ee *exec.ExitError
	switch {
	case c.exitErr == nil:
		return "exit status 0"
	case errors.As(c.exitErr, &ee):
		return ee.String()
	default:
		return c.exitErr.Error()
	}
}

// exitCode is the process's exit code, or -1 when a signal ended it.
func (c *child) exitCode() int {
	if c.cmd.ProcessState == nil {
		return -1
	}
	return c.cmd.ProcessState.ExitCode()
}

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop asks the process to stop (SIGTERM to its process group) and kills
// the group when it has not exited within timeout. It returns whether the
// process had to be killed.
func (c *child) stop(timeout time.Duration) (killed bool) {
	if c.exited() {
		return false
	}
	_ = signalGroup(c.cmd.Process, false)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return false
	case <-t.C:
		_ = signalGroup(c.cmd.Process, true)
		<-c.done
		return true
	}
}

// spawner starts processes from one OS thread that stays alive while the
// launcher runs. On Linux a child gets its parent-death signal when the
// thread that started it ends, not the process: starting every child from
// a thread that lives exactly as long as the launcher makes the signal mean
// "the launcher is gone" (killed with SIGKILL, say), so no service outlives
// it.
type spawner struct {
	requests chan spawnRequest
}

type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

func newSpawner() *spawner {
	s := &spawner{requests: make(chan spawnRequest)}
	go func() {
		// Never unlocked on purpose: when this goroutine returns, the
		// runtime ends its thread instead of reusing it.
		runtime.LockOSThread()
		for r := range s.requests {
			r.result <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	s.requests <- r
	return <-r.result
}

// close ends the spawning thread; call it only once every child has exited.
func (s *spawner) close() { close(s.requests) }

// startChild runs `<exe> serve <service>` with env, labelled name in the
// log, in its own process group
// (so a Ctrl-C in the terminal reaches only the launcher, which stops the
// children in order), streaming its output through sink. exits receives
// the child once it has ended.
func startChild(sp *spawner, exe, service, name string, env []string, sink *logSink, exits chan<- *child) (*child, error) {
	// Not CommandContext: cancelling would SIGKILL the child, while the
	// launcher stops children itself, gracefully and in order.
	cmd := exec.Command(exe, "serve", service) //nolint:noctx // see above
	cmd.Env = env
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	c.stdout = sink.writer(name)
	c.stderr = c.stdout.sibling()
	cmd.Stdout = c.stdout
	cmd.Stderr = c.stderr
	cmd.SysProcAttr = sysProcAttr()
	// A grandchild that kept the output pipes open must not hold Wait.
	cmd.WaitDelay = 2 * time.Second
	if err := sp.start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.exitErr = cmd.Wait()
		c.stdout.Flush()
		c.stderr.Flush()
		close(c.done)
		exits <- c
	}()
	return c, nil
}
