package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
)

// request performs one call; a non-nil error counts as a failure.
type request func(ctx context.Context) error

type loadResult struct {
	rps      float64
	errors   int64
	p50, p99 time.Duration
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(30*time.Second/time.Microsecond), 3)
}

func (r loadResult) String() string {
	return fmt.Sprintf("%.0f req/s, p50 %s, p99 %s, %d errors", r.rps, r.p50, r.p99, r.errors)
}

// closedLoop runs clients that each send the next request as soon as the
// previous answer arrives: the maximum throughput at that concurrency.
// After d no new request starts; those in flight finish (within a grace
// period) rather than being cancelled, so that the end of the run does not
// show up as failed requests.
func closedLoop(do request, clients int, d time.Duration) loadResult {
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	var (
		mu    sync.Mutex
		hist  = newHistogram()
		errs  atomic.Int64
		wg    sync.WaitGroup
		start = time.Now()
		end   = start.Add(d)
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := newHistogram()
			for time.Now().Before(end) {
				t := time.Now()
				if err := do(ctx); err != nil {
					errs.Add(1)
					continue
				}
				_ = local.RecordValue(time.Since(t).Microseconds())
			}
			mu.Lock()
			hist.Merge(local)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	return result(hist, errs.Load(), elapsed)
}

// openLoop sends requests at a fixed rate whatever the answers do, and
// measures each latency from when the request was due, so a stall shows up
// in the percentiles instead of silently slowing the load (no coordinated
// omission).
func openLoop(do request, rate float64, d time.Duration) loadResult {
	if rate < 1 {
		rate = 1
	}
	interval := time.Duration(float64(time.Second) / rate)
	total := int(d / interval)
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		hist = newHistogram()
		errs atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait) // pacing the schedule, not waiting for a result
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := do(ctx)
			lat := time.Since(due)
			if err != nil {
				errs.Add(1)
				return
			}
			mu.Lock()
			_ = hist.RecordValue(lat.Microseconds())
			mu.Unlock()
		}()
	}
	wg.Wait()
	return result(hist, errs.Load(), time.Since(start))
}

func result(hist *hdrhistogram.Histogram, errs int64, elapsed time.Duration) loadResult {
	return loadResult{
		rps:    float64(hist.TotalCount()) / elapsed.Seconds(),
		errors: errs,
		p50:    time.Duration(hist.ValueAtQuantile(50)) * time.Microsecond,
		p99:    time.Duration(hist.ValueAtQuantile(99)) * time.Microsecond,
	}
}

// grpcGetProduct calls catalog directly over one gRPC connection (HTTP/2
// multiplexes the concurrent calls), as the gateway's upstream pool does.
func grpcGetProduct(addr, id string) (request, func(), error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("dial catalog: %w", err)
	}
	client := catalogv1.NewCatalogServiceClient(conn)
	req := &catalogv1.GetProductRequest{Id: id}
	return func(ctx context.Context) error {
		_, err := client.GetProduct(ctx, req)
		return err
	}, func() { _ = conn.Close() }, nil
}

// httpGetProduct fetches url through the gateway over keep-alive connections.
func httpGetProduct(url string, clients int) request {
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        clients * 2,
		MaxIdleConnsPerHost: clients * 2,
		IdleConnTimeout:     time.Minute,
	}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
}

// median of rates (the upper one of the middle two for an even count).
func median(rates []float64) float64 {
	if len(rates) == 0 {
		return 0
	}
	sorted := slices.Clone(rates)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}
