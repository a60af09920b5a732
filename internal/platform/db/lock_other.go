//go:build !unix

package db

import "context"

// lockFile does nothing where flock is unavailable: there, replicas
// sharing one SQLite file must not start at the same moment.
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
