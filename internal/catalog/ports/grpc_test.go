package ports_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mercato-dev/mercato/internal/catalog"
	"github.com/mercato-dev/mercato/internal/catalog/adapters"
	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/domain"
	"github.com/mercato-dev/mercato/internal/catalog/ports"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// harness is the catalog's gRPC server over an in-memory connection, with
// the production interceptors (error mapping, authentication) and a real
// SQLite database and outbox.
type harness struct {
	client   catalogv1.CatalogServiceClient
	db       *db.DB
	admin    string
	customer string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	d := dbtest.Open(t, dbtest.SQLiteURL(t))
	require.NoError(t, catalog.MigrateDB(t.Context(), d))
	repo, err := adapters.NewProductSQLRepository(t.Context(), d, events.NewOutbox(d))
	require.NoError(t, err)
	t.Cleanup(func() { _ = repo.Close() })

	issuer := authtest.New(t)
	logger := slog.New(slog.DiscardHandler)
	verifier := auth.NewVerifier(issuer.KeySource(), auth.DefaultIssuer, auth.DefaultAudience)
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(
		server.ErrorMapping(logger),
		auth.UnaryServerInterceptor(verifier, logger, ports.PublicMethods...),
	))
	catalogv1.RegisterCatalogServiceServer(gs, ports.NewGRPCServer(app.NewCatalog(repo, []byte("ports-test-key-0123456789abcdef"))))
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &harness{
		client: catalogv1.NewCatalogServiceClient(conn), db: d,
		admin: issuer.Token("admin-1", auth.RoleAdmin), customer: issuer.Token("user-1", auth.RoleCustomer),
	}
}

// as returns ctx carrying token (none when token is "") and extra metadata pairs.
func as(ctx context.Context, token string, kv ...string) context.Context {
	if token != "" {
		kv = append(kv, "authorization", "Bearer "+token)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func createRequest(sku string) *catalogv1.CreateProductRequest {
	return &catalogv1.CreateProductRequest{
		Sku: sku, Name: "Pour-over kettle", Description: "Gooseneck, 1 L.",
		PriceCents: 5499, Currency: "usd", Categories: []string{"kitchen", "coffee"},
		ImageUrl: "https://img.example.com/kettle.png",
	}
}

func (h *harness) create(t *testing.T, sku string) *catalogv1.Product {
	t.Helper()
	p, err := h.client.CreateProduct(as(t.Context(), h.admin), createRequest(sku))
	require.NoError(t, err)
	return p
}

func (h *harness) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, h.db.QueryRowContext(t.Context(), query, args...).Scan(&n))
	return n
}

func (h *harness) outbox(t *testing.T, subject string) int {
	return h.count(t, `SELECT COUNT(*) FROM outbox WHERE subject = $1`, subject)
}

// requireStatus checks the gRPC code, the client-visible message and the
// error kind the gateway maps to an HTTP status.
func requireStatus(t *testing.T, err error, code codes.Code, reason, message string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	require.Equal(t, code, st.Code(), st.Message())
	if message != "" {
		require.Equal(t, message, st.Message())
	}
	var got string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			got = info.GetReason()
		}
	}
	require.Equal(t, reason, got)
}

func TestCreateAndGet(t *testing.T) {
	h := newHarness(t)
	var header metadata.MD
	created, err := h.client.CreateProduct(as(t.Context(), h.admin), createRequest("kettle-1"), grpc.Header(&header))
	require.NoError(t, err)
	require.Equal(t, "KETTLE-1", created.GetSku())
	require.Equal(t, "USD", created.GetCurrency())
	require.Equal(t, []string{`"v1"`}, header.Get("etag"))
	_, err = uuid.Parse(created.GetId())
	require.NoError(t, err)

	got, err := h.client.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: created.GetId()}, grpc.Header(&header))
	require.NoError(t, err, "anonymous reads are allowed")
	require.Equal(t, created.GetName(), got.GetName())
	require.Equal(t, created.GetCreatedAt().AsTime(), got.GetCreatedAt().AsTime())
	require.Equal(t, []string{`"v1"`}, header.Get("etag"))

	got, err = h.client.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: strings.ToUpper(created.GetId())})
	require.NoError(t, err, "ids are case-insensitive")
	require.Equal(t, created.GetId(), got.GetId())

	for _, id := range []string{uuid.NewString(), "not-a-uuid", "", "'; DROP TABLE products; --"} {
		_, err = h.client.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: id})
		requireStatus(t, err, codes.NotFound, "not_found", "product not found")
	}
}

func TestCreateValidation(t *testing.T) {
	h := newHarness(t)
	req := createRequest("bad-price")
	req.PriceCents = -100
	_, err := h.client.CreateProduct(as(t.Context(), h.admin), req)
	requireStatus(t, err, codes.InvalidArgument, "invalid", "price_cents must be greater than 0")

	req = createRequest("bad-currency")
	req.Currency = "BTC"
	_, err = h.client.CreateProduct(as(t.Context(), h.admin), req)
	requireStatus(t, err, codes.InvalidArgument, "invalid", "")
	require.Contains(t, status.Convert(err).Message(), "currency")
	require.Equal(t, 0, h.count(t, `SELECT COUNT(*) FROM products`))
}

func TestOutboxFollowsTheInsert(t *testing.T) {
	h := newHarness(t)
	p := h.create(t, "mug-1")
	var payload string
	require.NoError(t, h.db.QueryRowContext(t.Context(),
		`SELECT payload FROM outbox WHERE subject = 'product.created'`).Scan(&payload))
	require.Contains(t, payload, `"id":"`+p.GetId()+`"`)
	require.Contains(t, payload, `"version":1`)

	_, err := h.client.CreateProduct(as(t.Context(), h.admin), createRequest("MUG-1"))
	requireStatus(t, err, codes.AlreadyExists, "conflict", "sku already exists")
	require.Equal(t, 1, h.count(t, `SELECT COUNT(*) FROM products`))
	require.Equal(t, 1, h.outbox(t, "product.created"), "no event for the failed insert")
}

func TestWritesNeedAnAdmin(t *testing.T) {
	h := newHarness(t)
	p := h.create(t, "guarded")
	update := &catalogv1.UpdateProductRequest{
		Id: p.GetId(), Product: &catalogv1.Product{Name: "Hijacked"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
	}
	callers := []struct {
		name   string
		token  string
		code   codes.Code
		reason string
	}{
		{"anonymous", "", codes.Unauthenticated, "unauthenticated"},
		{"customer", h.customer, codes.PermissionDenied, "forbidden"},
		{"garbage token", "not.a.jwt", codes.Unauthenticated, "unauthenticated"},
	}
	for _, c := range callers {
		t.Run(c.name, func(t *testing.T) {
			ctx := as(t.Context(), c.token)
			_, err := h.client.CreateProduct(ctx, createRequest("intruder"))
			requireStatus(t, err, c.code, c.reason, "")
			_, err = h.client.UpdateProduct(ctx, update)
			requireStatus(t, err, c.code, c.reason, "")
			_, err = h.client.DeleteProduct(ctx, &catalogv1.DeleteProductRequest{Id: p.GetId()})
			requireStatus(t, err, c.code, c.reason, "")
		})
	}
	got, err := h.client.GetProduct(as(t.Context(), h.customer), &catalogv1.GetProductRequest{Id: p.GetId()})
	require.NoError(t, err, "customers may read")
	require.Equal(t, p.GetName(), got.GetName())
	require.Equal(t, 1, h.count(t, `SELECT COUNT(*) FROM products`))
	require.Equal(t, 0, h.outbox(t, "product.updated")+h.outbox(t, "product.deleted"))
}

func TestUpdate(t *testing.T) {
	h := newHarness(t)
	p := h.create(t, "tee-1")
	admin := as(t.Context(), h.admin)
	mask := func(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

	t.Run("changes only the masked fields", func(t *testing.T) {
		var header metadata.MD
		got, err := h.client.UpdateProduct(admin, &catalogv1.UpdateProductRequest{
			Id:         p.GetId(),
			Product:    &catalogv1.Product{Name: "Renamed tee", PriceCents: 999, Description: "ignored"},
			UpdateMask: mask("name", "price_cents"),
		}, grpc.Header(&header))
		require.NoError(t, err)
		require.Equal(t, "Renamed tee", got.GetName())
		require.Equal(t, int32(999), got.GetPriceCents())
		require.Equal(t, p.GetDescription(), got.GetDescription())
		require.Equal(t, p.GetCategories(), got.GetCategories())
		require.Equal(t, []string{`"v2"`}, header.Get("etag"))
		require.Equal(t, 1, h.outbox(t, "product.updated"))
	})

	t.Run("forbidden and empty masks", func(t *testing.T) {
		for _, path := range []string{"sku", "id", "created_at", "updated_at", "version", "nope"} {
			_, err := h.client.UpdateProduct(admin, &catalogv1.UpdateProductRequest{
				Id: p.GetId(), Product: &catalogv1.Product{Sku: "NEW", Name: "x"}, UpdateMask: mask("name", path),
			})
			requireStatus(t, err, codes.InvalidArgument, "invalid", "")
			require.Contains(t, status.Convert(err).Message(), `"`+path+`"`)
		}
		_, err := h.client.UpdateProduct(admin, &catalogv1.UpdateProductRequest{Id: p.GetId(), Product: &catalogv1.Product{Name: "x"}})
		requireStatus(t, err, codes.InvalidArgument, "invalid", "nothing to update")

		got, err := h.client.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: p.GetId()})
		require.NoError(t, err)
		require.Equal(t, "TEE-1", got.GetSku())
		require.Equal(t, "Renamed tee", got.GetName())
	})

	t.Run("invalid value", func(t *testing.T) {
		_, err := h.client.UpdateProduct(admin, &catalogv1.UpdateProductRequest{
			Id: p.GetId(), Product: &catalogv1.Product{PriceCents: -1}, UpdateMask: mask("price_cents"),
		})
		requireStatus(t, err, codes.InvalidArgument, "invalid", "price_cents must be greater than 0")
	})

	t.Run("unknown product", func(t *testing.T) {
		_, err := h.client.UpdateProduct(admin, &catalogv1.UpdateProductRequest{
			Id: uuid.NewString(), Product: &catalogv1.Product{Name: "x"}, UpdateMask: mask("name"),
		})
		requireStatus(t, err, codes.NotFound, "not_found", "product not found")
	})

	t.Run("If-Match", func(t *testing.T) {
		before := h.outbox(t, "product.updated")
		var current metadata.MD
		_, err := h.client.UpdateProduct(as(t.Context(), h.admin, "if-match", `"v1"`), &catalogv1.UpdateProductRequest{
			Id: p.GetId(), Product: &catalogv1.Product{Name: "Lost write"}, UpdateMask: mask("name"),
		}, grpc.Header(&current))
		requireStatus(t, err, codes.FailedPrecondition, "precondition_failed", "product was modified (ETag mismatch)")
		require.Equal(t, []string{`"v2"`}, current.Get("etag"), "the refusal names the current version")
		got, err := h.client.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: p.GetId()})
		require.NoError(t, err)
		require.Equal(t, "Renamed tee", got.GetName(), "nothing written")
		require.Equal(t, before, h.outbox(t, "product.updated"), "no event")

		var header metadata.MD
		for _, tag := range []string{`"v2"`, `*`} {
			_, err = h.client.UpdateProduct(as(t.Context(), h.admin, "if-match", tag), &catalogv1.UpdateProductRequest{
				Id: p.GetId(), Product: &catalogv1.Product{Categories: []string{"sale"}}, UpdateMask: mask("categories"),
			}, grpc.Header(&header))
			require.NoError(t, err, tag)
		}
		require.Equal(t, []string{`"v4"`}, header.Get("etag"))
	})
}

// Concurrent PATCHes never lose an update: without If-Match every one lands
// on a fresh version; with the same If-Match exactly one wins.
func TestConcurrentUpdates(t *testing.T) {
	h := newHarness(t)
	p := h.create(t, "contended")
	const writers = 8

	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = h.client.UpdateProduct(as(t.Context(), h.admin), &catalogv1.UpdateProductRequest{
				Id: p.GetId(), Product: &catalogv1.Product{PriceCents: int32(100 + i)},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"price_cents"}},
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	var header metadata.MD
	_, err := h.client.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: p.GetId()}, grpc.Header(&header))
	require.NoError(t, err)
	require.Equal(t, []string{fmt.Sprintf(`"v%d"`, writers+1)}, header.Get("etag"))
	require.Equal(t, writers, h.outbox(t, "product.updated"))

	current := header.Get("etag")[0]
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = h.client.UpdateProduct(as(t.Context(), h.admin, "if-match", current), &catalogv1.UpdateProductRequest{
				Id: p.GetId(), Product: &catalogv1.Product{Name: fmt.Sprintf("Writer %d", i)},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
			})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		requireStatus(t, err, codes.FailedPrecondition, "precondition_failed", "")
	}
	require.Equal(t, 1, won)
	require.Equal(t, writers+1, h.outbox(t, "product.updated"))
}

func TestDelete(t *testing.T) {
	h := newHarness(t)
	p := h.create(t, "gone-soon")
	admin := as(t.Context(), h.admin)

	_, err := h.client.DeleteProduct(as(t.Context(), h.admin, "if-match", `"v9"`), &catalogv1.DeleteProductRequest{Id: p.GetId()})
	requireStatus(t, err, codes.FailedPrecondition, "precondition_failed", "")

	_, err = h.client.DeleteProduct(admin, &catalogv1.DeleteProductRequest{Id: p.GetId()})
	require.NoError(t, err)
	_, err = h.client.GetProduct(t.Context(), &catalogv1.GetProductRequest{Id: p.GetId()})
	requireStatus(t, err, codes.NotFound, "not_found", "product not found")
	require.Equal(t, 1, h.outbox(t, "product.deleted"))

	_, err = h.client.DeleteProduct(admin, &catalogv1.DeleteProductRequest{Id: p.GetId()})
	requireStatus(t, err, codes.NotFound, "not_found", "product not found")
	_, err = h.client.DeleteProduct(admin, &catalogv1.DeleteProductRequest{Id: "nope"})
	requireStatus(t, err, codes.NotFound, "not_found", "product not found")
	require.Equal(t, 1, h.outbox(t, "product.deleted"))
}

func TestListProducts(t *testing.T) {
	h := newHarness(t)
	for i := range 5 {
		h.create(t, fmt.Sprintf("item-%d", i))
	}
	list := func(req *catalogv1.ListProductsRequest) (*catalogv1.ListProductsResponse, error) {
		return h.client.ListProducts(t.Context(), req)
	}

	first, err := list(&catalogv1.ListProductsRequest{PageSize: 2, Q: "kettle"})
	require.NoError(t, err)
	require.Len(t, first.GetProducts(), 2)
	token := first.GetNextPageToken()
	require.NotEmpty(t, token)

	second, err := list(&catalogv1.ListProductsRequest{PageSize: 2, Q: "KETTLE", PageToken: token})
	require.NoError(t, err, "the same query, differently cased")
	require.Len(t, second.GetProducts(), 2)
	require.NotEqual(t, first.GetProducts()[1].GetId(), second.GetProducts()[0].GetId())

	t.Run("page_size bounds", func(t *testing.T) {
		for _, size := range []int32{-1, 101} {
			_, err := list(&catalogv1.ListProductsRequest{PageSize: size})
			requireStatus(t, err, codes.InvalidArgument, "invalid", "page_size must be between 1 and 100")
		}
		page, err := list(&catalogv1.ListProductsRequest{PageSize: 100})
		require.NoError(t, err)
		require.Len(t, page.GetProducts(), 5)
		require.Empty(t, page.GetNextPageToken())
	})

	t.Run("bad page tokens", func(t *testing.T) {
		body, sig, ok := strings.Cut(token, ".")
		require.True(t, ok)
		flipped := []byte(sig)
		flipped[0] ^= 1
		if flipped[0] == '.' {
			flipped[0] = 'A'
		}
		forged := map[string]*catalogv1.ListProductsRequest{
			"garbage":          {PageToken: "hello", Q: "kettle"},
			"not base64":       {PageToken: "!!!.###", Q: "kettle"},
			"tampered body":    {PageToken: tamperBody(t, body) + "." + sig, Q: "kettle"},
			"tampered sig":     {PageToken: body + "." + string(flipped), Q: "kettle"},
			"no signature":     {PageToken: body, Q: "kettle"},
			"other query":      {PageToken: token, Q: "mug"},
			"no query":         {PageToken: token},
			"other category":   {PageToken: token, Q: "kettle", Category: "coffee"},
			"signed elsewhere": {PageToken: forgeToken(t), Q: "kettle"},
		}
		for name, req := range forged {
			t.Run(name, func(t *testing.T) {
				req.PageSize = 2
				_, err := list(req)
				requireStatus(t, err, codes.InvalidArgument, "invalid", "invalid page_token")
			})
		}
	})

	t.Run("bad filters", func(t *testing.T) {
		_, err := list(&catalogv1.ListProductsRequest{Q: strings.Repeat("q", 201)})
		requireStatus(t, err, codes.InvalidArgument, "invalid", "q must be at most 200 characters")
		_, err = list(&catalogv1.ListProductsRequest{Category: "Not A Slug"})
		requireStatus(t, err, codes.InvalidArgument, "invalid", "")
	})
}

// tamperBody rewrites the id a token continues after, keeping it well formed.
func tamperBody(t *testing.T, body string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(body)
	require.NoError(t, err)
	var fields map[string]string
	require.NoError(t, json.Unmarshal(raw, &fields))
	require.Contains(t, fields, "a")
	fields["a"] = uuid.NewString()
	raw, err = json.Marshal(fields)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// forgeToken is a well-formed token signed with a key the server does not have.
func forgeToken(t *testing.T) string {
	t.Helper()
	d := dbtest.Open(t, dbtest.SQLiteURL(t))
	require.NoError(t, catalog.MigrateDB(t.Context(), d))
	repo, err := adapters.NewProductSQLRepository(t.Context(), d, events.NewOutbox(d))
	require.NoError(t, err)
	t.Cleanup(func() { _ = repo.Close() })
	other := app.NewCatalog(repo, []byte("some-other-key-0123456789abcdef"))
	admin := auth.WithPrincipal(t.Context(), auth.Principal{UserID: "a", Role: auth.RoleAdmin})
	for i := range 2 {
		_, err := other.CreateProduct(admin, domain.ProductInput{
			SKU: fmt.Sprintf("f-%d", i), Name: "Kettle", PriceCents: 100, Currency: "EUR",
		})
		require.NoError(t, err)
	}
	page, err := other.ListProducts(t.Context(), app.ListProducts{Query: "kettle", PageSize: 1})
	require.NoError(t, err)
	require.NotEmpty(t, page.NextPageToken)
	return page.NextPageToken
}

func TestBatchGetProducts(t *testing.T) {
	h := newHarness(t)
	a := h.create(t, "a")
	b := h.create(t, "b")
	resp, err := h.client.BatchGetProducts(t.Context(), &catalogv1.BatchGetProductsRequest{
		Ids: []string{b.GetId(), uuid.NewString(), a.GetId()},
	})
	require.NoError(t, err)
	require.Len(t, resp.GetProducts(), 2)
	require.Equal(t, b.GetId(), resp.GetProducts()[0].GetId())
	require.Equal(t, a.GetId(), resp.GetProducts()[1].GetId())

	ids := make([]string, 101)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	_, err = h.client.BatchGetProducts(t.Context(), &catalogv1.BatchGetProductsRequest{Ids: ids})
	requireStatus(t, err, codes.InvalidArgument, "invalid", "ids must have at most 100 entries")
}
