package app

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// sagaMetrics are the saga's Prometheus metrics.
type sagaMetrics struct {
	outcomes *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	inFlight prometheus.Gauge
	// stuck and needsAttention are shared counts too, read from the store.
	stuck          *prometheus.GaugeVec
	needsAttention prometheus.Gauge
}

func newSagaMetrics(reg prometheus.Registerer) *sagaMetrics {
	m := &sagaMetrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "orders", Name: "saga_outcomes_total",
			Help: "Orders that reached a terminal state, by status and reason class.",
		}, []string{"status", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mercato", Subsystem: "orders", Name: "saga_duration_seconds",
			Help:    "Time from placement to the first terminal state, by status.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"status"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "orders", Name: "saga_step_retries_total",
			Help: "Saga steps that failed transiently and were scheduled again, by step.",
		}, []string{"step"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mercato", Subsystem: "orders", Name: "in_flight",
			Help: "Orders whose saga has not finished (every replica reports the shared count).",
		}),
		stuck: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "mercato", Subsystem: "orders", Name: "stuck",
			Help: "Orders whose saga has recorded nothing for longer than the stuck threshold, by the step they wait for " +
				"(every replica reports the shared count).",
		}, []string{"step"}),
		needsAttention: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mercato", Subsystem: "orders", Name: "needs_attention",
			Help: "Orders in status needs_attention: undoing them could not return the payment, an operator has to " +
				"(every replica reports the shared count).",
		}),
	}
	if reg == nil {
		return m
	}
	for _, c := range []prometheus.Collector{m.outcomes, m.duration, m.retries, m.inFlight, m.stuck, m.needsAttention} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				panic(err) // a programming error: two different metrics with one name
			}
		}
	}
	return m
}
