// Package adapters implements the catalog's repository with SQL that runs
// unchanged on SQLite and PostgreSQL.
package adapters

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// Outbox records events inside a transaction and is told when some committed.
type Outbox interface {
	Add(ctx context.Context, tx *sql.Tx, ev events.Event) error
	Wake()
}

// ProductSQLRepository is the app.ProductRepository on SQLite or PostgreSQL.
//
// Categories live twice: as a JSON array on the product row, so reading a
// product is a single primary-key lookup, and in product_categories, indexed
// by (category, product_id), so filtering a listing by category is an index
// range scan in id order. Both are written in the same transaction.
//
// search_text holds the lower-cased name and description, lower-cased in Go
// so that case folding is the same (Unicode-aware) on both engines; a
// search is a LIKE over it with the pattern escaped, so the query is always
// taken literally.
type ProductSQLRepository struct {
	db     *db.DB
	outbox Outbox
	get    *sql.Stmt
}

var _ app.ProductRepository = (*ProductSQLRepository)(nil)

const productColumns = `id, sku, name, description, price_cents, currency, categories, image_url, created_at, updated_at, version`

// NewProductSQLRepository prepares the repository's hot statements on d,
// whose schema the catalog's migrations and events.EnsureSchema created.
// Close releases them.
func NewProductSQLRepository(ctx context.Context, d *db.DB, outbox Outbox) (*ProductSQLRepository, error) {
	get, err := d.PrepareContext(ctx, `SELECT `+productColumns+` FROM products WHERE id = $1`)
	if err != nil {
		return nil, fmt.Errorf("prepare get product: %w", err)
	}
	return &ProductSQLRepository{db: d, outbox: outbox, get: get}, nil
}

// Close releases the prepared statements; the database stays open.
func (r *ProductSQLRepository) Close() error { return r.get.Close() }

// Create implements app.ProductRepository.
func (r *ProductSQLRepository) Create(ctx context.Context, p domain.Product, ev events.Event) error {
	cats, err := encodeCategories(p.Categories)
	if err != nil {
		return err
	}
	err = r.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO products
			(id, sku, name, description, price_cents, currency, categories, image_url, search_text, created_at, updated_at, version)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			p.ID, p.SKU, p.Name, p.Description, p.PriceCents, p.Currency, cats, p.ImageURL,
			searchText(p), db.FormatTime(p.CreatedAt), db.FormatTime(p.UpdatedAt), p.Version)
		if db.IsUniqueViolation(err) {
			return domain.ErrSKUTaken
		}
		if err != nil {
			return fmt.Errorf("insert product: %w", err)
		}
		if err := insertCategories(ctx, tx, p.ID, p.Categories); err != nil {
			return err
		}
		return r.outbox.Add(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	r.outbox.Wake()
	return nil
}

// Get implements app.ProductRepository.
func (r *ProductSQLRepository) Get(ctx context.Context, id string) (domain.Product, error) {
	p, err := scanProduct(r.get.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Product{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Product{}, fmt.Errorf("select product: %w", err)
	}
	return p, nil
}

// BatchGet implements app.ProductRepository.
func (r *ProductSQLRepository) BatchGet(ctx context.Context, ids []string) ([]domain.Product, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := r.db.QueryContext(ctx,
		`SELECT `+productColumns+` FROM products WHERE id IN (`+placeholders(1, len(ids))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("select products: %w", err)
	}
	return collectProducts(rows)
}

// Update implements app.ProductRepository.
func (r *ProductSQLRepository) Update(ctx context.Context, p domain.Product, expected int64, ev events.Event) error {
	cats, err := encodeCategories(p.Categories)
	if err != nil {
		return err
	}
	err = r.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE products SET
			name = $1, description = $2, price_cents = $3, currency = $4, categories = $5,
			image_url = $6, search_text = $7, updated_at = $8, version = $9
			WHERE id = $10 AND version = $11`,
			p.Name, p.Description, p.PriceCents, p.Currency, cats,
			p.ImageURL, searchText(p), db.FormatTime(p.UpdatedAt), p.Version,
			p.ID, expected)
		if err != nil {
			return fmt.Errorf("update product: %w", err)
		}
		if err := expectOneRow(res); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM product_categories WHERE product_id = $1`, p.ID); err != nil {
			return fmt.Errorf("clear product categories: %w", err)
		}
		if err := insertCategories(ctx, tx, p.ID, p.Categories); err != nil {
			return err
		}
		return r.outbox.Add(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	r.outbox.Wake()
	return nil
}

// Delete implements app.ProductRepository.
func (r *ProductSQLRepository) Delete(ctx context.Context, id string, expected int64, ev events.Event) error {
	err := r.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM products WHERE id = $1 AND version = $2`, id, expected)
		if err != nil {
			return fmt.Errorf("delete product: %w", err)
		}
		if err := expectOneRow(res); err != nil {
			return err
		}
		// The foreign key cascades, but SQLite only enforces foreign keys on
		// connections that ask for it; this makes the delete not depend on it.
		if _, err := tx.ExecContext(ctx, `DELETE FROM product_categories WHERE product_id = $1`, id); err != nil {
			return fmt.Errorf("delete product categories: %w", err)
		}
		return r.outbox.Add(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	r.outbox.Wake()
	return nil
}

// List implements app.ProductRepository.
func (r *ProductSQLRepository) List(ctx context.Context, f app.ListFilter, after string, limit int) ([]domain.Product, error) {
	// The statement is assembled from constant fragments only; every value
	// travels as a parameter.
	var (
		q    strings.Builder
		args []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Category != "" {
		q.WriteString(`SELECT p.id, p.sku, p.name, p.description, p.price_cents, p.currency, p.categories, p.image_url,
			p.created_at, p.updated_at, p.version
			FROM product_categories c JOIN products p ON p.id = c.product_id
			WHERE c.category = ` + arg(f.Category) + ` AND c.product_id > ` + arg(after))
		if f.Query != "" {
			q.WriteString(` AND p.search_text LIKE ` + arg(likePattern(f.Query)) + ` ESCAPE '\'`)
		}
		q.WriteString(` ORDER BY c.product_id LIMIT ` + arg(limit))
	} else {
		q.WriteString(`SELECT ` + productColumns + ` FROM products WHERE id > ` + arg(after))
		if f.Query != "" {
			q.WriteString(` AND search_text LIKE ` + arg(likePattern(f.Query)) + ` ESCAPE '\'`)
		}
		q.WriteString(` ORDER BY id LIMIT ` + arg(limit))
	}
	rows, err := r.db.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	return collectProducts(rows)
}

func insertCategories(ctx context.Context, tx *sql.Tx, productID string, categories []string) error {
	if len(categories) == 0 {
		return nil
	}
	var values strings.Builder
	args := make([]any, 0, 2*len(categories))
	for i, c := range categories {
		if i > 0 {
			values.WriteString(", ")
		}
		fmt.Fprintf(&values, "($%d, $%d)", 2*i+1, 2*i+2)
		args = append(args, productID, c)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO product_categories (product_id, category) VALUES `+values.String(), args...); err != nil {
		return fmt.Errorf("insert product categories: %w", err)
	}
	return nil
}

func expectOneRow(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("rows affected: %w", err)
	}
	if n != 1 {
		return app.ErrVersionConflict
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

func scanProduct(row rowScanner) (domain.Product, error) {
	var (
		p    domain.Product
		cats string
	)
	err := row.Scan(&p.ID, &p.SKU, &p.Name, &p.Description, &p.PriceCents, &p.Currency, &cats, &p.ImageURL,
		db.Time(&p.CreatedAt), db.Time(&p.UpdatedAt), &p.Version)
	if err != nil {
		return domain.Product{}, err
	}
	if err := json.Unmarshal([]byte(cats), &p.Categories); err != nil {
		return domain.Product{}, fmt.Errorf("decode categories of product %s: %w", p.ID, err)
	}
	if p.Categories == nil {
		p.Categories = []string{}
	}
	return p, nil
}

func collectProducts(rows *sql.Rows) ([]domain.Product, error) {
	defer rows.Close()
	var out []domain.Product
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, fmt.Errorf("scan product: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read products: %w", err)
	}
	return out, nil
}

func encodeCategories(cats []string) (string, error) {
	if cats == nil {
		cats = []string{}
	}
	b, err := json.Marshal(cats)
	if err != nil {
		return "", fmt.Errorf("encode categories: %w", err)
	}
	return string(b), nil
}

// searchText is what a search looks in. The line break keeps a query from
// matching across the end of the name and the start of the description;
// queries cannot contain one.
func searchText(p domain.Product) string {
	return strings.ToLower(p.Name) + "\n" + strings.ToLower(p.Description)
}

// likePattern matches s as a literal, case-insensitive substring of
// search_text, with '\' as the escape character.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(s)) + "%"
}

func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(from+i))
	}
	return b.String()
}
