package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"

	"github.com/mercato-dev/mercato/internal/platform/events"
)

func TestIsInfrastructure(t *testing.T) {
	t.Parallel()
	replica, proxy := openPostgresBehindProxy(t)
	proxy.cut()
	_, unreachable := replica.ExecContext(t.Context(), `SELECT 1`)
	expired, cancel := context.WithTimeout(t.Context(), 0)
	defer cancel()
	<-expired.Done()
	notJSON := json.Unmarshal([]byte(`{`), &struct{}{})

	for _, err := range []error{
		events.Infrastructure(errors.New("inventory: connection refused")),
		fmt.Errorf("read the replica: %w", unreachable),
		fmt.Errorf("lookup: %w", expired.Err()),
		fmt.Errorf("publish: %w", nats.ErrConnectionClosed),
		jetstream.ErrAsyncPublishTimeout,
	} {
		assert.True(t, events.IsInfrastructure(err), "%v", err)
	}
	for _, err := range []error{
		nil,
		errors.New("unknown product"),
		events.Permanent(errors.New("malformed")),
		notJSON,
		nats.ErrMaxPayload,
		jetstream.ErrNoStreamResponse,
	} {
		assert.False(t, events.IsInfrastructure(err), "%v", err)
	}
	assert.NoError(t, events.Infrastructure(nil))
	assert.ErrorIs(t, events.Infrastructure(unreachable), unreachable, "the mark keeps the cause")
}

// The relay backs off as a whole only for NATS; a row JetStream refuses
// waits on its own.
func TestRelayTellsNATSDownFromARefusedRow(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		nats.ErrConnectionClosed, nats.ErrConnectionReconnecting, nats.ErrNoServers, nats.ErrTimeout,
		jetstream.ErrAsyncPublishTimeout, jetstream.ErrTooManyStalledMsgs, jetstream.ErrJetStreamNotEnabled,
		context.DeadlineExceeded,
		&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"},
	} {
		assert.True(t, events.NATSUnavailable(fmt.Errorf("publish event e1: %w", err)), "%v", err)
	}
	for _, err := range []error{
		nats.ErrMaxPayload, nats.ErrBadSubject, nats.ErrPermissionViolation,
		jetstream.ErrNoStreamResponse, jetstream.ErrStreamMessageExceedsMaximum,
		&jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"},
	} {
		assert.False(t, events.NATSUnavailable(fmt.Errorf("publish event e1: %w", err)), "%v", err)
	}
}
