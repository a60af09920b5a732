package observability

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// SetupTracing installs the global tracer provider and the W3C trace-context
// propagator. Spans always carry ids (so logs carry trace ids); they are
// sampled and exported over OTLP/gRPC only when OTEL_EXPORTER_OTLP_ENDPOINT
// (or the traces-specific variant) is set, configured by the standard
// OTEL_* variables. The returned function flushes and stops the exporter.
func SetupTracing(ctx context.Context, service string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	// Schemaless: the SDK's default resource carries its own (newer) schema
	// URL, and merging two different schema URLs fails.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName("mercato-"+service)))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	// Without an exporter nothing would ever read a recorded span, so spans
	// are not sampled: they still get ids (logs carry trace_id, and the W3C
	// header still links every process of a request) but cost almost
	// nothing. With an exporter every trace is sampled, following an
	// upstream caller's decision when there is one.
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.NeverSample()),
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		exporter, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
		opts = append(opts,
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
			sdktrace.WithBatcher(exporter))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}
