package gateway

import (
	"errors"
	"net/http"
	"strings"

	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// access is who may call a route.
type access int

const (
	anyone access = iota
	signedIn
	adminOnly
)

func (a access) String() string {
	switch a {
	case signedIn:
		return "user"
	case adminOnly:
		return "admin"
	default:
		return "anyone"
	}
}

// accessRule applies to requests whose path is prefix or lies under it,
// made with one of methods (any method when empty).
type accessRule struct {
	methods []string
	prefix  string
	need    access
}

// accessRules is the gateway's route policy; the first matching rule wins
// and a request no rule matches is open to anyone. Rules name path prefixes
// rather than routes, so a route added later under a protected prefix is
// protected before anyone remembers to list it. The services check again
// (and check ownership), so this is a first line, not the only one.
var accessRules = []accessRule{
	{methods: []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}, prefix: "/api/v1/products", need: adminOnly},
	{prefix: "/api/v1/inventory", need: adminOnly},
	{prefix: "/api/v1/me", need: signedIn},
	{prefix: "/api/v1/auth/logout", need: signedIn},
	{prefix: "/api/v1/cart", need: signedIn},
	{prefix: "/api/v1/orders", need: signedIn},
	{prefix: "/api/v1/payments", need: signedIn},
	{prefix: "/api/v1/notifications", need: signedIn},
}

// requiredAccess returns who may call method on path (a request path or a
// route template such as /api/v1/products/{id}).
func requiredAccess(method, path string) access {
	for i := range accessRules {
		rule := &accessRules[i]
		if !underPrefix(path, rule.prefix) {
			continue
		}
		if len(rule.methods) == 0 {
			return rule.need
		}
		for _, m := range rule.methods {
			if m == method {
				return rule.need
			}
		}
	}
	return anyone
}

func underPrefix(path, prefix string) bool {
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// authenticate verifies the access token of a request that has one and puts
// the principal in its context. A token that is present but does not verify
// is refused on every route, public ones included: the caller meant to act
// as someone and must learn that it is not. Requests without one go on
// anonymously. The per-user rate limit applies here, once the user is known.
func (g *Gateway) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		if header == "" {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		token, ok := auth.BearerToken(header)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mercato", error="invalid_request"`)
			writeProblem(w, r, http.StatusUnauthorized, "authorization header must be a bearer token")
			return
		}
		p, err := g.verifier.Verify(ctx, token)
		if errors.Is(err, auth.ErrKeysUnavailable) {
			// Info, not Warn: during an outage this is every request, and the
			// jwks readiness check already reports the outage.
			g.log.InfoContext(ctx, "access token not checked: signing keys unavailable", "error", err.Error())
			w.Header().Set("Retry-After", "1")
			writeProblem(w, r, http.StatusServiceUnavailable, auth.ErrKeysUnavailable.Error())
			return
		}
		if err != nil {
			g.log.InfoContext(ctx, "access token rejected", "reason", err.Error())
			w.Header().Set("WWW-Authenticate", `Bearer realm="mercato", error="invalid_token"`)
			writeProblem(w, r, http.StatusUnauthorized, auth.ErrInvalidToken.Error())
			return
		}
		if ex := exchangeFrom(ctx); ex != nil {
			ex.userID = p.UserID
		}
		if g.limits != nil {
			if wait, ok := g.limits.perUser.allow(p.UserID); !ok {
				tooManyRequests(w, r, wait)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(ctx, p)))
	})
}

// authorize enforces the route policy: 401 for an anonymous caller of a
// route that needs a user, 403 for a non-admin on an admin route.
func (g *Gateway) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := requiredAccess(r.Method, r.URL.Path)
		if need == anyone {
			next.ServeHTTP(w, r)
			return
		}
		p, ok := auth.FromContext(r.Context())
		switch {
		case !ok:
			writeProblem(w, r, http.StatusUnauthorized, auth.ErrMissingToken.Error())
		case need == adminOnly && !p.IsAdmin():
			writeProblem(w, r, http.StatusForbidden, auth.ErrForbidden.Error())
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// credentialRoutes get the stricter login rate limit: they are where
// passwords are guessed and accounts mass-created.
var credentialRoutes = map[string]bool{
	"/api/v1/auth/login":    true,
	"/api/v1/auth/register": true,
	"/api/v1/auth/refresh":  true,
}

// rateLimit applies the per-client-IP limits. It runs before token
// verification so a flood of forged tokens costs the gateway a map lookup
// per request, not a signature check.
func (g *Gateway) rateLimit(next http.Handler) http.Handler {
	if g.limits == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := exchangeFrom(r.Context()).clientIP
		if wait, ok := g.limits.perIP.allow(ip); !ok {
			tooManyRequests(w, r, wait)
			return
		}
		if r.Method == http.MethodPost && credentialRoutes[r.URL.Path] {
			if wait, ok := g.limits.login.allow(ip); !ok {
				tooManyRequests(w, r, wait)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
