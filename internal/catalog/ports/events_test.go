package ports_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/domain"
	"github.com/mercato-dev/mercato/internal/catalog/ports"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// recordingCache records invalidations and fails them while failing is set.
type recordingCache struct {
	app.ProductCache
	invalidated []string
	failing     bool
}

func (c *recordingCache) Invalidate(_ context.Context, id string, version int64) error {
	if c.failing {
		return errors.New("redis: connection refused")
	}
	c.invalidated = append(c.invalidated, id+"@"+strconv.FormatInt(version, 10))
	return nil
}

func TestProductCacheHandler(t *testing.T) {
	cache := &recordingCache{}
	handle := ports.ProductCacheHandler(app.NewCatalog(nil, []byte("ports-test-key-0123456789abcdef"), app.WithCache(cache)))
	id := uuid.NewString()
	deliver := func(subject, payload string) error {
		return handle(t.Context(), nil, events.Message{ID: uuid.NewString(), Subject: subject, Payload: []byte(payload)})
	}

	require.NoError(t, deliver(domain.SubjectProductCreated, `{"id":"`+id+`","version":1}`))
	require.NoError(t, deliver(domain.SubjectProductUpdated, `{"id":"`+id+`","version":3,"name":"x"}`))
	require.NoError(t, deliver(domain.SubjectProductDeleted, `{"id":"`+id+`","version":3}`))
	require.Equal(t, []string{id + "@1", id + "@3", id + "@4"}, cache.invalidated,
		"a delete makes the version after the last one current")

	for _, payload := range []string{`{"id":`, `{"version":2}`, `{"id":"` + id + `"}`} {
		require.True(t, events.IsPermanent(deliver(domain.SubjectProductUpdated, payload)), "payload %s", payload)
	}

	cache.failing = true
	err := deliver(domain.SubjectProductUpdated, `{"id":"`+id+`","version":4}`)
	require.Error(t, err)
	require.False(t, events.IsPermanent(err), "an unreachable cache is worth another delivery")

	without := ports.ProductCacheHandler(app.NewCatalog(nil, []byte("ports-test-key-0123456789abcdef")))
	require.NoError(t, without(t.Context(), nil, events.Message{Subject: domain.SubjectProductUpdated, Payload: []byte(`{"id":"` + id + `","version":4}`)}))
}
