// Package ports exposes identity's use cases: the gRPC API and the JWKS
// document over HTTP.
package ports

import (
	"context"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	"github.com/mercato-dev/mercato/internal/identity/app"
	"github.com/mercato-dev/mercato/internal/identity/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// PublicMethods may be called without an access token.
var PublicMethods = []string{
	identityv1.IdentityService_Register_FullMethodName,
	identityv1.IdentityService_Login_FullMethodName,
	identityv1.IdentityService_Refresh_FullMethodName,
	identityv1.IdentityService_GetJWKS_FullMethodName,
	// Authenticated by the service secret it carries.
	identityv1.IdentityService_IssueServiceToken_FullMethodName,
}

// Metadata keys read and written by the server.
const (
	// ForwardedForHeader carries the client address chain set by the
	// gateway; its first entry is the client.
	ForwardedForHeader = "x-forwarded-for"
	// RetryAfterHeader is sent with a rate-limited login: whole seconds
	// until a retry can succeed.
	RetryAfterHeader = "retry-after"
)

// TokenType is the token_type of every pair handed out.
const TokenType = "Bearer"

// GRPCServer implements identity.v1.IdentityService on the use cases.
type GRPCServer struct {
	identityv1.UnimplementedIdentityServiceServer
	app *app.Identity
}

// NewGRPCServer returns the gRPC API over a.
func NewGRPCServer(a *app.Identity) *GRPCServer { return &GRPCServer{app: a} }

// Register implements IdentityService.Register.
func (s *GRPCServer) Register(ctx context.Context, req *identityv1.RegisterRequest) (*identityv1.User, error) {
	u, err := s.app.Register(ctx, domain.Registration{Email: req.GetEmail(), Password: req.GetPassword(), Name: req.GetName()})
	if err != nil {
		return nil, err
	}
	return userToProto(u), nil
}

// Login implements IdentityService.Login. A rate-limited call carries a
// retry-after header.
func (s *GRPCServer) Login(ctx context.Context, req *identityv1.LoginRequest) (*identityv1.TokenPair, error) {
	pair, err := s.app.Login(ctx, req.GetEmail(), req.GetPassword(), ClientIP(ctx))
	var limited *app.RateLimitedError
	if errors.As(err, &limited) {
		secs := int(math.Ceil(limited.RetryAfter.Seconds()))
		_ = grpc.SetHeader(ctx, metadata.Pairs(RetryAfterHeader, strconv.Itoa(max(1, secs))))
	}
	if err != nil {
		return nil, err
	}
	return pairToProto(pair), nil
}

// Refresh implements IdentityService.Refresh.
func (s *GRPCServer) Refresh(ctx context.Context, req *identityv1.RefreshRequest) (*identityv1.TokenPair, error) {
	pair, err := s.app.Refresh(ctx, req.GetRefreshToken())
	if err != nil {
		return nil, err
	}
	return pairToProto(pair), nil
}

// Logout implements IdentityService.Logout.
func (s *GRPCServer) Logout(ctx context.Context, req *identityv1.LogoutRequest) (*emptypb.Empty, error) {
	caller, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.app.Logout(ctx, caller, req.GetRefreshToken()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// GetMe implements IdentityService.GetMe.
func (s *GRPCServer) GetMe(ctx context.Context, _ *identityv1.GetMeRequest) (*identityv1.User, error) {
	caller, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	u, err := s.app.Me(ctx, caller)
	if err != nil {
		return nil, err
	}
	return userToProto(u), nil
}

// GetJWKS implements IdentityService.GetJWKS.
func (s *GRPCServer) GetJWKS(context.Context, *identityv1.GetJWKSRequest) (*identityv1.JWKS, error) {
	keys := s.app.JWKS()
	out := &identityv1.JWKS{Keys: make([]*identityv1.JWK, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, &identityv1.JWK{Kty: k.Kty, Crv: k.Crv, X: k.X, Kid: k.Kid, Alg: k.Alg, Use: k.Use})
	}
	return out, nil
}

// IssueServiceToken implements IdentityService.IssueServiceToken.
func (s *GRPCServer) IssueServiceToken(ctx context.Context, req *identityv1.IssueServiceTokenRequest) (*identityv1.TokenPair, error) {
	pair, err := s.app.IssueServiceToken(ctx, req.GetClientId(), req.GetClientSecret())
	if err != nil {
		return nil, err
	}
	return pairToProto(pair), nil
}

// maxAddressLength bounds a forwarded address (an IPv6 address with a zone
// fits), so a forged header cannot fill the rate limiter's memory.
const maxAddressLength = 64

// ClientIP is the caller's address: the first x-forwarded-for entry (set
// by the gateway), else the connection's peer. A caller reaching identity
// directly can forge the header; the per-email limit still holds then.
func ClientIP(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get(ForwardedForHeader) {
			first, _, _ := strings.Cut(v, ",")
			if ip := strings.TrimSpace(first); ip != "" && len(ip) <= maxAddressLength {
				return ip
			}
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			return host
		}
		return p.Addr.String()
	}
	return ""
}

func userToProto(u domain.User) *identityv1.User {
	return &identityv1.User{Id: u.ID, Email: u.Email, Name: u.Name, Role: u.Role, CreatedAt: timestamppb.New(u.CreatedAt)}
}

func pairToProto(p app.TokenPair) *identityv1.TokenPair {
	return &identityv1.TokenPair{
		AccessToken: p.AccessToken, RefreshToken: p.RefreshToken, TokenType: TokenType,
		ExpiresIn: int32(min(p.ExpiresIn/time.Second, math.MaxInt32)),
	}
}
