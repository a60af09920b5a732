package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	notificationsv1 "github.com/mercato-dev/mercato/internal/gen/notifications/v1"
	ordersv1 "github.com/mercato-dev/mercato/internal/gen/orders/v1"
	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// The API contract: its path relative to this package's directory, and
// the name messages give it.
const (
	apiDoc     = "../../docs/api.md"
	apiDocName = "docs/api.md"
)

// The markers around the route table of the API contract.
const (
	routeTableBegin = "<!-- route-table:begin -->"
	routeTableEnd   = "<!-- route-table:end -->"
)

// The values of the route table's Who column.
const (
	whoAnyone       = "anyone"
	whoUser         = "user"
	whoOwnerOrAdmin = "owner or admin"
	whoAdmin        = "admin"
)

// docRoute is one row of the route table.
type docRoute struct {
	method, path, who string
	success           int
	line              int // in the document, for messages
}

func (r docRoute) key() string { return r.method + " " + r.path }

// needsToken says the gateway must refuse an anonymous call (401).
func (r docRoute) needsToken() bool { return r.who != whoAnyone }

// needsAdmin says the gateway must refuse a customer's call (403).
func (r docRoute) needsAdmin() bool { return r.who == whoAdmin }

var (
	tableMethod = regexp.MustCompile("^`([A-Z]+)`$")
	tablePath   = regexp.MustCompile("^`(/[^`\\s]*)`$")
	tableRule   = regexp.MustCompile(`^:?-+:?$`)
)

// parseRouteTable reads the route table of the API contract: the lines
// between the markers are a Markdown table with the header
// | Method | Path | Who | Success | What |, one route per row, the method
// and path in backquotes.
func parseRouteTable(doc string) ([]docRoute, error) {
	begin := strings.Index(doc, routeTableBegin)
	end := strings.Index(doc, routeTableEnd)
	if begin < 0 || end < begin {
		return nil, fmt.Errorf("no route table: want the lines between %q and %q", routeTableBegin, routeTableEnd)
	}
	firstLine := strings.Count(doc[:begin], "\n") + 2
	lines := strings.Split(strings.TrimSpace(doc[begin+len(routeTableBegin):end]), "\n")
	var routes []docRoute
	for i, raw := range lines {
		line := firstLine + i
		text := strings.TrimSpace(raw)
		if !strings.HasPrefix(text, "|") || !strings.HasSuffix(text, "|") {
			return nil, fmt.Errorf("line %d: not a table row: %q", line, text)
		}
		cells := strings.Split(strings.Trim(text, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		switch i {
		case 0:
			if want := []string{"Method", "Path", "Who", "Success", "What"}; !slices.Equal(cells, want) {
				return nil, fmt.Errorf("line %d: header is %q, want %q", line, cells, want)
			}
			continue
		case 1:
			for _, c := range cells {
				if !tableRule.MatchString(c) {
					return nil, fmt.Errorf("line %d: want the header's rule (|---|---|…), got %q", line, text)
				}
			}
			continue
		}
		if len(cells) != 5 {
			return nil, fmt.Errorf("line %d: %d columns, want 5: %q", line, len(cells), text)
		}
		method := tableMethod.FindStringSubmatch(cells[0])
		path := tablePath.FindStringSubmatch(cells[1])
		who := cells[2]
		success, err := strconv.Atoi(cells[3])
		switch {
		case method == nil:
			return nil, fmt.Errorf("line %d: method %q is not an upper-case method in backquotes", line, cells[0])
		case path == nil:
			return nil, fmt.Errorf("line %d: path %q is not an absolute path in backquotes", line, cells[1])
		case !slices.Contains([]string{whoAnyone, whoUser, whoOwnerOrAdmin, whoAdmin}, who):
			return nil, fmt.Errorf("line %d: who %q is not one of %q, %q, %q, %q", line, who, whoAnyone, whoUser, whoOwnerOrAdmin, whoAdmin)
		case err != nil || success < 200 || success > 299:
			return nil, fmt.Errorf("line %d: success %q is not a 2xx status", line, cells[3])
		}
		routes = append(routes, docRoute{method: method[1], path: path[1], who: who, success: success, line: line})
	}
	if len(routes) == 0 {
		return nil, errors.New("the route table has no rows")
	}
	return routes, nil
}

func TestRouteTableParser(t *testing.T) {
	table := func(rows ...string) string {
		return "# API\n\n" + routeTableBegin + "\n| Method | Path | Who | Success | What |\n|---|---|---|---|---|\n" +
			strings.Join(rows, "\n") + "\n" + routeTableEnd + "\n"
	}
	routes, err := parseRouteTable(table(
		"| `GET` | `/api/v1/things/{id}` | owner or admin | 200 | [one thing](#one) |",
		"| `DELETE` | `/api/v1/things/{id}` | admin | 204 | remove a thing |",
	))
	require.NoError(t, err)
	require.Equal(t, []docRoute{
		{method: "GET", path: "/api/v1/things/{id}", who: whoOwnerOrAdmin, success: 200, line: 6},
		{method: "DELETE", path: "/api/v1/things/{id}", who: whoAdmin, success: 204, line: 7},
	}, routes)

	for name, doc := range map[string]string{
		"no markers":           "| `GET` | `/a` | anyone | 200 | a |",
		"no rows":              table(),
		"unknown who":          table("| `GET` | `/a` | customer | 200 | a |"),
		"method unquoted":      table("| GET | `/a` | anyone | 200 | a |"),
		"method lower-case":    table("| `get` | `/a` | anyone | 200 | a |"),
		"path unquoted":        table("| `GET` | /a | anyone | 200 | a |"),
		"relative path":        table("| `GET` | `a` | anyone | 200 | a |"),
		"success not 2xx":      table("| `GET` | `/a` | anyone | 404 | a |"),
		"success not a number": table("| `GET` | `/a` | anyone | OK | a |"),
		"a column missing":     table("| `GET` | `/a` | anyone | 200 |"),
		"not a row":            table("GET /a anyone 200"),
		"other header": strings.Replace(table("| `GET` | `/a` | anyone | 200 | a |"),
			"| Who |", "| Access |", 1),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseRouteTable(doc)
			require.Error(t, err)
		})
	}
}

// openAPIOperations returns the success status of every operation of the
// gateway's OpenAPI document, keyed "METHOD path".
func openAPIOperations(t *testing.T, tg *testGateway) map[string]int {
	t.Helper()
	resp, body := tg.do(t, http.MethodGet, "/openapi.json", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	ops := map[string]int{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			method = strings.ToUpper(method)
			if !slices.Contains([]string{"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH"}, method) {
				continue // "parameters" and extensions
			}
			var op struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			require.NoError(t, json.Unmarshal(raw, &op), "%s %s", method, path)
			var success []int
			for code := range op.Responses {
				if n, err := strconv.Atoi(code); err == nil && n >= 200 && n <= 299 {
					success = append(success, n)
				}
			}
			require.Len(t, success, 1, "%s %s declares one success status", method, path)
			ops[method+" "+path] = success[0]
		}
	}
	require.NotEmpty(t, ops)
	return ops
}

// TestAPIDocMatchesTheGateway holds the route table of docs/api.md to what
// the gateway serves: the same routes and success statuses as its OpenAPI
// document, and the access its route policy enforces.
func TestAPIDocMatchesTheGateway(t *testing.T) {
	text, err := os.ReadFile(apiDoc)
	require.NoError(t, err)
	routes, err := parseRouteTable(string(text))
	require.NoError(t, err, apiDocName)

	// One fake serves every upstream. It answers every call as a service
	// refusing the caller would (401 anonymous, 403 otherwise), so a status
	// alone cannot tell the gateway's refusal from the service's: a call
	// counts as refused by the gateway only when it never reached the fake.
	up := startFake(t, func(s *grpc.Server) {
		identityv1.RegisterIdentityServiceServer(s, identityv1.UnimplementedIdentityServiceServer{})
		catalogv1.RegisterCatalogServiceServer(s, catalogv1.UnimplementedCatalogServiceServer{})
		inventoryv1.RegisterInventoryServiceServer(s, inventoryv1.UnimplementedInventoryServiceServer{})
		cartv1.RegisterCartServiceServer(s, cartv1.UnimplementedCartServiceServer{})
		ordersv1.RegisterOrdersServiceServer(s, ordersv1.UnimplementedOrdersServiceServer{})
		paymentsv1.RegisterPaymentsServiceServer(s, paymentsv1.UnimplementedPaymentsServiceServer{})
		notificationsv1.RegisterNotificationsServiceServer(s, notificationsv1.UnimplementedNotificationsServiceServer{})
	})
	up.setReply(t, func(ctx context.Context, _ string, _ any) (any, error) {
		if len(metadata.ValueFromIncomingContext(ctx, "authorization")) == 0 {
			return nil, server.Status(auth.ErrMissingToken).Err()
		}
		return nil, server.Status(auth.ErrForbidden).Err()
	})
	tg := startGateway(t, func(c *Config) {
		for i := range c.Upstreams {
			c.Upstreams[i].Target = up.addr
		}
	})

	t.Run("routes and success statuses", func(t *testing.T) {
		ops := openAPIOperations(t, tg)
		var problems []string
		documented := map[string]docRoute{}
		for _, r := range routes {
			if prior, dup := documented[r.key()]; dup {
				problems = append(problems, fmt.Sprintf("%s:%d: %s is listed twice (also line %d)", apiDocName, r.line, r.key(), prior.line))
				continue
			}
			documented[r.key()] = r
			code, served := ops[r.key()]
			switch {
			case !served:
				problems = append(problems, fmt.Sprintf("%s:%d: %s is not an operation of /openapi.json", apiDocName, r.line, r.key()))
			case code != r.success:
				problems = append(problems, fmt.Sprintf("%s:%d: %s succeeds with %d, /openapi.json says %d", apiDocName, r.line, r.key(), r.success, code))
			}
		}
		for key, code := range ops {
			if _, ok := documented[key]; !ok {
				problems = append(problems, fmt.Sprintf("%s: %s (success %d in /openapi.json) is missing from the route table", apiDocName, key, code))
			}
		}
		slices.Sort(problems)
		require.Empty(t, problems, "the route table and the OpenAPI document disagree:\n%s", strings.Join(problems, "\n"))
	})

	customer := bearer(tg.issuer.Token("u-1", auth.RoleCustomer))
	admin := bearer(tg.issuer.Token("admin-1", auth.RoleAdmin))
	callers := []struct {
		name   string
		header http.Header
		// refusal is the status the gateway must refuse r with, 0 when it
		// must pass the call on.
		refusal func(r docRoute) int
	}{
		{"anonymous", nil, func(r docRoute) int {
			if r.needsToken() {
				return http.StatusUnauthorized
			}
			return 0
		}},
		{"customer", customer, func(r docRoute) int {
			if r.needsAdmin() {
				return http.StatusForbidden
			}
			return 0
		}},
		{"admin", admin, func(docRoute) int { return 0 }},
	}
	for _, r := range routes {
		t.Run(r.key(), func(t *testing.T) {
			path := pathParam.ReplaceAllString(r.path, "00000000-0000-4000-8000-000000000000")
			for _, c := range callers {
				var body io.Reader
				if r.method == http.MethodPost || r.method == http.MethodPut || r.method == http.MethodPatch {
					body = strings.NewReader(`{}`)
				}
				before := up.callCount()
				resp, respBody := tg.do(t, r.method, path, body, c.header)
				reached := up.callCount() > before

				if want := c.refusal(r); want != 0 {
					require.False(t, reached, "%s:%d: who is %q, but the gateway passed the %s call on (answer %d)",
						apiDocName, r.line, r.who, c.name, resp.StatusCode)
					requireProblem(t, resp, respBody, want)
					continue
				}
				require.True(t, reached, "%s:%d: who is %q, but the gateway refused the %s call itself: %d %s",
					apiDocName, r.line, r.who, c.name, resp.StatusCode, respBody)
			}
		})
	}
}

// pathParam matches a path template's parameters, such as {id}.
var pathParam = regexp.MustCompile(`\{[^/{}]+\}`)
