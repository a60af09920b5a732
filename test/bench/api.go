package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// api is a client of the gateway's public API, as a shop front would use
// it: JSON bodies, bearer tokens, keep-alive connections.
type api struct {
	base   string
	client *http.Client
}

func newAPI(base string, conns int) api {
	return api{base: base, client: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			IdleConnTimeout:     time.Minute,
		},
	}}
}

// apiError is an answer with an unexpected status.
type apiError struct {
	status int
	detail string
}

func (e *apiError) Error() string {
	if e.detail == "" {
		return fmt.Sprintf("status %d", e.status)
	}
	return fmt.Sprintf("status %d: %s", e.status, e.detail)
}

// call sends in (when not nil) as JSON and decodes a want-status answer
// into out (when not nil); any other status is an *apiError. headers are
// name, value pairs.
func (a api) call(ctx context.Context, method, path, token string, in any, want int, out any, headers ...string) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		var problem struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(b, &problem)
		return &apiError{status: resp.StatusCode, detail: problem.Detail}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// statusOf is the HTTP status of err, or 0 when the request got no answer.
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status
	}
	return 0
}

func (a api) login(ctx context.Context, email, password string) (string, error) {
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	err := a.call(ctx, http.MethodPost, "/api/v1/auth/login", "",
		map[string]string{"email": email, "password": password}, http.StatusOK, &pair)
	if err != nil {
		return "", fmt.Errorf("log in as %s: %w", email, err)
	}
	return pair.AccessToken, nil
}

func (a api) register(ctx context.Context, email, password, name string) error {
	err := a.call(ctx, http.MethodPost, "/api/v1/auth/register", "",
		map[string]string{"email": email, "password": password, "name": name}, http.StatusCreated, nil)
	if err != nil {
		return fmt.Errorf("register %s: %w", email, err)
	}
	return nil
}

type productRef struct {
	ID  string `json:"id"`
	SKU string `json:"sku"`
}

// products returns up to n products of the catalog's first page.
func (a api) products(ctx context.Context, n int) ([]productRef, error) {
	var page struct {
		Products []productRef `json:"products"`
	}
	if err := a.call(ctx, http.MethodGet, fmt.Sprintf("/api/v1/products?page_size=%d", min(n, 100)), "", nil, http.StatusOK, &page); err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	return page.Products, nil
}

type stockLevel struct {
	SKU       string `json:"sku"`
	OnHand    int64  `json:"on_hand"`
	Reserved  int64  `json:"reserved"`
	Available int64  `json:"available"`
	Sold      int64  `json:"sold"`
}

func (a api) setStock(ctx context.Context, adminToken, sku string, onHand int32) error {
	if err := a.call(ctx, http.MethodPut, "/api/v1/inventory/"+sku, adminToken,
		map[string]int32{"on_hand": onHand}, http.StatusOK, nil); err != nil {
		return fmt.Errorf("set stock of %s: %w", sku, err)
	}
	return nil
}

func (a api) stock(ctx context.Context, adminToken, sku string) (stockLevel, error) {
	var s stockLevel
	if err := a.call(ctx, http.MethodGet, "/api/v1/inventory/"+sku, adminToken, nil, http.StatusOK, &s); err != nil {
		return stockLevel{}, fmt.Errorf("get stock of %s: %w", sku, err)
	}
	return s, nil
}

type orderItem struct {
	ProductID string `json:"product_id"`
	Quantity  int32  `json:"quantity"`
}

type address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

type placeOrderBody struct {
	Items           []orderItem `json:"items"`
	ShippingAddress address     `json:"shipping_address"`
	PaymentToken    string      `json:"payment_token"`
}

type order struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason"`
}

// terminal reports whether the saga is done with an order.
func (o order) terminal() bool {
	return o.Status == "confirmed" || o.Status == "rejected" || o.Status == "cancelled"
}

func (a api) placeOrder(ctx context.Context, token, idempotencyKey string, body placeOrderBody) (order, error) {
	var o order
	err := a.call(ctx, http.MethodPost, "/api/v1/orders", token, body, http.StatusAccepted, &o,
		"Idempotency-Key", idempotencyKey)
	return o, err
}

// getOrder reads an order; with wait > 0 the server holds the answer until
// the order leaves pending or wait passes (GET …?wait_seconds=).
func (a api) getOrder(ctx context.Context, token, id string, wait time.Duration) (order, error) {
	var o order
	path := "/api/v1/orders/" + id
	if wait > 0 {
		path += "?wait_seconds=" + strconv.Itoa(int(wait/time.Second))
	}
	err := a.call(ctx, http.MethodGet, path, token, nil, http.StatusOK, &o)
	return o, err
}
