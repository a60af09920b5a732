package launcher

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// seedAPI is the part of the public API the seeder uses, answering
// inventory writes with inventoryStatus.
type seedAPI struct {
	mu              sync.Mutex
	existing        int
	created         []string
	stocked         map[string]int32
	conflictSKU     string
	inventoryStatus int
}

func (a *seedAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/auth/login", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": "admin-token"})
	})
	mux.HandleFunc("GET /api/v1/products", func(w http.ResponseWriter, _ *http.Request) {
		products := []map[string]string{}
		for range a.existing {
			products = append(products, map[string]string{"sku": "OLD"})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"products": products})
	})
	mux.HandleFunc("POST /api/v1/products", func(w http.ResponseWriter, r *http.Request) {
		var p demoProduct
		_ = json.NewDecoder(r.Body).Decode(&p)
		if p.SKU == a.conflictSKU {
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"detail":"sku already exists"}`))
			return
		}
		a.mu.Lock()
		a.created = append(a.created, p.SKU)
		a.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{}`))
	})
	mux.HandleFunc("PUT /api/v1/inventory/{sku}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer admin-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if a.inventoryStatus != http.StatusOK {
			w.WriteHeader(a.inventoryStatus)
			_, _ = w.Write([]byte(`{"detail":"inventory is unavailable"}`))
			return
		}
		var in struct {
			OnHand int32 `json:"on_hand"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		a.mu.Lock()
		a.stocked[r.PathValue("sku")] = in.OnHand
		a.mu.Unlock()
		_, _ = w.Write([]byte(`{}`))
	})
	return mux
}

func seedAgainst(t *testing.T, a *seedAPI) (int, error) {
	t.Helper()
	srv := httptest.NewServer(a.handler())
	t.Cleanup(srv.Close)
	s := seeder{client: srv.Client(), baseURL: srv.URL, email: DefaultAdminEmail, password: "password"}
	return s.seed(t.Context())
}

func TestSeedStocksEveryDemoProduct(t *testing.T) {
	a := &seedAPI{stocked: map[string]int32{}, conflictSKU: demoCatalog[2].SKU, inventoryStatus: http.StatusOK}
	created, err := seedAgainst(t, a)
	require.NoError(t, err)
	require.Equal(t, len(demoCatalog)-1, created, "the product that already exists is not counted")
	want := map[string]int32{}
	for _, p := range demoCatalog {
		want[p.SKU] = demoStock
	}
	require.Equal(t, want, a.stocked, "every demo product is stocked, the existing one too")
}

func TestSeedLeavesAStockedCatalogAlone(t *testing.T) {
	a := &seedAPI{existing: 1, stocked: map[string]int32{}, inventoryStatus: http.StatusOK}
	created, err := seedAgainst(t, a)
	require.NoError(t, err)
	require.Zero(t, created)
	require.Empty(t, a.created)
	require.Empty(t, a.stocked, "stock is set only when seeding")
}

func TestSeedReportsStockItCannotSet(t *testing.T) {
	a := &seedAPI{stocked: map[string]int32{}, inventoryStatus: http.StatusServiceUnavailable}
	created, err := seedAgainst(t, a)
	require.EqualError(t, err, "stock product "+demoCatalog[0].SKU+": unexpected status 503: inventory is unavailable")
	require.Equal(t, 1, created)
}
