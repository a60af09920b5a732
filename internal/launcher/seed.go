package launcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// demoProduct is the body of POST /api/v1/products.
type demoProduct struct {
	SKU         string   `json:"sku"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	PriceCents  int32    `json:"price_cents"`
	Currency    string   `json:"currency"`
	Categories  []string `json:"categories"`
	ImageURL    string   `json:"image_url"`
}

func product(sku, name string, priceCents int32, description string, categories ...string) demoProduct {
	return demoProduct{
		SKU:         sku,
		Name:        name,
		Description: description,
		PriceCents:  priceCents,
		Currency:    "USD",
		Categories:  categories,
		ImageURL:    "https://picsum.photos/seed/" + strings.ToLower(sku) + "/800/800",
	}
}

// demoCatalog is what an empty catalog is seeded with: enough products in
// enough categories to page, search and filter through.
var demoCatalog = []demoProduct{
	product("COF-ETH-250", "Ethiopia Yirgacheffe Whole Bean Coffee", 1699,
		"Washed heirloom Arabica from Gedeo. Light roast with notes of jasmine, bergamot and lemon curd. 250 g bag.", "coffee"),
	product("COF-COL-500", "Colombia Huila Medium Roast Coffee", 2199,
		"Caturra and Castillo from smallholder farms in Huila. Milk chocolate, red apple and panela sweetness. 500 g bag.", "coffee"),
	product("COF-SUM-250", "Sumatra Mandheling Dark Roast Coffee", 1549,
		"Wet-hulled Sumatran coffee with a heavy body, cedar and dark cocoa. Built for French press and espresso. 250 g bag.", "coffee"),
	product("COF-DEC-250", "Swiss Water Decaf House Blend", 1499,
		"Chemical-free decaffeinated blend of Brazil and Peru. Toasted almond, caramel and a soft finish. 250 g bag.", "coffee"),
	product("COF-ESP-1000", "Espresso Blend Whole Bean, 1 kg", 3899,
		"Our house espresso: Brazil, Guatemala and Ethiopia roasted for sweetness under milk. Hazelnut and dark cherry.", "coffee"),
	product("TEA-SEN-100", "Japanese Sencha Green Tea", 1299,
		"First-flush steamed sencha from Shizuoka. Grassy, bright and savoury. 100 g loose leaf.", "tea"),
	product("TEA-ASM-200", "Assam Breakfast Black Tea", 1099,
		"Malty, full-bodied second-flush Assam that stands up to milk. 200 g loose leaf.", "tea"),
	product("TEA-EGR-100", "Earl Grey with Cornflower", 1199,
		"Ceylon black tea scented with cold-pressed bergamot oil and blue cornflower petals. 100 g loose leaf.", "tea"),
	product("TEA-CHM-050", "Egyptian Chamomile Flowers", 899,
		"Whole chamomile blossoms, caffeine free, with a honeyed apple aroma. 50 g.", "tea"),
	product("TEA-OOL-100", "Tieguanyin Oolong", 1899,
		"Lightly oxidised Anxi oolong with an orchid fragrance that opens over several infusions. 100 g.", "tea"),
	product("KIT-KTL-GOOSE", "Gooseneck Pour-Over Kettle, 1 L", 5499,
		"Stainless steel stovetop kettle with a precise gooseneck spout and built-in thermometer.", "kitchen", "coffee"),
	product("KIT-GRN-BURR", "Conical Burr Coffee Grinder", 12900,
		"Steel conical burrs with 40 grind settings, from espresso to cold brew. Low-retention chute.", "kitchen", "coffee"),
	product("KIT-TPT-CAST", "Cast Iron Teapot, 800 ml", 4599,
		"Enamelled Japanese-style tetsubin with a removable stainless infuser basket.", "kitchen", "tea"),
	product("KIT-KNF-CHEF", "8-inch Chef's Knife", 8900,
		"Forged high-carbon stainless steel blade, full tang, 15-degree edge, pakkawood handle.", "kitchen"),
	product("KIT-BRD-WAL", "End-Grain Walnut Cutting Board", 11500,
		"Hand-finished black walnut board, 16 x 12 inches, kind to knife edges. Oiled with food-safe mineral oil.", "kitchen"),
	product("BOK-WCF-001", "The World Atlas of Coffee", 3500,
		"From bean to brew: the origins, varieties and methods behind great coffee. Hardcover, second edition.", "books", "coffee"),
	product("BOK-TEA-002", "The Story of Tea: A Cultural History", 2800,
		"A guide to tea's history, production and the six families of tea, with brewing notes for each.", "books", "tea"),
	product("BOK-SFA-003", "Salt, Fat, Acid, Heat", 3000,
		"The four elements of good cooking, explained and illustrated. Hardcover.", "books", "kitchen"),
	product("BOK-BRD-004", "Flour Water Salt Yeast", 2999,
		"Fundamentals of artisan bread and pizza, with step-by-step schedules that fit a working day.", "books", "kitchen"),
	product("BOK-DDD-005", "Designing Data-Intensive Applications", 4999,
		"The big ideas behind reliable, scalable and maintainable systems. Paperback.", "books"),
	product("APP-TEE-LOGO", "Mercato Logo T-Shirt", 2400,
		"Heavyweight organic cotton tee with a small chest logo. Unisex fit, pre-shrunk.", "apparel"),
	product("APP-HOD-GRY", "Heather Grey Pullover Hoodie", 5800,
		"Brushed-back fleece hoodie with a lined hood and kangaroo pocket.", "apparel"),
	product("APP-APR-CNV", "Waxed Canvas Barista Apron", 4200,
		"Waxed cotton canvas with leather straps, cross-back design and two front pockets.", "apparel", "coffee"),
	product("APP-CAP-NVY", "Navy Six-Panel Cap", 2200,
		"Washed cotton twill cap with an adjustable brass buckle.", "apparel"),
}

// seeder adds the demo catalog through the gateway's public API, as an
// administrator would.
type seeder struct {
	client   *http.Client
	baseURL  string
	email    string
	password string
}

// demoStock is how many units of each demo product are put on hand, enough
// for a demo to check out without first visiting the inventory API.
const demoStock = 100

// seed logs in as the administrator and, when the catalog is empty, creates
// every demo product and sets its stock to demoStock. A product whose sku
// already exists (created concurrently) is not created again but is still
// stocked. A catalog that is not empty is left alone, stock included, so a
// second run keeps whatever was sold or set meanwhile. It returns how many
// products it created.
func (s seeder) seed(ctx context.Context) (int, error) {
	token, err := s.login(ctx)
	if err != nil {
		return 0, err
	}
	var page struct {
		Products []json.RawMessage `json:"products"`
	}
	status, detail, err := s.call(ctx, http.MethodGet, "/api/v1/products?page_size=1", "", nil, &page)
	if err != nil {
		return 0, fmt.Errorf("list products: %w", err)
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("list products: unexpected status %d: %s", status, detail)
	}
	if len(page.Products) > 0 {
		return 0, nil
	}
	created := 0
	for _, p := range demoCatalog {
		status, detail, err := s.call(ctx, http.MethodPost, "/api/v1/products", token, p, nil)
		if err != nil {
			return created, fmt.Errorf("create product %s: %w", p.SKU, err)
		}
		switch status {
		case http.StatusCreated, http.StatusOK:
			created++
		case http.StatusConflict:
		default:
			return created, fmt.Errorf("create product %s: unexpected status %d: %s", p.SKU, status, detail)
		}
		if err := s.stock(ctx, token, p.SKU); err != nil {
			return created, err
		}
	}
	return created, nil
}

// stock sets sku's stock on hand to demoStock.
func (s seeder) stock(ctx context.Context, token, sku string) error {
	status, detail, err := s.call(ctx, http.MethodPut, "/api/v1/inventory/"+url.PathEscape(sku), token,
		map[string]int32{"on_hand": demoStock}, nil)
	if err != nil {
		return fmt.Errorf("stock product %s: %w", sku, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("stock product %s: unexpected status %d: %s", sku, status, detail)
	}
	return nil
}

// loginWindow is how long a refused login is retried: identity may still
// be writing the administrator when it first reports ready.
const loginWindow = 5 * time.Second

func (s seeder) login(ctx context.Context) (string, error) {
	body := map[string]string{"email": s.email, "password": s.password}
	deadline := time.Now().Add(loginWindow)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var pair struct {
			AccessToken string `json:"access_token"`
		}
		status, detail, err := s.call(ctx, http.MethodPost, "/api/v1/auth/login", "", body, &pair)
		if err == nil && status == http.StatusOK && pair.AccessToken != "" {
			return pair.AccessToken, nil
		}
		if err == nil {
			err = fmt.Errorf("unexpected status %d: %s", status, detail)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("log in as %s: %w", s.email, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

// call sends a JSON request and decodes a 2xx JSON answer into out. For
// any other status it returns the problem's detail (or the start of the
// body) to explain it.
func (s seeder) call(ctx context.Context, method, path, token string, in, out any) (status int, detail string, err error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, "", err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.baseURL+path, body)
	if err != nil {
		return 0, "", err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, "", err
	}
	if resp.StatusCode/100 != 2 {
		var problem struct {
			Detail string `json:"detail"`
		}
		if json.Unmarshal(b, &problem) == nil && problem.Detail != "" {
			return resp.StatusCode, problem.Detail, nil
		}
		return resp.StatusCode, string(b[:min(len(b), 200)]), nil
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, "", errors.New("undecodable response")
		}
	}
	return resp.StatusCode, "", nil
}
