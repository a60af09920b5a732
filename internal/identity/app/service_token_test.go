package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

func TestIssueServiceToken(t *testing.T) {
	forEachEngine(t, harnessOptions{}, func(t *testing.T, h *harness) {
		pair, err := h.app.IssueServiceToken(t.Context(), "orders", serviceSecret)
		require.NoError(t, err)
		require.Empty(t, pair.RefreshToken, "client credentials get no refresh token")
		require.Equal(t, accessTTL, pair.ExpiresIn)

		p, err := h.verifier.Verify(t.Context(), pair.AccessToken)
		require.NoError(t, err)
		require.Equal(t, "service:orders", p.UserID)
		require.True(t, p.IsService())
		_, err = auth.RequireService(auth.WithPrincipal(t.Context(), p))
		require.NoError(t, err)

		for name, tc := range map[string]struct{ client, secret string }{
			"wrong secret":      {"orders", serviceSecret + "x"},
			"empty secret":      {"orders", ""},
			"malformed client":  {"Orders; DROP", serviceSecret},
			"client with colon": {"svc:orders", serviceSecret},
		} {
			_, err := h.app.IssueServiceToken(t.Context(), tc.client, tc.secret)
			require.ErrorIs(t, err, domain.ErrServiceCredentials, name)
		}
	})
}

func TestCustomerTokenIsNotAServiceToken(t *testing.T) {
	p := auth.Principal{UserID: "u1", Role: auth.RoleCustomer}
	_, err := auth.RequireService(auth.WithPrincipal(t.Context(), p))
	require.ErrorIs(t, err, auth.ErrNotService)
}
