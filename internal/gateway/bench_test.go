package gateway

import (
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
)

// BenchmarkGatewayGetProduct measures GET /api/v1/products/{id} through the
// whole gateway (every middleware, access log included) to an in-process
// fake catalog over loopback gRPC. Compare with BenchmarkDirectGetProduct:
//
//	go test -run '^$' -bench GetProduct -benchmem -cpu 2 ./internal/gateway
func BenchmarkGatewayGetProduct(b *testing.B) {
	tg := startGatewayLogging(b, func(c *Config) { c.RateLimitRPS = 0 }, io.Discard)
	url := tg.url + "/api/v1/products/p1"
	tg.client.Transport.(*http.Transport).MaxIdleConnsPerHost = 256
	b.SetParallelism(16) // enough requests in flight to keep both cores busy
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 4096)
		for pb.Next() {
			req, err := http.NewRequestWithContext(b.Context(), http.MethodGet, url, nil)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := tg.client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					break
				}
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkDirectGetProduct is the baseline: the same fake catalog called
// over gRPC without the gateway.
func BenchmarkDirectGetProduct(b *testing.B) {
	catalog := startFake(b, func(s *grpc.Server) { catalogv1.RegisterCatalogServiceServer(s, fakeCatalog{}) })
	conn, err := grpc.NewClient(catalog.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	client := catalogv1.NewCatalogServiceClient(conn)
	b.SetParallelism(16) // enough requests in flight to keep both cores busy
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.GetProduct(b.Context(), &catalogv1.GetProductRequest{Id: "p1"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// reportCPU reports the process CPU time per operation (user + system, all
// goroutines: client, gateway and fake service alike), which unlike ns/op
// does not depend on what else the machine is doing. Call its result when
// the loop is done.
func reportCPU(b *testing.B) func() {
	start := processCPU(b)
	return func() {
		b.ReportMetric(float64((processCPU(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
