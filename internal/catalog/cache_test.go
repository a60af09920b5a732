package catalog_test

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mercato-dev/mercato/internal/catalog"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// redisTestURL is the Redis server tests use; every test keeps to its own
// key prefix.
const redisTestURL = "redis://127.0.0.1:6379/0"

// visibleWithin is how soon every replica must see a change.
const visibleWithin = time.Second

// TestServiceCache runs two catalog replicas on one database and one NATS
// (both engines): a with the cache, b without it, as a replica that writes
// but never touches Redis. What b changes reaches a's readers only through
// the product events.
func TestServiceCache(t *testing.T) {
	natsURL := natstest.Start(t)
	issuer := authtest.New(t)
	jwks := httptest.NewServer(issuer.JWKSHandler())
	t.Cleanup(jwks.Close)

	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			base := catalog.Config{
				Server: server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
				DB:     db.Config{URL: engine.URL},
				Events: events.Config{URL: natsURL},
				Keys:   auth.KeysConfig{JWKSURL: jwks.URL + "/.well-known/jwks.json"},
			}
			cached := base
			cached.Cache = catalog.CacheConfig{RedisURL: redisTestURL, KeyPrefix: redisPrefix(t)}
			a := start(t, cached)
			b := start(t, base)
			ca, cb := dial(t, a), dial(t, b)
			admin := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+issuer.Token("admin-1", auth.RoleAdmin))
			d := dbtest.Open(t, engine.URL)
			renameBehindCatalog := func(id, name string) {
				_, err := d.ExecContext(t.Context(), `UPDATE products SET name = $1 WHERE id = $2`, name, id)
				require.NoError(t, err)
			}
			get := func(id string) (*catalogv1.Product, string, error) {
				var header metadata.MD
				p, err := ca.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: id}, grpc.Header(&header))
				return p, first(header.Get("etag")), err
			}

			created, err := ca.CreateProduct(admin, &catalogv1.CreateProductRequest{
				Sku: "CACHE-" + engine.Name, Name: "Cached kettle", PriceCents: 4599, Currency: "EUR", Categories: []string{"kitchen"},
			})
			require.NoError(t, err)
			_, etag, err := get(created.GetId())
			require.NoError(t, err)
			require.Equal(t, `"v1"`, etag)
			renameBehindCatalog(created.GetId(), "Renamed behind the catalog")
			got, etag, err := get(created.GetId())
			require.NoError(t, err)
			require.Equal(t, "Cached kettle", got.GetName(), "the second read is answered by the cache")
			require.Equal(t, `"v1"`, etag)

			_, err = ca.UpdateProduct(admin, &catalogv1.UpdateProductRequest{
				Id: created.GetId(), Product: &catalogv1.Product{Name: "Updated on a"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
			})
			require.NoError(t, err)
			got, etag, err = get(created.GetId())
			require.NoError(t, err)
			require.Equal(t, "Updated on a", got.GetName(), "a's own update is seen at once")
			require.Equal(t, `"v2"`, etag)

			_, err = cb.UpdateProduct(admin, &catalogv1.UpdateProductRequest{
				Id: created.GetId(), Product: &catalogv1.Product{PriceCents: 3999},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"price_cents"}},
			})
			require.NoError(t, err)
			requireWithin(t, visibleWithin, "b's update reaches a's readers", func() bool {
				got, etag, err := get(created.GetId())
				return err == nil && got.GetPriceCents() == 3999 && etag == `"v3"`
			})

			batch, err := ca.BatchGetProducts(t.Context(), &catalogv1.BatchGetProductsRequest{Ids: []string{created.GetId(), uuid.NewString()}})
			require.NoError(t, err)
			require.Len(t, batch.GetProducts(), 1)
			require.Equal(t, int32(3999), batch.GetProducts()[0].GetPriceCents())
			_, err = cb.DeleteProduct(admin, &catalogv1.DeleteProductRequest{Id: created.GetId()})
			require.NoError(t, err)
			requireWithin(t, visibleWithin, "b's delete reaches a's readers", func() bool {
				_, _, err := get(created.GetId())
				return status.Code(err) == codes.NotFound
			})
			batch, err = ca.BatchGetProducts(t.Context(), &catalogv1.BatchGetProductsRequest{Ids: []string{created.GetId()}})
			require.NoError(t, err)
			require.Empty(t, batch.GetProducts())

			second, err := ca.CreateProduct(admin, &catalogv1.CreateProductRequest{Sku: "CACHE-2-" + engine.Name, Name: "Mug", PriceCents: 900, Currency: "EUR"})
			require.NoError(t, err)
			_, _, err = get(second.GetId())
			require.NoError(t, err)
			_, err = ca.DeleteProduct(admin, &catalogv1.DeleteProductRequest{Id: second.GetId()})
			require.NoError(t, err)
			_, _, err = get(second.GetId())
			require.Equal(t, codes.NotFound, status.Code(err), "a's own delete is seen at once")

			metrics := scrape(t, a)
			require.Positive(t, sample(t, metrics, "mercato_catalog_cache_hits_total"))
			require.Positive(t, sample(t, metrics, "mercato_catalog_cache_misses_total"))
			require.Positive(t, sample(t, metrics, "mercato_catalog_cache_invalidations_total"))
			require.Zero(t, sample(t, metrics, `mercato_catalog_cache_errors_total{operation="lookup"}`))
		})
	}
}

// TestServiceCacheRedisDown: with Redis unreachable from the start the
// catalog is ready and answers every read from the database.
func TestServiceCacheRedisDown(t *testing.T) {
	issuer := authtest.New(t)
	jwks := httptest.NewServer(issuer.JWKSHandler())
	t.Cleanup(jwks.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := lis.Addr().String()
	require.NoError(t, lis.Close())

	svc := start(t, catalog.Config{ // start waits until /readyz answers 200
		Server: server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
		DB:     db.Config{URL: dbtest.SQLiteURL(t)},
		Events: events.Config{URL: natstest.Start(t)},
		Keys:   auth.KeysConfig{JWKSURL: jwks.URL + "/.well-known/jwks.json"},
		Cache:  catalog.CacheConfig{RedisURL: "redis://" + closed + "/0", Timeout: 50 * time.Millisecond},
	})
	client := dial(t, svc)
	admin := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+issuer.Token("admin-1", auth.RoleAdmin))

	created, err := client.CreateProduct(admin, &catalogv1.CreateProductRequest{Sku: "DOWN-1", Name: "Kettle", PriceCents: 100, Currency: "EUR"})
	require.NoError(t, err)
	for range 3 {
		got, err := client.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: created.GetId()})
		require.NoError(t, err)
		require.Equal(t, "Kettle", got.GetName())
	}
	_, err = client.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: uuid.NewString()})
	require.Equal(t, codes.NotFound, status.Code(err))
	batch, err := client.BatchGetProducts(t.Context(), &catalogv1.BatchGetProductsRequest{Ids: []string{created.GetId()}})
	require.NoError(t, err)
	require.Len(t, batch.GetProducts(), 1)

	// The create's invalidation failed; for a second after it, reads do
	// not even try Redis.
	metrics := scrape(t, svc)
	require.Positive(t, sample(t, metrics, `mercato_catalog_cache_errors_total{operation="invalidate"}`))
	require.GreaterOrEqual(t, sample(t, metrics, "mercato_catalog_cache_misses_total"), float64(5))
	require.Zero(t, sample(t, metrics, "mercato_catalog_cache_hits_total"))
}

func dial(t *testing.T, svc *catalog.Service) catalogv1.CatalogServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return catalogv1.NewCatalogServiceClient(conn)
}

// requireWithin polls cond until it holds, failing the test if it does not
// within d.
func requireWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	require.Eventually(t, cond, d, 5*time.Millisecond, "%s within %s", what, d)
	t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// scrape returns the service's /metrics page.
func scrape(t *testing.T, svc *catalog.Service) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+svc.HTTPAddr()+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}

// sample is the value of the series (name with its labels, as printed)
// on a metrics page, 0 when it is not there.
func sample(t *testing.T, page, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// redisPrefix returns a key prefix unique to this test and deletes every
// key under it when the test ends.
func redisPrefix(t *testing.T) string {
	t.Helper()
	prefix := "mercato-test:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		opts, err := redis.ParseURL(redisTestURL)
		if err != nil {
			t.Logf("parse Redis URL: %v", err)
			return
		}
		client := redis.NewClient(opts)
		defer client.Close()
		var keys []string
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
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
