package observability_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// callThrough runs the interceptor around an invoker that records the
// outgoing metadata and answers err.
func callThrough(t *testing.T, ctx context.Context, err error) (metadata.MD, error) {
	t.Helper()
	var sent metadata.MD
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		sent, _ = metadata.FromOutgoingContext(ctx)
		return err
	}
	got := observability.UnaryClientTracing(propagation.TraceContext{})(ctx, "/catalog.v1.CatalogService/GetProduct", nil, nil, nil, invoker)
	return sent, got
}

func TestClientTracingSendsTheUnsampledParent(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(spans))
	ctx, parent := tp.Tracer("test").Start(t.Context(), "request")
	defer parent.End()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", "r1")

	md, err := callThrough(t, ctx, nil)
	require.NoError(t, err)
	sc := parent.SpanContext()
	require.Equal(t, []string{"00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-00"}, md.Get("traceparent"))
	require.Equal(t, []string{"r1"}, md.Get("x-request-id"), "metadata already there is kept")
	require.Empty(t, spans.Ended(), "nothing is recorded for an unsampled call")
}

func TestClientTracingRecordsASampledCall(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	ctx, parent := tp.Tracer("test").Start(t.Context(), "request")
	defer parent.End()
	// The interceptor takes its tracer from the global provider.
	restore := setGlobalTracerProvider(tp)
	defer restore()

	md, err := callThrough(t, ctx, status.Error(codes.NotFound, "product not found"))
	require.Equal(t, codes.NotFound, status.Code(err))
	require.Len(t, spans.Ended(), 1)
	client := spans.Ended()[0]
	require.Equal(t, "catalog.v1.CatalogService/GetProduct", client.Name())
	require.Equal(t, trace.SpanKindClient, client.SpanKind())
	require.Equal(t, parent.SpanContext().SpanID(), client.Parent().SpanID())
	require.Contains(t, client.Attributes(), attribute.String("rpc.service", "catalog.v1.CatalogService"))
	require.Contains(t, client.Attributes(), attribute.String("rpc.method", "GetProduct"))
	require.Contains(t, client.Attributes(), attribute.Int("rpc.grpc.status_code", int(codes.NotFound)))
	require.Equal(t, otelcodes.Error, client.Status().Code)
	require.Equal(t, []string{"00-" + client.SpanContext().TraceID().String() + "-" + client.SpanContext().SpanID().String() + "-01"},
		md.Get("traceparent"), "the callee continues from the client span")
}

func TestClientTracingWithoutATraceSendsNothing(t *testing.T) {
	md, err := callThrough(t, t.Context(), nil)
	require.NoError(t, err)
	require.Empty(t, md.Get("traceparent"))
}

func setGlobalTracerProvider(tp trace.TracerProvider) (restore func()) {
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	return func() { otel.SetTracerProvider(prev) }
}
