//go:build !unix

package launcher

// lockDataDir does nothing where flock is unavailable.
func lockDataDir(string) (func(), error) { return func() {}, nil }
