package auth

import (
	"context"
	"net/url"

	"github.com/mercato-dev/mercato/internal/platform/config"
)

// KeysConfig says where a process finds the public keys that sign access
// tokens: every service that verifies tokens has one.
type KeysConfig struct {
	// JWKSURL is where identity publishes the keys as a JSON Web Key Set.
	// Not needed when Source is set.
	JWKSURL string
	// Source, when set, is used instead of JWKSURL (tests, or a process
	// that has the keys at hand).
	Source KeySource
}

// Validate reports what is wrong with c: without a Source, JWKSURL must be
// an absolute http(s) URL.
func (c KeysConfig) Validate() error {
	var p config.Problems
	if c.Source == nil {
		u, err := url.Parse(c.JWKSURL)
		p.Add(c.JWKSURL == "", "JWKS URL is empty")
		p.Add(c.JWKSURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == ""),
			"JWKS URL %q is not an absolute http(s) URL", c.JWKSURL)
	}
	return p.Err()
}

// KeySource returns Source, or else a new JWKSCache of JWKSURL. Call it
// once per process: each JWKSCache fetches on its own.
func (c KeysConfig) KeySource() KeySource {
	if c.Source != nil {
		return c.Source
	}
	return NewJWKSCache(c.JWKSURL, nil)
}

// NewVerifier returns a verifier of mercato's access tokens (DefaultIssuer,
// DefaultAudience) signed by c's keys, and the key source's readiness
// check when it has one (a JWKSCache reports whether the keys were
// fetched), else nil.
func (c KeysConfig) NewVerifier() (*Verifier, func(context.Context) error) {
	keys := c.KeySource()
	var ready func(context.Context) error
	if r, ok := keys.(interface{ Ready(context.Context) error }); ok {
		ready = r.Ready
	}
	return NewVerifier(keys, DefaultIssuer, DefaultAudience), ready
}
