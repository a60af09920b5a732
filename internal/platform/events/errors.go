package events

import (
	"context"
	"errors"
	"net"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mercato-dev/mercato/internal/platform/db"
)

var (
	// ErrInvalidEvent means an event cannot be stored as given (bad subject,
	// id or payload); fixing the caller is the only remedy.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrDuplicateEvent means the outbox already holds an event with that id.
	// On PostgreSQL the transaction is aborted and must be rolled back.
	ErrDuplicateEvent = errors.New("duplicate event id")
	// ErrInvalidConfig means a consumer or stream configuration is unusable.
	ErrInvalidConfig = errors.New("invalid events configuration")
)

// permanentError marks a handler failure that redelivery cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (a malformed payload, a
// reference that can never resolve): a Consumer sends the message straight to
// the dead-letter stream instead of redelivering it. Permanent(nil) is nil.
// The mark survives further wrapping with %w.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// ErrNoSuchDeadLetter means a dead letter or dead outbox row asked for by
// id does not exist (or does not match the rest of the filter).
var ErrNoSuchDeadLetter = errors.New("no such dead letter")

// infrastructureError marks a failure of something a handler depends on.
type infrastructureError struct{ err error }

func (e *infrastructureError) Error() string { return e.err.Error() }
func (e *infrastructureError) Unwrap() error { return e.err }

// Infrastructure marks err as a failure of what the handler depends on (its
// database, NATS, a neighbour service that is down), not of the message: a
// Consumer retries the message without counting the attempt toward
// MaxDeliver, however long the failure lasts. Infrastructure(nil) is nil.
// The mark survives further wrapping with %w.
func Infrastructure(err error) error {
	if err == nil {
		return nil
	}
	return &infrastructureError{err: err}
}

// IsInfrastructure reports whether err is an infrastructure failure: marked
// with Infrastructure, a context deadline, the database unavailable as
// db.IsUnavailable tells it (connection refused or lost, server shutting
// down, engine busy or locked, deadlock, serialization failure, closed
// handle), or NATS unreachable.
func IsInfrastructure(err error) bool {
	if err == nil {
		return false
	}
	var infra *infrastructureError
	return errors.As(err, &infra) ||
		errors.Is(err, context.DeadlineExceeded) ||
		db.IsUnavailable(err) ||
		natsUnavailable(err)
}

// natsUnavailable reports whether err says NATS or JetStream, rather than
// the message, failed: the connection is down, closing or reconnecting, an
// acknowledgement did not come in time, or JetStream is unavailable. A
// message JetStream refused (no stream binds its subject, it is too large,
// the stream is full) is not.
func natsUnavailable(err error) bool {
	for _, target := range []error{
		nats.ErrConnectionClosed, nats.ErrConnectionDraining, nats.ErrDrainTimeout,
		nats.ErrConnectionReconnecting, nats.ErrDisconnected, nats.ErrNoServers, nats.ErrTimeout,
		nats.ErrReconnectBufExceeded, nats.ErrStaleConnection, nats.ErrAuthorization, nats.ErrInvalidConnection,
		jetstream.ErrTooManyStalledMsgs, jetstream.ErrAsyncPublishTimeout,
		jetstream.ErrJetStreamNotEnabled, jetstream.ErrJetStreamNotEnabledForAccount,
		context.DeadlineExceeded,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 503 {
		return true // "JetStream system temporarily unavailable" and the like
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}
