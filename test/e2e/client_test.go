package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// api is a client of the gateway's public API.
type api struct {
	base   string
	client *http.Client
}

// reply is an HTTP answer, read in full.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// raw marks a request body sent as is rather than encoded as JSON.
type raw string

// do sends a request. body is nil, raw, or a value encoded as JSON;
// headers are name, value pairs.
func (a api) do(t *testing.T, method, path, token string, body any, headers ...string) reply {
	t.Helper()
	r, err := a.send(t.Context(), method, path, token, body, headers...)
	require.NoError(t, err, "%s %s", method, path)
	return r
}

// send is do for goroutines other than the test's own: it reports a
// failure to send instead of ending the test.
func (a api) send(ctx context.Context, method, path, token string, body any, headers ...string) (reply, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case raw:
		r = strings.NewReader(string(b))
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		r = bytes.NewReader(enc)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, r)
	if err != nil {
		return reply{}, err
	}
	if body != nil {
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
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// decode requires status and decodes the JSON body into v.
func (r reply) decode(t *testing.T, status int, v any) {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.NoError(t, json.Unmarshal(r.body, v), "body: %s", r.body)
}

// problem is an RFC 9457 problem details document as the gateway sends it.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Instance  string `json:"instance"`
	RequestID string `json:"request_id"`
}

// requireProblem requires an error answer with status, in the problem
// format, carrying the request id the response header also gives.
func requireProblem(t *testing.T, r reply, status int) problem {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), "body: %s", r.body)
	var p problem
	require.NoError(t, json.Unmarshal(r.body, &p), "body: %s", r.body)
	require.Equal(t, status, p.Status)
	require.Equal(t, http.StatusText(status), p.Title)
	require.NotEmpty(t, p.Detail)
	require.NotEmpty(t, p.RequestID)
	require.Equal(t, r.header.Get("X-Request-Id"), p.RequestID)
	for _, leak := range []string{"sql", "SQL", "goroutine", "panic", "rpc error"} {
		require.NotContains(t, p.Detail, leak, "the detail must not leak internals")
	}
	return p
}

type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

type user struct {
	ID        string `json:"id"`
	Email     string `json:"email"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	CreatedAt string `json:"created_at"`
}

type product struct {
	ID          string   `json:"id"`
	SKU         string   `json:"sku"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	PriceCents  int      `json:"price_cents"`
	Currency    string   `json:"currency"`
	Categories  []string `json:"categories"`
	ImageURL    string   `json:"image_url"`
	CreatedAt   string   `json:"created_at"`
	UpdatedAt   string   `json:"updated_at"`
}

type productPage struct {
	Products      []product `json:"products"`
	NextPageToken string    `json:"next_page_token"`
}

// uniqueEmail returns an address no other test uses.
func uniqueEmail(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:10]) + "@example.com"
}

func (a api) register(t *testing.T, email, password, name string) user {
	t.Helper()
	var u user
	a.do(t, http.MethodPost, "/api/v1/auth/register", "",
		map[string]string{"email": email, "password": password, "name": name}).decode(t, http.StatusCreated, &u)
	return u
}

func (a api) login(t *testing.T, email, password string) tokenPair {
	t.Helper()
	var p tokenPair
	a.do(t, http.MethodPost, "/api/v1/auth/login", "",
		map[string]string{"email": email, "password": password}).decode(t, http.StatusOK, &p)
	return p
}

// customer registers a new customer and returns their access token.
func (a api) customer(t *testing.T) string {
	t.Helper()
	email := uniqueEmail("shopper")
	a.register(t, email, "correct horse battery", "Shopper")
	return a.login(t, email, "correct horse battery").AccessToken
}

// listAll pages through the products matching query (e.g. "q=tea"),
// pageSize at a time, and returns them in order.
func (a api) listAll(t *testing.T, query url.Values, pageSize int) []product {
	t.Helper()
	var all []product
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("page_size", strconv.Itoa(pageSize))
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000, "pagination does not end")
		var page productPage
		a.do(t, http.MethodGet, "/api/v1/products?"+q.Encode(), "", nil).decode(t, http.StatusOK, &page)
		require.LessOrEqual(t, len(page.Products), pageSize)
		all = append(all, page.Products...)
		if page.NextPageToken == "" {
			return all
		}
		q.Set("page_token", page.NextPageToken)
	}
}

// productCount is how many products the catalog lists.
func (a api) productCount(t *testing.T) int {
	t.Helper()
	return len(a.listAll(t, nil, 100))
}
