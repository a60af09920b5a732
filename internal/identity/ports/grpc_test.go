package ports

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

func TestClientIP(t *testing.T) {
	peerAddr := &net.TCPAddr{IP: net.ParseIP("10.0.0.7"), Port: 51234}
	tests := []struct {
		name string
		md   metadata.MD
		peer net.Addr
		want string
	}{
		{"forwarded by the gateway", metadata.Pairs("x-forwarded-for", "203.0.113.9"), peerAddr, "203.0.113.9"},
		{"first of a chain", metadata.Pairs("x-forwarded-for", " 203.0.113.9 , 10.0.0.1"), peerAddr, "203.0.113.9"},
		{"empty header falls back to the peer", metadata.Pairs("x-forwarded-for", ""), peerAddr, "10.0.0.7"},
		{"no header", metadata.MD{}, peerAddr, "10.0.0.7"},
		{"over-long header is ignored", metadata.Pairs("x-forwarded-for", strings.Repeat("9", 65)), peerAddr, "10.0.0.7"},
		{"IPv6 peer", nil, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, "2001:db8::1"},
		{"nothing known", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.md != nil {
				ctx = metadata.NewIncomingContext(ctx, tt.md)
			}
			if tt.peer != nil {
				ctx = peer.NewContext(ctx, &peer.Peer{Addr: tt.peer})
			}
			require.Equal(t, tt.want, ClientIP(ctx))
		})
	}
}
