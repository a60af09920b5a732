// Package config reads typed settings from the environment with defaults
// and collects every problem, so a misconfigured process reports all of them
// at once and exits before it starts anything. Only cmd/ uses Env; services
// receive plain structs and validate them.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads variables through lookup (os.LookupEnv by default) and remembers
// every malformed value. The zero value is not usable; call NewEnv.
type Env struct {
	lookup   func(string) (string, bool)
	problems []error
}

// NewEnv returns an Env reading the process environment.
func NewEnv() *Env { return &Env{lookup: os.LookupEnv} }

// NewEnvFrom returns an Env reading from a map (tests, launchers).
func NewEnvFrom(vars map[string]string) *Env {
	return &Env{lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}

// String returns the variable or def when unset or empty.
func (e *Env) String(key, def string) string {
	if v, ok := e.lookup(key); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return def
}

// Int returns the variable parsed as an integer, or def.
func (e *Env) Int(key string, def int) int {
	v := e.String(key, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.problems = append(e.problems, fmt.Errorf("%s: %q is not an integer", key, v))
		return def
	}
	return n
}

// Float returns the variable parsed as a float, or def.
func (e *Env) Float(key string, def float64) float64 {
	v := e.String(key, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.problems = append(e.problems, fmt.Errorf("%s: %q is not a number", key, v))
		return def
	}
	return f
}

// Duration returns the variable parsed with time.ParseDuration, or def.
func (e *Env) Duration(key string, def time.Duration) time.Duration {
	v := e.String(key, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.problems = append(e.problems, fmt.Errorf("%s: %q is not a duration (e.g. 500ms, 15m)", key, v))
		return def
	}
	return d
}

// Bool returns the variable parsed with strconv.ParseBool, or def.
func (e *Env) Bool(key string, def bool) bool {
	v := e.String(key, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.problems = append(e.problems, fmt.Errorf("%s: %q is not a boolean", key, v))
		return def
	}
	return b
}

// Err returns every malformed value seen so far as an *Error, or nil.
func (e *Env) Err() error { return join(e.problems) }

// Error is a configuration that cannot be used: every problem found in it.
// Callers tell a misconfigured process from one that failed at run time
// with errors.As(err, new(*config.Error)), however deeply it is wrapped.
type Error struct {
	// Problems are the individual problems, each possibly a nested *Error
	// under a prefix (Problems.Include).
	Problems []error
}

func (e *Error) Error() string { return errors.Join(e.Problems...).Error() }

// Unwrap returns the problems, so errors.Is and errors.As see each one.
func (e *Error) Unwrap() []error { return e.Problems }

// Join returns the non-nil errs as one *Error, or nil when there are none.
// Use it to combine the results of several Validate calls (or Env.Err).
func Join(errs ...error) error {
	var problems []error
	for _, err := range errs {
		if err != nil {
			problems = append(problems, err)
		}
	}
	return join(problems)
}

func join(problems []error) error {
	if len(problems) == 0 {
		return nil
	}
	return &Error{Problems: problems}
}

// Problems collects validation failures; Err returns them as an *Error.
type Problems struct{ errs []error }

// Add records a problem when cond is true.
func (p *Problems) Add(cond bool, format string, args ...any) {
	if cond {
		p.errs = append(p.errs, fmt.Errorf(format, args...))
	}
}

// Include records err (a nested Validate's result) under a prefix.
func (p *Problems) Include(prefix string, err error) {
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: %w", prefix, err))
	}
}

// Err returns all recorded problems as an *Error, or nil.
func (p *Problems) Err() error { return join(p.errs) }
