package ports

import (
	"encoding/json"
	"net/http"

	"github.com/mercato-dev/mercato/internal/identity/app"
	"github.com/mercato-dev/mercato/internal/identity/domain"
)

// JWKSPath is where the key set is served on the admin listener.
const JWKSPath = "/.well-known/jwks.json"

// jwksMaxAge is how long clients may cache the key set. Keys are published
// well ahead of signing (KeyPolicy.PublishLead), so this only delays how
// soon a verifier notices a key, never whether it can verify.
const jwksMaxAge = "60"

// JWKSHandler serves the published keys as an RFC 7517 JWK Set.
func JWKSHandler(a *app.Identity) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		body, err := json.Marshal(struct {
			Keys []domain.JWK `json:"keys"`
		}{Keys: a.JWKS()})
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age="+jwksMaxAge)
		_, _ = w.Write(body)
	})
}
