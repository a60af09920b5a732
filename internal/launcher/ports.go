package launcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// loopback is where every internal listener binds: nothing but the gateway's
// public address is meant to be reachable from outside the machine.
const loopback = "127.0.0.1"

// ServiceAddrs are where one service listens.
type ServiceAddrs struct {
	// GRPC is the gRPC address other services call.
	GRPC string
	// HTTP is the admin HTTP address (/healthz, /readyz, /metrics).
	HTTP string
}

// Addrs are where the running system can be reached.
type Addrs struct {
	// Gateway is the public host:port of the gateway.
	Gateway string
	// NATS is the NATS server's client URL.
	NATS string
	// EtcdURL is the registry's etcd client URL, with --registry etcd.
	EtcdURL string
	// Services maps each service name to its (first instance's) listeners.
	Services map[string]ServiceAddrs
	// Instances maps each service name to the listeners of every
	// instance, in order (more than one with replicas).
	Instances map[string][]ServiceAddrs
}

// GatewayURL is the public base URL, e.g. http://127.0.0.1:8080. A
// gateway listening on every interface (":8080", "0.0.0.0:8080") is
// reached through loopback.
func (a Addrs) GatewayURL() string {
	host, port, err := net.SplitHostPort(a.Gateway)
	if err != nil {
		return "http://" + a.Gateway
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = loopback
	}
	return "http://" + net.JoinHostPort(host, port)
}

// allocateAddrs reserves the public address and picks a free loopback port
// for each service's gRPC and admin HTTP listener. Every listener is held
// until all are picked, so no port is handed out twice; they are closed on
// return for the children to bind. Another process could take a port in
// between, which fails that child's start and is reported as such. A public
// address with port 0 gets a free port too; the address returned first is
// the one the gateway will listen on.
func allocateAddrs(ctx context.Context, public string, services []string) (string, map[string]ServiceAddrs, error) {
	var lc net.ListenConfig
	held := make([]net.Listener, 0, 1+2*len(services))
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()

	pub, err := lc.Listen(ctx, "tcp", public)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return "", nil, fmt.Errorf("address %s is in use; pass --addr", public)
		}
		return "", nil, fmt.Errorf("listen on %s: %w", public, err)
	}
	held = append(held, pub)
	if host, port, err := net.SplitHostPort(public); err == nil && port == "0" {
		public = net.JoinHostPort(host, strconv.Itoa(pub.Addr().(*net.TCPAddr).Port))
	}

	pick := func() (string, error) {
		l, err := lc.Listen(ctx, "tcp", net.JoinHostPort(loopback, "0"))
		if err != nil {
			return "", fmt.Errorf("pick a free port: %w", err)
		}
		held = append(held, l)
		return l.Addr().String(), nil
	}
	addrs := make(map[string]ServiceAddrs, len(services))
	for _, name := range services {
		grpcAddr, err := pick()
		if err != nil {
			return "", nil, err
		}
		httpAddr, err := pick()
		if err != nil {
			return "", nil, err
		}
		addrs[name] = ServiceAddrs{GRPC: grpcAddr, HTTP: httpAddr}
	}
	return public, addrs, nil
}
