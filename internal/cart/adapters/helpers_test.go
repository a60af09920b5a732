package adapters_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// redisTestURL is the Redis server tests use (database 0; every test keeps
// to its own key prefix).
const redisTestURL = "redis://127.0.0.1:6379/0"

func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(redisTestURL)
	require.NoError(t, err)
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	require.NoError(t, client.Ping(t.Context()).Err(), "Redis must run at %s", redisTestURL)
	return client
}

// redisPrefix returns a key prefix unique to this test and deletes every
// key under it when the test ends.
func redisPrefix(t *testing.T) string {
	t.Helper()
	prefix := "mercato-test:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer client.Close()
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Logf("list test keys: %v", err)
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				t.Logf("delete test keys: %v", err)
			}
		}
	})
	return prefix
}
