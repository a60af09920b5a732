package observability

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors. Each process has exactly one; tests make their own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MetricsHandler serves reg in the Prometheus text format.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// NewGRPCServerMetrics returns RED metrics for every RPC served
// (grpc_server_handled_total, grpc_server_handling_seconds), registered on reg.
func NewGRPCServerMetrics(reg prometheus.Registerer) *grpcprom.ServerMetrics {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets(latencyBuckets),
	))
	reg.MustRegister(m)
	return m
}

// NewGRPCClientMetrics returns RED metrics for every RPC made, registered on reg.
func NewGRPCClientMetrics(reg prometheus.Registerer) *grpcprom.ClientMetrics {
	m := grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets(latencyBuckets),
	))
	reg.MustRegister(m)
	return m
}

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// HTTPMetrics records RED metrics per route: http_requests_total and
// http_request_duration_seconds, labelled by method, route and status code.
// The route is a pattern (never a raw path, which would explode label
// cardinality) and the method one of HTTP's own (anything else is
// "OTHER"), so a client cannot mint new series.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// series caches the label children of each (method, route, code):
	// WithLabelValues hashes and compares every label value on every call,
	// twice per request.
	series sync.Map // httpSeriesKey -> *httpSeries
}

type httpSeriesKey struct {
	method, route string
	code          int
}

type httpSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// NewHTTPMetrics registers the HTTP metrics on reg.
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP requests served, by method, route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "Time to serve an HTTP request, by method and route.", Buckets: latencyBuckets,
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Observe records one request served on route (a pattern) with status
// code, which took elapsed.
func (m *HTTPMetrics) Observe(method, route string, code int, elapsed time.Duration) {
	key := httpSeriesKey{method: metricMethod(method), route: route, code: code}
	v, ok := m.series.Load(key)
	if !ok {
		v, _ = m.series.LoadOrStore(key, &httpSeries{
			requests: m.requests.WithLabelValues(key.method, route, strconv.Itoa(code)),
			duration: m.duration.WithLabelValues(key.method, route),
		})
	}
	s := v.(*httpSeries)
	s.requests.Inc()
	s.duration.Observe(elapsed.Seconds())
}

// metricMethod maps the request method to a label value from a fixed set.
func metricMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "OTHER"
}
