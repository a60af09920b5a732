package gateway

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// Access is who may call a route. The zero value is not an access: every
// rule must say.
type Access int

// Who may call a route.
const (
	Anyone Access = iota + 1
	SignedIn
	AdminOnly
)

func (a Access) String() string {
	switch a {
	case Anyone:
		return "anyone"
	case SignedIn:
		return "user"
	case AdminOnly:
		return "admin"
	default:
		return fmt.Sprintf("Access(%d)", int(a))
	}
}

// Rule says who may make the requests whose path is Prefix or lies under
// it, with one of Methods (any method when empty). Rules name path
// prefixes rather than routes, so a route added later under a protected
// prefix is protected before anyone remembers to list it; and a route
// that no rule covers is refused, so one added under a new prefix is
// closed until someone says who may call it. The services check again
// (and check ownership): this is a first line, not the only one.
type Rule struct {
	Methods []string
	Prefix  string
	Access  Access
}

func (r Rule) validate() error {
	var p config.Problems
	p.Add(!strings.HasPrefix(r.Prefix, "/") || strings.HasSuffix(r.Prefix, "/") && r.Prefix != "/",
		"access rule prefix %q must start with / and not end with one", r.Prefix)
	p.Add(r.Access < Anyone || r.Access > AdminOnly, "access rule for %s says no access (anyone, user or admin)", r.Prefix)
	for _, m := range r.Methods {
		p.Add(m == "" || strings.ToUpper(m) != m, "access rule for %s: method %q must be upper case", r.Prefix, m)
	}
	return p.Err()
}

// ownRules cover what the gateway serves itself.
var ownRules = []Rule{
	{Prefix: "/openapi.json", Access: Anyone},
	{Prefix: "/docs", Access: Anyone},
}

// accessPolicy is the rules of every upstream, in upstream order, after
// the gateway's own; the first matching rule wins.
type accessPolicy []Rule

func newAccessPolicy(upstreams []Upstream) accessPolicy {
	policy := slices.Clone(ownRules)
	for _, u := range upstreams {
		policy = append(policy, u.API.Access...)
	}
	return policy
}

// requiredAccess returns who may call method on path (a request path or a
// route template such as /api/v1/products/{id}), and false when no rule
// covers it.
func (p accessPolicy) requiredAccess(method, path string) (Access, bool) {
	for i := range p {
		rule := &p[i]
		if !underPrefix(path, rule.Prefix) {
			continue
		}
		if len(rule.Methods) == 0 || slices.Contains(rule.Methods, method) {
			return rule.Access, true
		}
	}
	return 0, false
}

func underPrefix(path, prefix string) bool {
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// uncovered lists the documented operations ("GET /api/v1/x") that no
// rule covers: they are refused, and New says so at start.
func (p accessPolicy) uncovered(doc map[string]any) []string {
	paths, _ := doc["paths"].(map[string]any)
	var out []string
	for _, path := range slices.Sorted(maps.Keys(paths)) {
		ops, _ := paths[path].(map[string]any)
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			m := strings.ToUpper(method)
			if _, ok := p.requiredAccess(m, path); !ok {
				out = append(out, m+" "+path)
			}
		}
	}
	return out
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
// route that needs a user, 403 for a non-admin on an admin route, and 403
// for everyone on a route no rule covers. A path that is no route at all
// goes on, to be answered 404 or 405.
func (g *Gateway) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need, covered := g.policy.requiredAccess(r.Method, r.URL.Path)
		if !covered {
			if g.routes.match(r.URL.Path) != "" {
				writeProblem(w, r, http.StatusForbidden, "this route is closed: no access rule covers it")
				return
			}
			need = Anyone
		}
		if need == Anyone {
			next.ServeHTTP(w, r)
			return
		}
		p, ok := auth.FromContext(r.Context())
		switch {
		case !ok:
			writeProblem(w, r, http.StatusUnauthorized, auth.ErrMissingToken.Error())
		case need == AdminOnly && !p.IsAdmin():
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
