package launcher

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Registries `mercato up` can run its services with (Config.Registry).
const (
	// RegistryStatic gives every service its neighbours' addresses.
	RegistryStatic = "static"
	// RegistryEtcd has every instance register in etcd: an embedded one,
	// or the external Config.EtcdURL.
	RegistryEtcd = "etcd"
)

// startEtcd starts an embedded single-member etcd keeping its data in dir,
// on free loopback ports, and returns it with its client URL.
func startEtcd(ctx context.Context, dir string) (*embed.Etcd, string, error) {
	client, err := freeLoopbackAddr(ctx)
	if err != nil {
		return nil, "", err
	}
	peer, err := freeLoopbackAddr(ctx)
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "mercato"
	cfg.Dir = dir
	cu := url.URL{Scheme: "http", Host: client}
	pu := url.URL{Scheme: "http", Host: peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// The member is new on every run (its peer URL changes with its port),
	// so its cluster is forced anew over the data directory it finds.
	cfg.ForceNewCluster = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, cu.String(), nil
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("embedded etcd not ready after 30s")
	case <-ctx.Done():
		e.Close()
		return nil, "", ctx.Err()
	}
}

func freeLoopbackAddr(ctx context.Context) (string, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return "", fmt.Errorf("pick a free port: %w", err)
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// checkEtcd fails, naming the endpoint, when the external etcd at endpoint
// does not answer.
func checkEtcd(ctx context.Context, endpoint string) error {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("cannot reach etcd at %s: %w", endpoint, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Status(ctx, endpoint); err != nil {
		return fmt.Errorf("cannot reach etcd at %s: %w", endpoint, err)
	}
	return nil
}
