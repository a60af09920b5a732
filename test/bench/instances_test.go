package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMetricSum(t *testing.T) {
	text := `# HELP grpc_server_handled_total Total number of RPCs completed on the server.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",grpc_method="GetProduct",grpc_service="catalog.v1.CatalogService",grpc_type="unary"} 1200
grpc_server_handled_total{grpc_code="NotFound",grpc_method="GetProduct",grpc_service="catalog.v1.CatalogService",grpc_type="unary"} 3
grpc_server_handled_total{grpc_code="OK",grpc_method="GetProducts",grpc_service="catalog.v1.CatalogService",grpc_type="unary"} 50
grpc_server_handled_total{grpc_code="OK",grpc_method="ListProducts",grpc_service="catalog.v1.CatalogService",grpc_type="unary"} 7
grpc_server_handled_total_other{grpc_method="GetProduct"} 99
process_start_time_seconds 1.79641694661e+09
`
	require.InDelta(t, 1203, metricSum(text, "grpc_server_handled_total", `grpc_method="GetProduct"`), 0)
	require.InDelta(t, 1260, metricSum(text, "grpc_server_handled_total"), 0)
	require.InDelta(t, 1.79641694661e+09, metricSum(text, "process_start_time_seconds"), 0)
	require.Zero(t, metricSum(text, "missing_metric"))
}

func TestLogFollowerReadsOnlyTheLaunchersWholeLines(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer f.Close()
	follow := &logFollower{f: f}

	_, err = f.WriteString(`mercato       | {"time":"2026-12-04T20:42:32.074622465Z","level":"ERROR","msg":"service exited unexpectedly; restarting","name":"catalog-1","status":"signal: killed","restart_in":"100ms"}
catalog-1     | {"time":"2026-12-04T20:42:32.1Z","level":"INFO","msg":"service started","name":"catalog-1","pid":1}
mercato       | not json
mercato       | {"time":"2026-12-04T20:42:32.175858319Z","level":"INFO","msg":"service started","name":"catalog-1","pid":17488`)
	require.NoError(t, err)
	events, err := follow.events()
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, msgExited, events[0].Msg)
	require.Equal(t, "100ms", events[0].RestartIn)

	_, err = f.WriteString(`,"grpc_addr":"127.0.0.1:35641"}` + "\n")
	require.NoError(t, err)
	events, err = follow.events()
	require.NoError(t, err)
	require.Len(t, events, 1, "the line finished by the second write")
	require.Equal(t, msgStarted, events[0].Msg)
	require.Equal(t, 17488, events[0].PID)
	require.Equal(t, "catalog-1", events[0].Name)

	events, err = follow.events()
	require.NoError(t, err)
	require.Empty(t, events)
}

func TestCmpInstanceOrdersByNumber(t *testing.T) {
	require.Negative(t, cmpInstance("catalog-2", "catalog-10"))
	require.Positive(t, cmpInstance("catalog-3", "catalog-1"))
	require.Zero(t, cmpInstance("catalog-1", "catalog-1"))
}
