// Package app holds the catalog's use cases: who may do what, and in which
// order the domain and the repository are consulted. It knows no transport
// and no SQL.
package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/mercato-dev/mercato/internal/catalog/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
)

// Paging and lookup limits.
const (
	DefaultPageSize = pagination.DefaultPageSize
	MaxPageSize     = pagination.MaxPageSize
	MaxQueryLength  = 200 // runes
	MaxBatchIDs     = 100
)

// updateAttempts bounds how often an update without If-Match is re-applied
// to a fresher version after losing a race. An attempt only fails when
// another write committed since it read the product, so up to this many
// writers racing on one product all succeed; beyond that a writer may get
// ErrConcurrentMod.
const updateAttempts = 10

// ProductRepository stores products. Implementations are safe for
// concurrent use. Every write records its event in the same transaction as
// the change, so the event exists if and only if the change committed.
type ProductRepository interface {
	// Create stores p (version 1) with ev. ErrSKUTaken when the sku exists.
	Create(ctx context.Context, p domain.Product, ev events.Event) error
	// Get returns the product with id, or ErrNotFound.
	Get(ctx context.Context, id string) (domain.Product, error)
	// BatchGet returns the products among ids that exist, in any order.
	BatchGet(ctx context.Context, ids []string) ([]domain.Product, error)
	// Update replaces the stored product p.ID with p if it is still at
	// version expected, else returns ErrVersionConflict and writes nothing.
	Update(ctx context.Context, p domain.Product, expected int64, ev events.Event) error
	// Delete removes product id if it is still at version expected, else
	// returns ErrVersionConflict and writes nothing.
	Delete(ctx context.Context, id string, expected int64, ev events.Event) error
	// List returns up to limit products matching f with ids greater than
	// after (any id when after is ""), in ascending id order.
	List(ctx context.Context, f ListFilter, after string, limit int) ([]domain.Product, error)
}

// ListFilter selects products.
type ListFilter struct {
	// Query is matched, case-insensitively and literally (no wildcards),
	// as a substring of the name or the description. Empty matches all.
	Query string
	// Category is an exact category slug. Empty matches all.
	Category string
}

// scope names the result set a page token belongs to. Searching ignores
// case, so queries differing only in case share their tokens.
func (f ListFilter) scope() string { return strings.ToLower(f.Query) + "\x00" + f.Category }

// Catalog runs the catalog's use cases. It is safe for concurrent use.
type Catalog struct {
	repo   ProductRepository
	cache  ProductCache // nil: every read goes to repo
	tokens pagination.Tokens
	now    func() time.Time
}

// NewCatalog returns the use cases over repo. pageTokenKey signs list page
// tokens; it must not be empty and must be the same on every replica.
func NewCatalog(repo ProductRepository, pageTokenKey []byte, opts ...Option) *Catalog {
	c := &Catalog{
		repo:   repo,
		tokens: pagination.NewTokens(pageTokenKey, "products"),
		// Microseconds are what PostgreSQL keeps, so what a write returns
		// equals what a later read returns.
		now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// CreateProduct adds a product. Admins only.
func (c *Catalog) CreateProduct(ctx context.Context, in domain.ProductInput) (domain.Product, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return domain.Product{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return domain.Product{}, fmt.Errorf("generate product id: %w", err)
	}
	p, err := domain.NewProduct(id.String(), in, c.now())
	if err != nil {
		return domain.Product{}, err
	}
	ev, err := productEvent(domain.SubjectProductCreated, p)
	if err != nil {
		return domain.Product{}, err
	}
	if err := c.repo.Create(ctx, p, ev); err != nil {
		return domain.Product{}, fmt.Errorf("create product: %w", err)
	}
	// Nobody can have read the new id yet, but a "not found" cached for
	// it would hide the product: the invalidation makes sure.
	c.invalidate(ctx, p.ID, p.Version)
	return p, nil
}

// GetProduct returns a product. Anyone may read; an id that is not a
// product id at all is simply not found.
func (c *Catalog) GetProduct(ctx context.Context, id string) (domain.Product, error) {
	canonical, ok := canonicalID(id)
	if !ok {
		return domain.Product{}, domain.ErrNotFound
	}
	if c.cache != nil {
		return c.getCached(ctx, canonical)
	}
	p, err := c.repo.Get(ctx, canonical)
	if err != nil {
		return domain.Product{}, fmt.Errorf("get product: %w", err)
	}
	return p, nil
}

// BatchGetProducts returns the products among ids that exist, in the order
// asked, each once. At most MaxBatchIDs ids.
func (c *Catalog) BatchGetProducts(ctx context.Context, ids []string) ([]domain.Product, error) {
	if len(ids) > MaxBatchIDs {
		return nil, ErrTooManyIDs
	}
	order := make([]string, 0, len(ids))
	for _, id := range ids {
		if canonical, ok := canonicalID(id); ok && !slices.Contains(order, canonical) {
			order = append(order, canonical)
		}
	}
	if len(order) == 0 {
		return []domain.Product{}, nil
	}
	var (
		found []domain.Product
		err   error
	)
	if c.cache != nil {
		found, err = c.batchGetCached(ctx, order)
	} else {
		found, err = c.repo.BatchGet(ctx, order)
	}
	if err != nil {
		return nil, fmt.Errorf("batch get products: %w", err)
	}
	byID := make(map[string]domain.Product, len(found))
	for _, p := range found {
		byID[p.ID] = p
	}
	out := make([]domain.Product, 0, len(found))
	for _, id := range order {
		if p, ok := byID[id]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// UpdateProduct is a partial update. Admins only.
type UpdateProduct struct {
	ID string
	// Fields names what to change (the update mask): any of name,
	// description, price_cents, currency, categories, image_url.
	Fields []string
	// Values holds the new values of the named fields; the others are
	// ignored.
	Values domain.ProductInput
	// IfMatch is the client's If-Match header, "" when absent. When set,
	// the update happens only if it matches the product's current ETag.
	IfMatch string
}

// UpdateProduct changes the named fields and returns the new version.
// Without If-Match a race with another writer is resolved by re-applying
// the change to the newer version, so no update is lost; with If-Match the
// loser gets ErrETagMismatch and nothing is written.
func (c *Catalog) UpdateProduct(ctx context.Context, cmd UpdateProduct) (domain.Product, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return domain.Product{}, err
	}
	patch, err := patchFromFields(cmd.Fields, cmd.Values)
	if err != nil {
		return domain.Product{}, err
	}
	id, ok := canonicalID(cmd.ID)
	if !ok {
		return domain.Product{}, domain.ErrNotFound
	}
	for range updateAttempts {
		current, err := c.repo.Get(ctx, id)
		if err != nil {
			return domain.Product{}, fmt.Errorf("update product: %w", err)
		}
		if cmd.IfMatch != "" && !current.MatchesIfMatch(cmd.IfMatch) {
			return domain.Product{}, domain.ErrETagMismatch
		}
		next, err := current.Apply(patch, c.now())
		if err != nil {
			return domain.Product{}, err
		}
		ev, err := productEvent(domain.SubjectProductUpdated, next)
		if err != nil {
			return domain.Product{}, err
		}
		err = c.repo.Update(ctx, next, current.Version, ev)
		if errors.Is(err, ErrVersionConflict) {
			if pinsVersion(cmd.IfMatch) {
				return domain.Product{}, domain.ErrETagMismatch
			}
			continue
		}
		if err != nil {
			return domain.Product{}, fmt.Errorf("update product: %w", err)
		}
		c.invalidate(ctx, next.ID, next.Version)
		return next, nil
	}
	return domain.Product{}, domain.ErrConcurrentMod
}

// DeleteProduct removes a product. Admins only. ifMatch works as in
// UpdateProduct.
func (c *Catalog) DeleteProduct(ctx context.Context, id, ifMatch string) error {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return err
	}
	canonical, ok := canonicalID(id)
	if !ok {
		return domain.ErrNotFound
	}
	for range updateAttempts {
		current, err := c.repo.Get(ctx, canonical)
		if err != nil {
			return fmt.Errorf("delete product: %w", err)
		}
		if ifMatch != "" && !current.MatchesIfMatch(ifMatch) {
			return domain.ErrETagMismatch
		}
		ev, err := productEvent(domain.SubjectProductDeleted, current)
		if err != nil {
			return err
		}
		err = c.repo.Delete(ctx, canonical, current.Version, ev)
		if errors.Is(err, ErrVersionConflict) {
			if pinsVersion(ifMatch) {
				return domain.ErrETagMismatch
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("delete product: %w", err)
		}
		c.invalidate(ctx, canonical, current.Version+1)
		return nil
	}
	return domain.ErrConcurrentMod
}

// ListProducts asks for one page of products.
type ListProducts struct {
	Query    string
	Category string
	// PageSize is 1..MaxPageSize; 0 means DefaultPageSize.
	PageSize int
	// PageToken is "" for the first page, else a NextPageToken returned for
	// the same Query and Category.
	PageToken string
}

// ProductPage is one page of a listing.
type ProductPage struct {
	Products []domain.Product
	// NextPageToken continues the listing; "" on the last page.
	NextPageToken string
}

// ListProducts returns one page in ascending id order, which is creation
// order since ids are UUIDv7. Pages are keyset-based, so products created
// or deleted while paging never cause a repeat or a skip of the others.
func (c *Catalog) ListProducts(ctx context.Context, q ListProducts) (ProductPage, error) {
	size, err := pagination.PageSize(q.PageSize)
	if err != nil {
		return ProductPage{}, err
	}
	f, err := newListFilter(q.Query, q.Category)
	if err != nil {
		return ProductPage{}, err
	}
	after := ""
	if q.PageToken != "" {
		if after, err = c.tokens.Parse(q.PageToken, f.scope()); err != nil {
			return ProductPage{}, err
		}
	}
	products, err := c.repo.List(ctx, f, after, size+1)
	if err != nil {
		return ProductPage{}, fmt.Errorf("list products: %w", err)
	}
	page := ProductPage{Products: products}
	if len(products) > size {
		page.Products = products[:size]
		page.NextPageToken = c.tokens.Issue(page.Products[size-1].ID, f.scope())
	}
	return page, nil
}

func newListFilter(query, category string) (ListFilter, error) {
	query = strings.TrimSpace(query)
	switch {
	case !utf8.ValidString(query) || strings.ContainsFunc(query, unicode.IsControl):
		return ListFilter{}, ErrQueryCharacters
	case utf8.RuneCountInString(query) > MaxQueryLength:
		return ListFilter{}, ErrQueryTooLong
	case category != "" && !domain.ValidCategory(category):
		return ListFilter{}, ErrCategoryFilter
	}
	return ListFilter{Query: query, Category: category}, nil
}

// patchFromFields turns an update mask into a patch. Only the fields a
// client may change are accepted: naming sku, id, a timestamp or anything
// else is an error rather than silently ignored.
func patchFromFields(fields []string, v domain.ProductInput) (domain.ProductPatch, error) {
	var p domain.ProductPatch
	for _, f := range fields {
		switch f {
		case "name":
			p.Name = &v.Name
		case "description":
			p.Description = &v.Description
		case "price_cents":
			p.PriceCents = &v.PriceCents
		case "currency":
			p.Currency = &v.Currency
		case "categories":
			p.Categories = &v.Categories
		case "image_url":
			p.ImageURL = &v.ImageURL
		default:
			return domain.ProductPatch{}, apperr.Newf(apperr.Invalid,
				"field %q cannot be updated (allowed: name, description, price_cents, currency, categories, image_url)",
				truncate(f, 64))
		}
	}
	if p.Empty() {
		return domain.ProductPatch{}, domain.ErrNothingToDo
	}
	return p, nil
}

func productEvent(subject string, p domain.Product) (events.Event, error) {
	payload, err := domain.EventPayload(p)
	if err != nil {
		return events.Event{}, err
	}
	return events.Event{Subject: subject, Payload: payload}, nil
}

// canonicalID returns id in the canonical lower-case UUID form, or false
// when it is not a UUID (and so cannot name a product).
func canonicalID(id string) (string, bool) {
	u, err := uuid.Parse(id)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// pinsVersion reports whether an If-Match header names specific versions
// (as opposed to "*", which any version satisfies).
func pinsVersion(ifMatch string) bool {
	return ifMatch != "" && strings.TrimSpace(ifMatch) != "*"
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
