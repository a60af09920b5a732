package server

import "errors"

// Closers are the resources a service opened, closed together in reverse
// order: by its constructor when it fails half-way (defer CloseOnError),
// and by Run once the server has stopped (Close). Not safe for concurrent
// use; a service adds to it only while it is being built.
type Closers struct {
	fns []func() error
}

// Add registers close, to be called before everything added earlier.
func (c *Closers) Add(close func() error) {
	c.fns = append(c.fns, close)
}

// AddLast registers close to be called after everything else, whenever it
// is added: for what the others use while they close (a registry their
// connections resolve through).
func (c *Closers) AddLast(close func() error) {
	c.fns = append([]func() error{close}, c.fns...)
}

// Close calls every registered function, the last added first, and
// returns their errors joined. Each is called at most once: a second Close
// does nothing.
func (c *Closers) Close() error {
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		if err := c.fns[i](); err != nil {
			errs = append(errs, err)
		}
	}
	c.fns = nil
	return errors.Join(errs...)
}

// CloseOnError closes everything when *err is set. A constructor defers it
// with its named error result, so what it opened before failing is closed
// and what it returns on success stays open.
func (c *Closers) CloseOnError(err *error) {
	if *err != nil {
		_ = c.Close()
	}
}
