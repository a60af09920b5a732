// Package e2e holds black-box tests of the real binary: each test starts
// `mercato up` as a subprocess, the way a person would, and talks to the
// system only through the gateway's public HTTP API (and, for the process
// tests, signals and process ids).
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mercatoBin is the binary under test, built once by TestMain.
var mercatoBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mercato-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	mercatoBin = filepath.Join(dir, "mercato")
	build := exec.Command("go", "build", "-o", mercatoBin, "github.com/mercato-dev/mercato/cmd/mercato")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build mercato:", err)
		return 1
	}
	return m.Run()
}
